//! The peer port serves member nodes only, and only as themselves: an operator or subscriber
//! certificate is refused, a node certificate whose id is not a member is refused, a vote or
//! AppendEntries naming another node than the certificate's is refused, a forwarded prune is
//! refused (prunes are the leader's own duty), and a forwarded write is checked against the role
//! of the operator it carries. Nothing of it reaches openraft: the cluster keeps
//! its leader and term.

use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::{CommittedLeaderId, LogId, Vote};
use recall::node::raft::TypeConfig;
use recall::node::raft::codec::encode;
use recall::node::writer::Write;
use recall::proto as pb;
use recall::proto::raft_internal_client::RaftInternalClient;
use recall::transport::{DEV_TRUST_DOMAIN, Dialer, Expect, Identity};
use recall_core::{Command, Timestamp};
use tonic::Code;

use crate::fixture::{Cluster, leader, security, status};

async fn peer_client(addr: &str, as_: &Identity) -> RaftInternalClient<tonic::transport::Channel> {
    let channel = Dialer::new(security(as_))
        .connect(addr, Expect::AnyNode)
        .await
        .expect("TLS connects");
    RaftInternalClient::new(channel)
}

fn vote_for(candidate: u64, term: u64) -> pb::VoteRequest {
    let rpc: VoteRequest<u64> = VoteRequest::new(Vote::new(term, candidate), None);
    pb::VoteRequest {
        payload: encode(&rpc),
    }
}

fn denied(r: Result<impl std::fmt::Debug, tonic::Status>, what: &str, says: &str) {
    let s = r.expect_err(what);
    assert_eq!(s.code(), Code::PermissionDenied, "{what}: {s:?}");
    assert!(s.message().contains(says), "{what}: {}", s.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_port_serves_member_nodes_as_themselves_only() {
    let cluster = Cluster::start(3).await;
    let l = leader(&cluster).await;
    let term = status(&mut cluster.client(l)).await.unwrap().term;
    let target = cluster.peer_addr(l).to_string();
    let d = DEV_TRUST_DOMAIN;

    for who in [
        Identity::operator(d, "admin"),
        Identity::subscriber(d, "s-1"),
    ] {
        let mut c = peer_client(&target, &who).await;
        denied(
            c.vote(vote_for(1, term + 10)).await,
            &format!("a vote from {who}"),
            "not a node identity",
        );
    }

    let mut stranger = peer_client(&target, &Identity::node(d, 9)).await;
    denied(
        stranger.vote(vote_for(9, term + 10)).await,
        "a vote from node 9, not a member",
        "not a member of this cluster",
    );

    let liar_id = if l == 2 { 3 } else { 2 };
    let other = (1..=3).find(|i| *i != l && *i != liar_id).unwrap();
    let mut liar = peer_client(&target, &Identity::node(d, liar_id)).await;
    denied(
        liar.vote(vote_for(other, term + 10)).await,
        "a vote naming another node",
        &format!("names node {other} but the caller's certificate is node {liar_id}"),
    );
    let forged: AppendEntriesRequest<TypeConfig> = AppendEntriesRequest {
        vote: Vote::new_committed(term + 10, other),
        prev_log_id: None,
        entries: vec![],
        leader_commit: Some(LogId::new(CommittedLeaderId::new(term + 10, other), 0)),
    };
    denied(
        liar.append_entries(pb::AppendEntriesRequest {
            payload: encode(&forged),
        })
        .await,
        "an AppendEntries naming another leader",
        "the caller's certificate is node",
    );

    let prune = Write::Command(Command::Prune {
        now: Timestamp(i64::MAX),
    });
    denied(
        liar.forward(pb::ForwardRequest {
            payload: encode(&prune),
        })
        .await,
        "a forwarded prune",
        "prunes and the seed come from the leader's own duties",
    );

    // A forwarded write carries its operator's identity, and the leader checks that identity's
    // role itself.
    let unbound = Write::Command(Command::Revoke {
        meta: recall_core::Meta {
            at: Timestamp(0),
            actor: Identity::operator(d, "nobody").to_string(),
            on_behalf_of: String::new(),
            reason: String::new(),
        },
        items: vec![recall_core::Revocation {
            key: recall_core::RevocationKey::new(recall_core::Kind::Token, "https://i", "t"),
            expires_at: None,
        }],
    });
    denied(
        liar.forward(pb::ForwardRequest {
            payload: encode(&unbound),
        })
        .await,
        "a forwarded revoke by an operator without a role",
        "needs the revoker role; spiffe://recall.local/operator/nobody has no role",
    );

    // None of it moved the cluster.
    let after = status(&mut cluster.client(l)).await.unwrap();
    assert_eq!((after.leader_id, after.term), (Some(l), term));
    // A member asking as itself is served.
    let reply = liar
        .subscribers(pb::SubscribersRequest {})
        .await
        .expect("a member is served")
        .into_inner();
    assert_eq!(reply.node_id, l);
}
