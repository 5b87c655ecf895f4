//! Relays (`recall relay`): a chain node → relay → relay → subscriber converges with equal
//! digests; when the middle relay dies its subscriber moves to the next one and resumes from
//! the deltas it holds, nothing skipped; and the cluster's convergence counts every subscriber
//! behind the relays, naming the path to each.

use std::collections::BTreeMap;

use recall::proto as pb;
use recall::relay::{Relay, RelayConfig};
use recall::subscriber::{Subscriber, SubscriberConfig};
use recall::transport::{DEV_TRUST_DOMAIN, Identity};
use recall_core::Kind;
use tokio::net::TcpListener;

use crate::fixture::{
    Client, Cluster, ISSUER, PATIENCE, converged, eventually, leader, revoke_range, security,
};

/// A relay `id` following `upstream`.
async fn relay(id: &str, upstream: Vec<String>) -> Relay {
    let config = SubscriberConfig::new(
        upstream,
        id,
        security(&Identity::relay(DEV_TRUST_DOMAIN, id)),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    Relay::start(RelayConfig::new(config), listener)
        .await
        .unwrap()
}

/// The cluster's convergence towards `version`.
async fn wave(c: &Client, version: u64) -> pb::Convergence {
    let req = pb::StatusRequest {
        version: Some(version),
        local_only: false,
    };
    c.clone()
        .status(req)
        .await
        .unwrap()
        .into_inner()
        .convergence
        .unwrap()
}

/// Waits until the cluster reports `version` applied at exactly `ids`; each one's path.
async fn landed(c: &Client, version: u64, ids: &[&str]) -> BTreeMap<String, String> {
    eventually("the wave to land at every subscriber", PATIENCE, || async {
        let w = wave(c, version).await;
        if !w.converged || w.subscribers_total as usize != ids.len() {
            return Err(format!("{w:?}"));
        }
        // Every subscriber lags a version far ahead: the laggards name them all, with paths.
        let all = wave(c, version + 1_000_000).await;
        let paths: BTreeMap<String, String> = all
            .laggards
            .into_iter()
            .map(|l| (l.subscriber_id, l.via))
            .collect();
        if paths.keys().map(String::as_str).eq(ids.iter().copied()) {
            Ok(paths)
        } else {
            Err(format!("subscribers {paths:?}, expected {ids:?}"))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_chain_converges_survives_its_middle_relay_and_is_counted() {
    let cluster = Cluster::start(3).await;
    let nodes: Vec<String> = cluster
        .ids()
        .iter()
        .map(|&n| cluster.addr(n).to_string())
        .collect();
    let c = cluster.client(leader(&cluster).await);
    let first = c
        .clone()
        .revoke(revoke_range("before", 0..50))
        .await
        .unwrap()
        .into_inner();

    let a = relay("edge-a", nodes.clone()).await;
    let b = relay("edge-b", vec![a.addr().to_string()]).await;
    // A relay serves nobody before it has synced (its subscribers would try the next).
    b.subscriber().wait_synced(PATIENCE).await.unwrap();
    let mut config = SubscriberConfig::new(
        nodes,
        "svc-behind",
        security(&Identity::subscriber(DEV_TRUST_DOMAIN, "svc-behind")),
    );
    config.upstream = vec![b.addr().to_string(), a.addr().to_string()];
    let sub = Subscriber::start(config).await.unwrap();
    sub.wait_version(first.version, PATIENCE).await.unwrap();
    assert_eq!(sub.status().node.as_deref(), Some(&*b.addr().to_string()));

    let second = c
        .clone()
        .revoke(revoke_range("during", 0..50))
        .await
        .unwrap()
        .into_inner();
    let paths = landed(&c, second.version, &["edge-a", "edge-b", "svc-behind"]).await;
    assert_eq!(paths["edge-a"], "", "attached to a node directly");
    assert_eq!(paths["edge-b"], "edge-a");
    assert_eq!(paths["svc-behind"], "edge-a > edge-b");
    let nodes_state = converged(&cluster, second.version).await;
    let node = nodes_state.values().next().unwrap();
    let s = sub.status();
    assert_eq!(
        (s.version, s.digest.0),
        (node.applied_version, node.digest),
        "{s:?}"
    );
    let answer = sub.check_key(Kind::Token, ISSUER, "during-7");
    assert!(answer.revoked && !answer.stale, "{answer:?}");
    assert_eq!(s.snapshots, 1, "one snapshot, at the start: {s:?}");

    // The middle relay dies: its subscriber moves to the next upstream and resumes from the
    // deltas that relay holds (no new snapshot), and the cluster forgets the dead relay.
    b.shutdown().await;
    let third = c
        .clone()
        .revoke(revoke_range("after", 0..50))
        .await
        .unwrap()
        .into_inner();
    let paths = landed(&c, third.version, &["edge-a", "svc-behind"]).await;
    assert_eq!(paths["svc-behind"], "edge-a");
    let nodes_state = converged(&cluster, third.version).await;
    let node = nodes_state.values().next().unwrap();
    let s = sub.status();
    assert_eq!(
        (s.version, s.digest.0),
        (node.applied_version, node.digest),
        "{s:?}"
    );
    assert_eq!(s.node.as_deref(), Some(&*a.addr().to_string()), "{s:?}");
    assert_eq!(
        (s.snapshots, s.digest_mismatches),
        (1, 0),
        "resumed from deltas: {s:?}"
    );
    assert!(sub.check_key(Kind::Token, ISSUER, "after-49").revoked);
    assert!(sub.check_key(Kind::Token, ISSUER, "before-0").revoked);
    assert!(!sub.check_key(Kind::Token, ISSUER, "never").revoked);
    sub.shutdown().await;
    a.shutdown().await;
}
