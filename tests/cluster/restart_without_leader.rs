//! A node restarted while the rest of its cluster is down has heard from no leader since it
//! started: its state comes from its own disk and may be far behind. It serves that state, but
//! its heartbeats say it cannot vouch for it, so a new subscriber that follows it holds the
//! state yet is not ready (not synced) and answers stale, refusing even a token that state would
//! allow. Once the cluster is back and a leader reaches the node, the subscriber turns ready.

use std::time::Duration;

use recall::subscriber::{Subscriber, SubscriberConfig};
use recall::transport::{DEV_TRUST_DOMAIN, Identity};
use recall_core::Kind;

use crate::fixture::{
    Cluster, ISSUER, PATIENCE, converged, eventually, leader, revoke_range, security,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_of_a_node_no_leader_reached_since_its_restart_is_not_ready() {
    let mut cluster = Cluster::start(3).await;
    let l = leader(&cluster).await;
    let reply = cluster
        .client(l)
        .revoke(revoke_range("old-disk", 0..1))
        .await
        .unwrap()
        .into_inner();
    converged(&cluster, reply.version).await;
    let n = cluster
        .ids()
        .into_iter()
        .find(|id| *id != l)
        .expect("a follower");
    for id in cluster.ids() {
        cluster.stop(id).await;
    }
    cluster.restart(n).await;

    let id = "svc-after-restart";
    let mut config = SubscriberConfig::new(
        vec![cluster.addr(n).to_string()],
        id,
        security(&Identity::subscriber(DEV_TRUST_DOMAIN, id)),
    );
    config.backoff_max = Duration::from_millis(200);
    let sub = Subscriber::start(config).await.unwrap();
    eventually(
        "the subscriber to hold the node's state",
        PATIENCE,
        || async {
            let s = sub.status();
            if s.version >= reply.version {
                Ok(())
            } else {
                Err(format!("{s:?}"))
            }
        },
    )
    .await;
    assert!(
        !sub.is_synced(),
        "a state no leader vouched for is not ready: {:?}",
        sub.status()
    );
    let answer = sub.check_key(Kind::Token, ISSUER, "never-revoked");
    assert!(answer.stale && answer.revoked, "{answer:?}");
    eventually(
        "the subscriber to say why the node is not vouched for",
        PATIENCE,
        || async {
            match sub.status().node_stale_reason.as_deref() {
                Some("no_leader_contact") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    assert!(!sub.is_synced());

    for other in cluster.ids().into_iter().filter(|id| *id != n) {
        cluster.restart(other).await;
    }
    eventually(
        "the subscriber to turn ready and fresh",
        PATIENCE,
        || async {
            let a = sub.check_key(Kind::Token, ISSUER, "never-revoked");
            if sub.is_synced() && !a.stale && !a.revoked {
                Ok(())
            } else {
                Err(format!("{a:?} {:?}", sub.status()))
            }
        },
    )
    .await;
    assert!(sub.check_key(Kind::Token, ISSUER, "old-disk-0").revoked);
    sub.shutdown().await;
}
