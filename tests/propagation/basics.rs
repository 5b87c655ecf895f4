//! A revocation, a rule and a lift reach a subscriber, which acks what it applied.

use std::time::Duration;

use recall::proto as pb;
use recall_core::{Status, TokenFacts};

use crate::fixture::{OneNode, revoke, subscribe, token};

const ISS: &str = "https://login.example";

/// A revoked token is refused by the subscriber; a not-before rule recalls a user's older tokens;
/// a lift makes the token valid again; the node records the version the subscriber applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_rule_and_lift_reach_the_subscriber() {
    let node = OneNode::start().await;
    let sub = subscribe(node.subscriber_config("svc-1")).await;
    let mut client = node.client().await;
    let facts = TokenFacts {
        iss: ISS,
        jti: Some("t-1"),
        sub: Some("alice"),
        iat: Some(1_000),
        ..Default::default()
    };
    assert_eq!(sub.check(&facts).status, Status::Allowed);

    let v = revoke(&mut client, vec![token(ISS, "t-1")]).await;
    sub.wait_version(v, Duration::from_secs(5)).await.unwrap();
    let a = sub.check(&facts);
    assert!(
        a.revoked && a.status == Status::Revoked && !a.stale,
        "{a:?}"
    );

    let rule = pb::Rule {
        scope: Some(pb::RuleScope {
            kind: pb::ScopeKind::Subject as i32,
            namespace: ISS.into(),
            value: "alice".into(),
        }),
        not_before_ms: 2_000_000,
        expires_at_ms: None,
    };
    let v = client
        .add_rule(pb::AddRuleRequest {
            rule: Some(rule),
            actor: "t".into(),
            reason: "t".into(),
            wait: None,
        })
        .await
        .unwrap()
        .into_inner()
        .version;
    sub.wait_version(v, Duration::from_secs(5)).await.unwrap();
    let bob = TokenFacts {
        iss: ISS,
        sub: Some("alice"),
        iat: Some(1_000),
        ..Default::default()
    };
    assert_eq!(sub.check(&bob).status, Status::Revoked);

    let lift = pb::LiftRequest {
        keys: vec![token(ISS, "t-1").key.unwrap()],
        rules: vec![],
        actor: "t".into(),
        reason: "t".into(),
        wait: None,
    };
    let v = client.lift(lift).await.unwrap().into_inner().version;
    sub.wait_version(v, Duration::from_secs(5)).await.unwrap();
    let only_jti = TokenFacts {
        iss: ISS,
        jti: Some("t-1"),
        ..Default::default()
    };
    assert_eq!(sub.check(&only_jti).status, Status::Allowed);
    assert_eq!(sub.status().digest, node.node.sm.applied().digest);

    // The node records the acked version.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let acked = node
            .node
            .subscribers
            .list()
            .into_iter()
            .find(|s| s.id == "svc-1")
            .map(|s| s.applied);
        if acked >= Some(v) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ack never reached the node: {acked:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sub.shutdown().await;
}
