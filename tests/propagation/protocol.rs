//! The node's side of the stream contract against subscribers that misbehave or fall behind:
//! a slow subscriber is resynced and still ends with the whole set; a Hello from the future or
//! with a wrong digest is answered with a snapshot saying why; protocol errors are refused.

use std::time::Duration;

use recall::proto::subscribe_response::Body;
use recall_core::{Delta, Digest, Fingerprint, FingerprintSeed, View};
use recall_filter::{Filter, Mode};

use crate::fixture::{OneNode, revoke, token};
use crate::raw::{Raw, hello};

/// Applies what a raw stream sends to a filter, as a subscriber would; returns the resync
/// reasons seen once the filter reaches `version`.
async fn follow(raw: &mut Raw, filter: &mut Filter, version: u64, slow: Duration) -> Vec<String> {
    let mut reasons = Vec::new();
    let mut loader = None;
    let mut parts: Vec<recall::proto::Delta> = Vec::new();
    while filter.version() < version || loader.is_some() || !parts.is_empty() {
        tokio::time::sleep(slow).await;
        match raw.next().await {
            Body::Resync(r) => {
                reasons.push(r.reason);
                parts.clear();
            }
            Body::SnapshotBegin(b) => {
                loader = Some(filter.begin_snapshot(
                    FingerprintSeed(b.fingerprint_seed),
                    b.version,
                    b.last_change_version,
                    Digest(b.digest),
                ))
            }
            Body::SnapshotChunk(c) => loader.as_mut().unwrap().push_fingerprints(
                &c.fingerprints
                    .iter()
                    .map(|&x| Fingerprint(x))
                    .collect::<Vec<_>>(),
            ),
            Body::SnapshotEnd(_) => loader.take().unwrap().finish(filter).unwrap(),
            Body::Delta(p) => {
                let last = p.last_part;
                parts.push(p);
                if last {
                    let first = &parts[0];
                    let d = Delta {
                        version: first.version,
                        prev_version: first.prev_version,
                        digest: Digest(first.digest),
                        added: parts
                            .iter()
                            .flat_map(|p| p.added.iter().map(|&x| Fingerprint(x)))
                            .collect(),
                        removed: parts
                            .iter()
                            .flat_map(|p| p.removed.iter().map(|&x| Fingerprint(x)))
                            .collect(),
                        ..Delta::default()
                    };
                    parts.clear();
                    filter
                        .apply(&d)
                        .expect("the node sent a delta that does not follow");
                }
            }
            Body::Heartbeat(h) => filter
                .advance(h.applied_version, h.last_change_version)
                .unwrap(),
        }
    }
    reasons
}

/// A subscriber too slow for the node's queue falls behind the retained window: the node sends
/// Resync("too_slow") and a snapshot, never skipping, and the subscriber ends with the whole set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_subscriber_is_resynced_and_ends_with_the_whole_set() {
    let node = OneNode::start_with(|c| {
        c.state_machine.max_deltas = 8;
        c.streams.queue = 2;
    })
    .await;
    let mut client = node.client().await;
    let mut raw = Raw::open(&node.addr, hello("slow", 0, 0, 0)).await.unwrap();
    let mut filter = Filter::new(Mode::Full, FingerprintSeed(0));
    let mut v = 0;
    // Enough bytes that the transport's buffers cannot absorb them all.
    for i in 0..100 {
        let items = (0..2_000)
            .map(|j| token("https://iss", &format!("s{i}-{j}")))
            .collect();
        v = revoke(&mut client, items).await;
    }
    let reasons = follow(&mut raw, &mut filter, v, Duration::from_millis(10)).await;
    assert!(
        reasons.iter().any(|r| r == "too_slow"),
        "no resync: {reasons:?}"
    );
    let view: View = node.node.sm.with_set(|s| s.view());
    assert_eq!(filter.view().unwrap().fingerprints, view.fingerprints);
    assert_eq!(filter.digest(), view.digest);
}

/// What a slow subscriber costs the node is bounded by bytes, not by the size of the changes:
/// with room for 64 messages but 64 KiB, the node never holds much more than that for a reader
/// that falls behind; it stops queuing changes, resyncs it ("too_slow") once the window has
/// moved past it, and the subscriber still ends with the whole set, its stream never cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_costs_the_node_a_bounded_number_of_bytes() {
    const BOUND: usize = 64 * 1024;
    let node = OneNode::start_with(|c| {
        c.state_machine.max_deltas = 4;
        c.streams.queue = 64;
        c.streams.queue_bytes = BOUND;
        c.streams.chunk_bytes = 16 * 1024;
    })
    .await;
    let mut client = node.client().await;
    let mut raw = Raw::open(&node.addr, hello("slow-bytes", 0, 0, 0))
        .await
        .unwrap();
    let mut filter = Filter::new(Mode::Full, FingerprintSeed(0));
    let metrics = node.node.metrics.clone();
    let most = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    let watch = {
        let (metrics, most) = (metrics.clone(), most.clone());
        tokio::spawn(async move {
            loop {
                most.fetch_max(
                    metrics.streams.queue_bytes.get(),
                    std::sync::atomic::Ordering::Relaxed,
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let mut v = 0;
    for i in 0..60 {
        let items = (0..2_000)
            .map(|j| token("https://iss", &format!("b{i}-{j}")))
            .collect();
        v = revoke(&mut client, items).await;
    }
    let reasons = follow(&mut raw, &mut filter, v, Duration::from_millis(10)).await;
    watch.abort();
    assert!(
        reasons.iter().any(|r| r == "too_slow"),
        "no resync: {reasons:?}"
    );
    let view: View = node.node.sm.with_set(|s| s.view());
    assert_eq!(filter.view().unwrap().fingerprints, view.fingerprints);
    let most = most.load(std::sync::atomic::Ordering::Relaxed) as usize;
    // The bound, plus the one message that crossed it.
    assert!(
        most <= BOUND + 17 * 1024,
        "the node held {most} bytes for one subscriber (bound {BOUND})"
    );
    let cut = metrics
        .streams
        .streams_ended
        .with_label_values(&["not_reading"])
        .get();
    assert_eq!(cut, 0, "the slow subscriber's stream was cut");
}

/// A Hello claiming a version the cluster never reached gets a snapshot, reason
/// "future_version"; a Hello at the current version with a wrong digest gets one with
/// "digest_mismatch".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn future_version_and_wrong_digest_are_resynced() {
    let node = OneNode::start_with(|c| c.streams.catch_up_wait = Duration::from_millis(200)).await;
    let mut client = node.client().await;
    revoke(&mut client, vec![token("https://iss", "x")]).await;
    let applied = node.node.sm.applied();
    let seed = node.node.sm.with_set(|s| s.fingerprinter().seed().0);

    let mut raw = Raw::open(&node.addr, hello("future", 1_000_000, 1, seed))
        .await
        .unwrap();
    assert_eq!(raw.snapshot_reason().await, "future_version");

    let wrong = applied.digest.0 ^ 1;
    let mut raw = Raw::open(&node.addr, hello("wrong", applied.version, wrong, seed))
        .await
        .unwrap();
    assert_eq!(raw.snapshot_reason().await, "digest_mismatch");

    let mut raw = Raw::open(
        &node.addr,
        hello("reseeded", applied.version, applied.digest.0, seed ^ 1),
    )
    .await
    .unwrap();
    assert_eq!(raw.snapshot_reason().await, "seed_changed");

    let mut raw = Raw::open(
        &node.addr,
        hello("ok", applied.version, applied.digest.0, seed),
    )
    .await
    .unwrap();
    assert!(
        matches!(raw.next().await, Body::Heartbeat(_)),
        "an up-to-date subscriber gets no snapshot"
    );
}

/// Protocol errors end the stream with INVALID_ARGUMENT naming the problem; a second stream with
/// the same id replaces the first (ABORTED).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_are_refused_clearly() {
    let node = OneNode::start().await;
    let nobody = crate::fixture::subscriber_security("nobody");
    let err = Raw::open_as(&node.addr, hello("", 0, 0, 0), nobody)
        .await
        .err()
        .expect("an empty id is refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("subscriber_id"), "{}", err.message());

    let mut first = Raw::open(&node.addr, hello("twice", 0, 0, 0))
        .await
        .unwrap();
    assert_eq!(first.snapshot_reason().await, "new_subscriber");
    let _second = Raw::open(&node.addr, hello("twice", 0, 0, 0))
        .await
        .unwrap();
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(5), first.down.message())
            .await
            .unwrap()
        {
            Ok(Some(_)) => continue,
            other => break other,
        }
    };
    let status = ended.expect_err("the replaced stream ends with a status");
    assert_eq!(status.code(), tonic::Code::Aborted);

    let mut raw = Raw::open(&node.addr, hello("acker", 0, 0, 0))
        .await
        .unwrap();
    raw.snapshot_reason().await;
    let ack = recall::proto::Ack {
        applied_version: 1_000_000,
        digest: 0,
    };
    raw.up
        .send(recall::proto::SubscribeRequest {
            body: Some(recall::proto::subscribe_request::Body::Ack(ack)),
        })
        .await
        .unwrap();
    let status = loop {
        match tokio::time::timeout(Duration::from_secs(5), raw.down.message())
            .await
            .unwrap()
        {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("ended without a status"),
            Err(s) => break s,
        }
    };
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("beyond the last version sent"),
        "{}",
        status.message()
    );
}
