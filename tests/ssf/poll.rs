//! Poll delivery: the receiver polls the transmitter's endpoint, acknowledges what it wrote,
//! reports what it refused in `setErrs`, and leaves unacknowledged what the cluster did not
//! take, so the transmitter hands it out again until it goes through.

use std::time::Duration;

use recall_core::{RuleScope, ScopeKind};
use serde_json::json;

use super::keys::{SigningKey, jwks};
use super::support::{self, PollEndpoint, Receiver, TRANSMITTER, eventually, set, set_with};

const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";

#[tokio::test]
async fn polled_sets_are_acknowledged_only_once_written_and_refusals_are_reported() {
    // The receiver's identity has no role yet: the cluster refuses its writes.
    let node = support::node(false).await;
    let key = SigningKey::es256("t-1");
    let endpoint = PollEndpoint::start().await;
    let s = set(
        &key,
        "poll-1",
        SESSION_REVOKED,
        json!({}),
        json!({"format": "iss_sub", "iss": TRANSMITTER, "sub": "frank"}),
    );
    endpoint.offer("poll-1", s);
    let bad = set_with(
        &key,
        json!({"typ": "secevent+jwt"}),
        support::claims(
            "poll-2",
            SESSION_REVOKED,
            json!({}),
            json!({"format": "opaque", "id": "x"}),
        )
        .as_object()
        .map(|c| {
            let mut c = c.clone();
            c.insert("aud".into(), json!("https://someone-else"));
            serde_json::Value::Object(c)
        })
        .unwrap(),
    );
    endpoint.offer("poll-2", bad);
    let rx = Receiver::start(&node.addr, &jwks(&[&key]), Some(&endpoint.url)).await;
    eventually(
        "the refused SET reported in setErrs",
        Duration::from_secs(10),
        || async {
            let q = endpoint.queue.lock().unwrap();
            match q.errors.get("poll-2") {
                Some(e) => Ok(e.clone()),
                None => Err(format!("errors {:?}", q.errors)),
            }
        },
    )
    .await;
    let e = endpoint.queue.lock().unwrap().errors["poll-2"].clone();
    assert_eq!(e["err"], "invalid_audience", "{e}");
    // Not written, so not acknowledged: it stays with the transmitter, polled again.
    let polls = endpoint.queue.lock().unwrap().polls;
    eventually("two more polls", Duration::from_secs(10), || async {
        let q = endpoint.queue.lock().unwrap();
        match q.polls >= polls + 2 {
            true => Ok(()),
            false => Err(format!("{} polls", q.polls)),
        }
    })
    .await;
    {
        let q = endpoint.queue.lock().unwrap();
        assert!(q.acked.is_empty(), "acked {:?}", q.acked);
        assert!(q.pending.contains_key("poll-1"));
    }
    assert!(
        rx.log().contains("recaller"),
        "the log says what the identity lacks"
    );
    support::grant(&node.addr).await;
    eventually("poll-1 acknowledged", Duration::from_secs(15), || async {
        let q = endpoint.queue.lock().unwrap();
        match q.acked.contains(&"poll-1".to_string()) {
            true => Ok(()),
            false => Err(format!("acked {:?}", q.acked)),
        }
    })
    .await;
    let scope = RuleScope::new(ScopeKind::Subject, TRANSMITTER, "frank");
    assert!(
        node.node.sm.with_set(|s| s.rule(&scope).is_some()),
        "acknowledged only once written"
    );
    assert_eq!(
        endpoint.queue.lock().unwrap().acked,
        vec!["poll-1".to_string()],
        "acknowledged once"
    );
}
