//! A node cut off from the rest of the cluster stops vouching for its state: it ends its
//! subscribers' streams instead of sending heartbeats that say "nothing newer exists", so a
//! subscriber that can reach no other node goes stale (and its policy decides) instead of
//! answering from a frozen state as if it were current.

use std::time::Duration;

use recall::subscriber::{Subscriber, SubscriberConfig};
use recall_core::Kind;

use recall::transport::{DEV_TRUST_DOMAIN, Identity};

use crate::fixture::{
    Cluster, ISSUER, PATIENCE, converged, eventually, leader, revoke_range, security,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_loses_the_cluster_ends_its_streams_and_its_subscriber_goes_stale() {
    let mut cluster = Cluster::start(3).await;
    let l = leader(&cluster).await;
    let reply = cluster
        .client(l)
        .revoke(revoke_range("isolated", 0..1))
        .await
        .unwrap()
        .into_inner();
    converged(&cluster, reply.version).await;

    // A subscriber that can reach node 3 only.
    let mut config = SubscriberConfig::new(
        vec![cluster.addr(3).to_string()],
        "svc-isolated",
        security(&Identity::subscriber(DEV_TRUST_DOMAIN, "svc-isolated")),
    );
    config.staleness_bound = Duration::from_secs(1);
    let sub = Subscriber::start(config).await.unwrap();
    sub.wait_version(reply.version, PATIENCE).await.unwrap();
    let fresh = sub.check_key(Kind::Token, ISSUER, "isolated-0");
    assert!(fresh.revoked && !fresh.stale, "{fresh:?}");

    // Nodes 1 and 2 go away: node 3 has no leader (or, if it led, no quorum).
    cluster.stop(1).await;
    cluster.stop(2).await;
    let answer = eventually("the subscriber's answers turn stale", PATIENCE, || async {
        let a = sub.check_key(Kind::Token, ISSUER, "never-revoked");
        if a.stale {
            Ok(a)
        } else {
            Err(format!("still fresh: {a:?}"))
        }
    })
    .await;
    // Fail closed: a stale answer refuses even a token the frozen state would allow.
    assert!(answer.revoked, "{answer:?}");
    sub.shutdown().await;
}

/// A node that stops hearing from a leader stops vouching for its state within two election
/// timeouts, long before it ends its streams (ten): while the stream is still open its
/// heartbeats say `no_leader_contact`, and its subscriber counts the silence against its own
/// staleness bound, not the node's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_node_stops_vouching_long_before_it_ends_its_streams() {
    let mut cluster = Cluster::start(3).await;
    let l = leader(&cluster).await;
    let reply = cluster
        .client(l)
        .revoke(revoke_range("cut-off", 0..1))
        .await
        .unwrap()
        .into_inner();
    converged(&cluster, reply.version).await;
    let f = (1..=3).find(|&i| i != l).expect("a follower");
    let addr = cluster.addr(f).to_string();
    let mut config = SubscriberConfig::new(
        vec![addr.clone()],
        "svc-cut-off",
        security(&Identity::subscriber(DEV_TRUST_DOMAIN, "svc-cut-off")),
    );
    config.staleness_bound = Duration::from_millis(500);
    let sub = Subscriber::start(config).await.unwrap();
    sub.wait_version(reply.version, PATIENCE).await.unwrap();

    for other in (1..=3).filter(|&i| i != f) {
        cluster.stop(other).await;
    }
    let state = sub.watch();
    eventually("the node's heartbeats stop vouching", PATIENCE, || async {
        let s = state.borrow().clone();
        match (s.node.as_deref(), s.node_stale_reason.as_deref()) {
            (Some(n), Some("no_leader_contact")) if n == addr => Ok(()),
            other => Err(format!("following, doubt: {other:?}")),
        }
    })
    .await;
    eventually(
        "answers turn stale on the still-open stream",
        PATIENCE,
        || async {
            let a = sub.check_key(Kind::Token, ISSUER, "never-revoked");
            let following = state.borrow().node.as_deref() == Some(addr.as_str());
            if a.stale && following {
                Ok(())
            } else {
                Err(format!("following {following}: {a:?}"))
            }
        },
    )
    .await;
    sub.shutdown().await;
}
