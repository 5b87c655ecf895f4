//! A write sent to a follower commits: the follower forwards it to the leader, the reply carries
//! the committed version, and every node of the 3-node cluster then holds the same set.

use crate::fixture::{Cluster, converged, leader, revoke_range, status};

/// A revoke sent to a follower is acknowledged with a committed version and lands, identically,
/// on all three nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_sent_to_a_follower_commits_on_every_node() {
    let cluster = Cluster::start(3).await;
    let leader = leader(&cluster).await;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();

    let mut client = cluster.client(follower);
    let reply = client
        .revoke(revoke_range("follower-write", 0..3))
        .await
        .expect("the follower commits the write through the leader")
        .into_inner();
    assert!(reply.version > 0, "a committed write has a version");
    assert_eq!((reply.added, reply.already_present), (3, 0));
    let s = status(&mut client).await.unwrap();
    assert_ne!(s.leader_id, Some(follower), "the write went to a follower");

    let nodes = converged(&cluster, reply.version).await;
    assert_eq!(nodes.len(), 3);
    for (id, s) in &nodes {
        assert_eq!(s.entries, 3, "node {id} holds the three revocations");
    }
    let digests: Vec<u64> = nodes.values().map(|s| s.digest).collect();
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "{digests:x?}");
}
