//! Push delivery: a session revoked, a subject recalled, a replay written once (also after the
//! receiver restarts), and an unknown event acknowledged without a write.

use std::time::Duration;

use recall_core::{Kind, RevocationKey, RuleScope, ScopeKind};
use serde_json::json;

use super::keys::{SigningKey, jwks};
use super::support::{self, Receiver, TRANSMITTER, audit_of, eventually, set};

const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
const CREDENTIAL_CHANGE: &str =
    "https://schemas.openid.net/secevent/caep/event-type/credential-change";

#[tokio::test]
async fn a_pushed_session_revoked_set_revokes_the_session_with_its_jti_in_the_audit_history() {
    let node = support::node(true).await;
    let key = SigningKey::es256("t-1");
    let rx = Receiver::start(&node.addr, &jwks(&[&key]), None).await;
    let sid_set = set(
        &key,
        "set-session-1",
        SESSION_REVOKED,
        json!({"event_timestamp": support::now() - 2, "initiating_entity": "admin"}),
        json!({"format": "complex",
               "session": {"format": "opaque", "id": "s-42"},
               "user": {"format": "iss_sub", "iss": "https://tokens.example", "sub": "alice"}}),
    );
    let (status, body) = rx.push(&sid_set).await;
    assert_eq!(status, 202, "{body}; log: {}", rx.log());
    let session = RevocationKey::new(Kind::Session, "https://tokens.example", "s-42");
    assert!(
        node.node.sm.with_set(|s| s.get(&session).is_some()),
        "a 202 means the revocation committed"
    );
    let records = audit_of(&node.addr, "set-session-1").await;
    assert_eq!(records.len(), 1, "{records:?}");
    let r = &records[0];
    assert_eq!(r.actor, "spiffe://recall.local/operator/ssf");
    assert_eq!(r.on_behalf_of, format!("ssf:{TRANSMITTER}"));
    assert!(r.reason.contains("event=session-revoked"), "{}", r.reason);

    // No session id: the subject's tokens issued before the event are recalled.
    let user_set = set(
        &key,
        "set-cred-1",
        CREDENTIAL_CHANGE,
        json!({"credential_type": "password", "change_type": "revoke"}),
        json!({"format": "iss_sub", "iss": TRANSMITTER, "sub": "bob"}),
    );
    assert_eq!(rx.push(&user_set).await.0, 202);
    let scope = RuleScope::new(ScopeKind::Subject, TRANSMITTER, "bob");
    let rule = node.node.sm.with_set(|s| s.rule(&scope).cloned());
    let rule = rule.expect("the subject's not-before rule");
    let before = rule.rule.not_before.as_millis() / 1000;
    assert!((support::now() - before).abs() <= 5, "not before {before}");
}

#[tokio::test]
async fn a_replayed_set_is_accepted_but_written_once_even_after_a_restart() {
    let node = support::node(true).await;
    let key = SigningKey::eddsa("t-ed");
    let mut rx = Receiver::start(&node.addr, &jwks(&[&key]), None).await;
    let s = set(
        &key,
        "set-replay",
        SESSION_REVOKED,
        json!({}),
        json!({"format": "opaque", "id": "carol"}),
    );
    for _ in 0..3 {
        assert_eq!(rx.push(&s).await.0, 202);
    }
    let metrics = rx.metrics().await;
    assert!(
        metrics.contains(r#"recall_ssf_sets_total{delivery="push",outcome="duplicate"} 2"#),
        "{metrics}"
    );
    rx.restart().await;
    assert_eq!(rx.push(&s).await.0, 202);
    let metrics = rx.metrics().await;
    assert!(
        metrics.contains(r#"recall_ssf_sets_total{delivery="push",outcome="duplicate"} 1"#),
        "the restarted receiver still knows the SET: {metrics}"
    );
    assert_eq!(
        audit_of(&node.addr, "set-replay").await.len(),
        1,
        "one write for four deliveries"
    );
}

#[tokio::test]
async fn an_unknown_event_is_acknowledged_and_writes_nothing() {
    let node = support::node(true).await;
    let key = SigningKey::es256("t-1");
    let rx = Receiver::start(&node.addr, &jwks(&[&key]), None).await;
    let before = node.node.sm.with_set(|s| s.version());
    let s = set(
        &key,
        "set-other",
        "https://schemas.openid.net/secevent/caep/event-type/token-claims-change",
        json!({"claims": {"role": "ro-admin"}}),
        json!({"format": "opaque", "id": "dave"}),
    );
    assert_eq!(rx.push(&s).await.0, 202);
    let m = eventually("the event counted", Duration::from_secs(5), || async {
        let m = rx.metrics().await;
        match m.contains(r#"recall_ssf_events_total{action="none",event="other"} 1"#) {
            true => Ok(m),
            false => Err(m),
        }
    })
    .await;
    assert!(m.contains(r#"outcome="accepted"} 1"#), "{m}");
    assert_eq!(
        node.node.sm.with_set(|s| s.version()),
        before,
        "nothing written"
    );
    assert!(
        rx.log().contains("nothing to revoke"),
        "logged: {}",
        rx.log()
    );
}

#[tokio::test]
async fn pushes_arrive_over_https_with_the_configured_certificate() {
    let node = support::node(true).await;
    let key = SigningKey::es256("t-1");
    let rx = Receiver::start_https(&node.addr, &jwks(&[&key])).await;
    let s = set(
        &key,
        "set-https",
        SESSION_REVOKED,
        json!({}),
        json!({"format": "complex", "session": {"format": "opaque", "id": "s-tls"}}),
    );
    let (status, body) = rx.push(&s).await;
    assert_eq!(status, 202, "{body}");
    let session = RevocationKey::new(Kind::Session, TRANSMITTER, "s-tls");
    assert!(node.node.sm.with_set(|s| s.get(&session).is_some()));
}
