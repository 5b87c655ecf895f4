//! A fleet: one revocation on the leader is reported revoked by every one of several sidecars
//! over HTTP, and `--wait-converged` reports that every live subscriber applied it.

use std::time::Duration;

use recall::proto as pb;

use crate::fixture::{OneNode, token};
use crate::sidecar_fixture::{check, start_sidecar};

const ISS: &str = "https://fleet.example";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sidecar_reports_the_revocation_and_the_wave_is_seen_landing() {
    let node = OneNode::start().await;
    let mut sidecars = Vec::new();
    for i in 0..4 {
        let s = start_sidecar(node.subscriber_config(&format!("fleet-{i}"))).await;
        s.subscriber()
            .wait_synced(Duration::from_secs(10))
            .await
            .unwrap();
        sidecars.push(s);
    }
    let facts = [("iss", ISS), ("jti", "stolen")];
    for s in &sidecars {
        assert_eq!(check(s, &facts).await.1["status"], "allowed");
    }

    let reply = node
        .client()
        .await
        .revoke(pb::RevokeRequest {
            items: vec![token(ISS, "stolen")],
            actor: "test".into(),
            reason: "leaked".into(),
            wait: Some(pb::WaitConverged {
                timeout_ms: 10_000,
                min_subscribers: 0,
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let c = reply
        .convergence
        .expect("a convergence report was asked for");
    assert!(c.converged, "{c:?}");
    assert_eq!(
        (c.subscribers_total, c.subscribers_applied),
        (4, 4),
        "{c:?}"
    );
    assert_eq!(c.target_version, reply.version);

    // Converged means applied: every sidecar refuses the token now, without waiting.
    for s in &sidecars {
        let (code, answer) = check(s, &facts).await;
        assert_eq!(code, 200);
        assert_eq!(answer["revoked"], true, "{answer}");
        assert!(
            answer["version"].as_u64().unwrap() >= reply.version,
            "{answer}"
        );
    }
    for s in sidecars {
        s.shutdown().await.unwrap();
    }
}

/// Subscribers that join at the same version share one snapshot: the node views its set once,
/// not once per stream, and every one of them holds the whole set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_joining_at_one_version_share_one_snapshot() {
    let node = OneNode::start().await;
    let items: Vec<_> = (0..1000).map(|i| token(ISS, &format!("t{i}"))).collect();
    let version = node
        .client()
        .await
        .revoke(pb::RevokeRequest {
            items,
            actor: "test".into(),
            reason: "mass recall".into(),
            wait: None,
        })
        .await
        .unwrap()
        .into_inner()
        .version;
    let metrics = &node.node.metrics;
    let builds = metrics.streams.snapshot_builds.get();
    let joins = (0..6).map(|i| {
        let c = node.subscriber_config(&format!("share-{i}"));
        tokio::spawn(crate::fixture::subscribe(c))
    });
    let mut subs = Vec::new();
    for j in joins {
        subs.push(j.await.unwrap());
    }
    for s in &subs {
        s.wait_version(version, Duration::from_secs(10))
            .await
            .unwrap();
        let st = s.watch().borrow().clone();
        assert_eq!(st.entries, 1000, "{st:?}");
    }
    let sent = metrics
        .streams
        .snapshots_sent
        .with_label_values(&["new_subscriber"])
        .get();
    assert_eq!(sent, 6, "every new subscriber got a snapshot");
    assert_eq!(
        metrics.streams.snapshot_builds.get() - builds,
        1,
        "one view of the set served all six"
    );
    for s in subs {
        s.shutdown().await;
    }
}
