//! An ack counts only for a version the node sent on that stream, with the node's digest at that
//! version. A raw subscriber that acks a snapshot with another digest is resynced and is not
//! counted as having applied it; one that resumes from a version with a made-up digest and acks
//! that version (which the node never sent it) is not counted either. Operators read these
//! counts as "the wave has landed", so a forged or wrong ack must never move them.

use recall::proto as pb;
use recall::proto::subscribe_response::Body;

use crate::fixture::{OneNode, revoke, token};
use crate::raw::{Raw, hello};

fn ack(applied_version: u64, digest: u64) -> pb::SubscribeRequest {
    pb::SubscribeRequest {
        body: Some(pb::subscribe_request::Body::Ack(pb::Ack {
            applied_version,
            digest,
        })),
    }
}

/// What the node's own Status says of `id` towards `version`: whether it counts as applied,
/// and the version it is listed at when it lags.
async fn counted(node: &OneNode, id: &str, version: u64) -> (bool, Option<u64>) {
    let req = pb::StatusRequest {
        version: Some(version),
        local_only: true,
    };
    let s = node.client().await.status(req).await.unwrap().into_inner();
    let c = s.convergence.unwrap();
    let lag = c.laggards.iter().find(|l| l.subscriber_id == id);
    let listed = lag.map(|l| l.applied_version);
    (listed.is_none() && c.subscribers_total > 0, listed)
}

/// Reads until the node's next heartbeat; its version.
async fn next_heartbeat(raw: &mut Raw) -> u64 {
    loop {
        if let Body::Heartbeat(h) = raw.next().await {
            return h.applied_version;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_with_a_wrong_digest_is_not_counted_and_gets_a_resync() {
    let node = OneNode::start().await;
    let mut client = node.client().await;
    revoke(&mut client, vec![token("https://iss", "forged-1")]).await;

    let mut raw = Raw::open(&node.addr, hello("forger", 0, 0, 0))
        .await
        .unwrap();
    let (version, digest) = loop {
        if let Body::SnapshotBegin(b) = raw.next().await {
            break (b.version, b.digest);
        }
    };
    next_heartbeat(&mut raw).await;
    raw.up.send(ack(version, digest ^ 1)).await.unwrap();
    let reason = loop {
        match raw.next().await {
            Body::Resync(r) => break r.reason,
            Body::Heartbeat(_) => continue,
            other => panic!("expected a resync, got {other:?}"),
        }
    };
    assert_eq!(reason, "digest_mismatch");
    assert_eq!(
        counted(&node, "forger", version).await,
        (false, Some(0)),
        "an ack with a wrong digest counts as nothing applied"
    );

    // The same version acked with the node's digest counts.
    assert_eq!(raw.snapshot_reason().await, "digest_mismatch");
    next_heartbeat(&mut raw).await;
    raw.up.send(ack(version, digest)).await.unwrap();
    crate::sidecar_fixture::wait_until(
        "the right ack to count",
        std::time::Duration::from_secs(10),
        || async { counted(&node, "forger", version).await == (true, None) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_of_a_version_never_sent_on_the_stream_is_not_counted() {
    let node = OneNode::start().await;
    let mut client = node.client().await;
    let from = revoke(&mut client, vec![token("https://iss", "resume-1")]).await;
    revoke(&mut client, vec![token("https://iss", "resume-2")]).await;
    let seed = node.node.sm.with_set(|s| s.fingerprinter().seed().0);

    // Resumes from `from` claiming a digest nobody checked (deltas follow, so the node does
    // not compare it), then acks `from`: the node never sent `from` on this stream.
    let made_up = 0x5eed;
    let mut raw = Raw::open(&node.addr, hello("resumer", from, made_up, seed))
        .await
        .unwrap();
    let first = loop {
        if let Body::Delta(d) = raw.next().await {
            break d.version;
        }
    };
    assert!(first > from);
    raw.up.send(ack(from, made_up)).await.unwrap();
    // Acks are handled in order: an ack that gets an answer (a resync, for a wrong digest)
    // shows that the node has handled the one before it.
    raw.up.send(ack(first, made_up)).await.unwrap();
    loop {
        if let Body::Resync(r) = raw.next().await {
            assert_eq!(r.reason, "digest_mismatch");
            break;
        }
    }
    assert_eq!(
        counted(&node, "resumer", from).await,
        (false, Some(0)),
        "neither the ack of the version never sent nor the one with a wrong digest counts"
    );
}
