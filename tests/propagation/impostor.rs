//! A subscriber subscribes as itself only: a stream whose Hello names another subscriber's id
//! than the certificate's is refused, and the real subscriber's stream goes on undisturbed (its
//! node never sees the impostor's acks).

use std::time::Duration;

use crate::fixture::{OneNode, revoke, subscribe, subscriber_security, token};
use crate::raw::{Raw, hello};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_with_another_subscribers_id_is_refused_and_the_real_one_survives() {
    let node = OneNode::start().await;
    let real = subscribe(node.subscriber_config("payments")).await;
    let connects = real.status().connects;

    let err = Raw::open_as(
        &node.addr,
        hello("payments", 0, 0, 0),
        subscriber_security("mallory"),
    )
    .await
    .err()
    .expect("the impostor is refused");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(
        err.message()
            .contains("spiffe://recall.local/subscriber/mallory")
            && err.message().contains("\"payments\""),
        "{}",
        err.message()
    );

    let mut client = node.client().await;
    let v = revoke(&mut client, vec![token("https://iss", "after-impostor")]).await;
    real.wait_version(v, Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        real.status().connects,
        connects,
        "the real stream never broke"
    );
    // The node records the real subscriber's ack of that version, and no one else.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let seen = node.node.subscribers.list();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].id, "payments");
        if seen[0].applied == v {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ack of version {v} never arrived: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    real.shutdown().await;
}

/// Only a relay reports subscribers behind it: a subscriber whose stream sends a Downstream
/// report has its stream ended with PERMISSION_DENIED, and counts for nobody; a relay's report
/// that breaks the limits is refused with INVALID_ARGUMENT naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_relay_reports_subscribers_and_only_within_the_limits() {
    use recall::proto as pb;
    use recall::transport::{DEV_TRUST_DOMAIN, Identity};

    let node = OneNode::start().await;
    let report = |id: &str| pb::SubscribeRequest {
        body: Some(pb::subscribe_request::Body::Downstream(pb::Downstream {
            subscribers: vec![pb::DownstreamSubscriber {
                subscriber_id: id.into(),
                mode: "full".into(),
                applied_version: 1_000_000,
                via: String::new(),
            }],
            gone: vec![],
        })),
    };
    let ended = |mut raw: Raw| async move {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), raw.down.message()).await {
                Ok(Err(status)) => return status,
                Ok(Ok(Some(_))) => continue,
                other => panic!("the stream was not ended with a status: {other:?}"),
            }
        }
    };

    let raw = Raw::open(&node.addr, hello("sneaky", 0, 0, 0))
        .await
        .unwrap();
    raw.up.send(report("ghost")).await.unwrap();
    let status = ended(raw).await;
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("only a relay"),
        "{}",
        status.message()
    );
    assert!(
        node.node.subscribers.list().iter().all(|s| s.id != "ghost"),
        "a subscriber cannot vouch for others"
    );

    let relay = crate::fixture::ca()
        .security(&Identity::relay(DEV_TRUST_DOMAIN, "edge-1"))
        .unwrap();
    let raw = Raw::open_as(&node.addr, hello("edge-1", 0, 0, 0), relay)
        .await
        .unwrap();
    raw.up.send(report(&"x".repeat(300))).await.unwrap();
    let status = ended(raw).await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .contains("downstream.subscribers.subscriber_id"),
        "{}",
        status.message()
    );
}
