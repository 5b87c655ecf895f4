//! A node dials each peer at the address its own configuration gives for that peer
//! (`peer_dial`), not the one the peer advertises: with every advertised address leading
//! nowhere, a cluster whose nodes know where to dial elects a leader, forwards a follower's write
//! and hears every member for the convergence view. The address does not make the identity: a
//! dial address that leads to another node is refused, naming the node it found.

use std::collections::BTreeMap;

use recall::proto as pb;
use recall::proto::raft_internal_client::RaftInternalClient;
use recall::transport::{Dialer, PeerDialer};

use crate::fixture::{Cluster, converged, leader, node_security, revoke_range, status};

/// An address on 127.0.0.1 that refuses connections (bound, then released).
fn dead_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    l.local_addr().expect("bound").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_reach_each_other_at_their_own_dial_addresses_when_the_advertised_ones_lead_nowhere()
{
    let advertised: BTreeMap<u64, String> = (1..=3).map(|id| (id, dead_addr())).collect();
    let cluster = Cluster::start_with(3, |config| {
        // The real peer ports become this node's dial addresses; the membership gets dead ones.
        config.peer_dial = config
            .initial_members
            .iter()
            .filter(|(id, _)| **id != config.id)
            .map(|(id, addr)| (*id, addr.clone()))
            .collect();
        config.initial_members = advertised.clone();
        config.advertise = advertised[&config.id].clone();
    })
    .await;
    let l = leader(&cluster).await;
    let follower = cluster.ids().into_iter().find(|id| *id != l).unwrap();

    // A write to a follower is forwarded to the leader at the follower's dial address for it.
    let mut client = cluster.client(follower);
    let reply = client
        .revoke(revoke_range("peer-dial", 0..3))
        .await
        .expect("the follower forwards the write to the leader")
        .into_inner();
    let nodes = converged(&cluster, reply.version).await;
    assert_eq!(nodes.len(), 3);

    // The membership still lists the advertised addresses.
    let s = status(&mut client).await.unwrap();
    for m in &s.members {
        assert_eq!(m.address, advertised[&m.node_id], "{m:?}");
    }
    // The cluster-wide convergence view hears every member through the dial addresses.
    let wide = client
        .status(pb::StatusRequest {
            version: Some(reply.version),
            local_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    let convergence = wide.convergence.expect("a convergence report");
    assert!(
        convergence.silent_nodes.is_empty(),
        "silent: {:?}",
        convergence.silent_nodes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dial_address_that_leads_to_another_node_is_refused_by_identity() {
    let cluster = Cluster::start(3).await;
    leader(&cluster).await;
    // Node 1 is told that node 2 is at node 3's peer port.
    let wrong = PeerDialer::new(
        Dialer::new(node_security(1)),
        [(2, cluster.peer_addr(3).to_string())].into(),
    );
    assert_eq!(wrong.addr(2, cluster.peer_addr(2)), cluster.peer_addr(3));
    let err = wrong
        .connect(2, cluster.peer_addr(2))
        .await
        .expect_err("node 3 cannot answer for node 2");
    let text = err.to_string();
    assert!(
        text.contains("node/3") && text.contains("not node 2"),
        "{text}"
    );

    // At its own address, node 2 answers as itself.
    let right = PeerDialer::new(Dialer::new(node_security(1)), BTreeMap::new());
    let channel = right
        .connect(2, cluster.peer_addr(2))
        .await
        .expect("node 2 answers at the address it advertises");
    let reply = RaftInternalClient::new(channel)
        .subscribers(pb::SubscribersRequest {})
        .await
        .expect("a member may ask")
        .into_inner();
    assert_eq!(reply.node_id, 2);
}
