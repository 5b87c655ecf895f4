//! The server side of the internal Raft RPC, on the peer port: only node identities of the
//! current membership are served, and the node id inside a vote, AppendEntries or snapshot
//! chunk must be the caller's own. Then it decodes what peers send, hands it to openraft,
//! accepts writes forwarded by followers, and reports this node's subscribers.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tonic::{Request, Response as TonicResponse, Status};

use super::codec::{decode, encode};
use super::{NodeId, Raft, TypeConfig};
use crate::node::contact::Contact;
use crate::node::sightings;
use crate::node::subscribe::Registry;
use crate::node::writer::Writer;
use crate::proto as pb;
use crate::proto::raft_internal_server::RaftInternal;

/// The internal Raft service of one node.
pub struct RaftService {
    raft: Raft,
    writer: Writer,
    contact: Arc<Contact>,
    registry: Arc<Registry>,
    sightings: Arc<sightings::Store>,
    configured: BTreeSet<NodeId>,
    /// Room for the AppendEntries in hand (see [`APPENDS_IN_HAND`]).
    appends: Arc<Semaphore>,
}

impl RaftService {
    /// Serves `raft`, and forwarded writes through `writer`; every AppendEntries openraft
    /// accepts is recorded in `contact`. `configured` are the initial members from the node's
    /// configuration, accepted until the node learns a membership (empty: any node of the trust
    /// domain, for a node waiting to be added). Members are told this node's subscribers in
    /// `registry` and the sightings they reported, in `sightings`.
    pub fn new(
        raft: Raft,
        writer: Writer,
        contact: Arc<Contact>,
        registry: Arc<Registry>,
        sightings: Arc<sightings::Store>,
        configured: BTreeSet<NodeId>,
    ) -> Self {
        Self {
            raft,
            writer,
            contact,
            registry,
            sightings,
            configured,
            appends: Arc::new(Semaphore::new(APPENDS_IN_HAND)),
        }
    }

    /// The caller's node id, refused unless it is a member. `None` only on the plaintext
    /// benchmark build.
    fn member<T>(&self, req: &Request<T>, rpc: &str) -> Result<Option<NodeId>, Status> {
        let peer = crate::transport::peer(req)?;
        let Some(identity) = &peer.identity else {
            return Ok(None);
        };
        let Some(id) = identity.node_id() else {
            tracing::warn!(peer = %peer.addr, %identity, rpc, "refused a non-node identity on the peer port");
            return Err(Status::permission_denied(format!(
                "the peer port serves authority nodes only; {identity} is not a node identity \
                 (operators and subscribers use the client port)"
            )));
        };
        let members: BTreeSet<NodeId> = {
            let m = self.raft.metrics();
            let m = m.borrow();
            m.membership_config.nodes().map(|(id, _)| *id).collect()
        };
        let allowed = if !members.is_empty() {
            &members
        } else {
            &self.configured
        };
        if allowed.is_empty() || allowed.contains(&id) {
            return Ok(Some(id));
        }
        tracing::warn!(peer = %peer.addr, %identity, rpc, "refused a node that is not a member");
        Err(Status::permission_denied(format!(
            "{identity} is not a member of this cluster (members: {allowed:?}); add it with \
             `recall cluster add-learner` first"
        )))
    }
}

/// Refuses a Raft message whose node id is not the caller's.
fn same_node(caller: Option<NodeId>, inside: Option<NodeId>, what: &str) -> Result<(), Status> {
    match caller {
        Some(c) if inside != Some(c) => {
            tracing::warn!(caller = c, inside = ?inside, what, "refused a Raft message for another node");
            Err(Status::permission_denied(format!(
                "{what} names node {} but the caller's certificate is node {c}",
                inside.map_or_else(|| "none".into(), |i| i.to_string())
            )))
        }
        _ => Ok(()),
    }
}

/// How many AppendEntries a node handles at once, each to its end even after its caller gave
/// up (a leader sends one at a time to each follower; more come only from retries).
const APPENDS_IN_HAND: usize = 4;

/// Hands one AppendEntries from `caller` to openraft and records the leader's contact.
async fn append(
    raft: Raft,
    contact: &Contact,
    caller: Option<NodeId>,
    payload: &[u8],
) -> Result<pb::append_entries_reply::Outcome, Status> {
    let rpc: openraft::raft::AppendEntriesRequest<TypeConfig> =
        decode("append-entries request", payload)?;
    same_node(
        caller,
        rpc.vote.leader_id().voted_for(),
        "the AppendEntries vote",
    )?;
    use pb::append_entries_reply::Outcome;
    let leader_commit = rpc.leader_commit.map(|c| c.index);
    let received = std::time::Instant::now();
    let result = raft.append_entries(rpc).await;
    if matches!(&result, Ok(r) if !matches!(r, openraft::raft::AppendEntriesResponse::HigherVote(_)))
    {
        // A leader of the current term reached this node (a conflict reply included), and
        // told it how far the cluster has committed.
        contact.heard(received, leader_commit);
    }
    Ok(match outcome(result) {
        (Some(p), _) => Outcome::Payload(p),
        (_, e) => Outcome::Error(e.unwrap_or_default()),
    })
}

/// The reply fields of a Raft call: the openraft result, encoded either way.
fn outcome<T: serde::Serialize, E: serde::Serialize>(
    r: Result<T, E>,
) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    match r {
        Ok(v) => (Some(encode(&v)), None),
        Err(e) => (None, Some(encode(&e))),
    }
}

#[tonic::async_trait]
impl RaftInternal for RaftService {
    async fn append_entries(
        &self,
        req: Request<pb::AppendEntriesRequest>,
    ) -> Result<TonicResponse<pb::AppendEntriesReply>, Status> {
        let caller = self.member(&req, "AppendEntries")?;
        let permit = Arc::clone(&self.appends)
            .acquire_owned()
            .await
            .map_err(|_| Status::unavailable("the node is shutting down"))?;
        let payload = req.into_inner().payload;
        let (raft, contact) = (self.raft.clone(), Arc::clone(&self.contact));
        // The leader gives up on an AppendEntries after one heartbeat interval, and the call is
        // dropped here with it. A loaded follower that needs longer must not lose the work: the
        // entries would never be stored and, worse, openraft would never see its leader and start
        // elections. So the handling runs to its end on a task of its own, and the leader's retry
        // finds the entries stored and is answered at once.
        let handled = tokio::spawn(async move {
            let _permit = permit;
            append(raft, &contact, caller, &payload).await
        });
        let outcome = handled
            .await
            .map_err(|e| Status::internal(format!("the AppendEntries task failed: {e}")))??;
        Ok(TonicResponse::new(pb::AppendEntriesReply {
            outcome: Some(outcome),
        }))
    }

    async fn vote(
        &self,
        req: Request<pb::VoteRequest>,
    ) -> Result<TonicResponse<pb::VoteReply>, Status> {
        let caller = self.member(&req, "Vote")?;
        let rpc: openraft::raft::VoteRequest<u64> =
            decode("vote request", &req.into_inner().payload)?;
        same_node(caller, rpc.vote.leader_id().voted_for(), "the vote request")?;
        use pb::vote_reply::Outcome;
        let outcome = match outcome(self.raft.vote(rpc).await) {
            (Some(p), _) => Outcome::Payload(p),
            (_, e) => Outcome::Error(e.unwrap_or_default()),
        };
        Ok(TonicResponse::new(pb::VoteReply {
            outcome: Some(outcome),
        }))
    }

    async fn install_snapshot(
        &self,
        req: Request<pb::InstallSnapshotRequest>,
    ) -> Result<TonicResponse<pb::InstallSnapshotReply>, Status> {
        let caller = self.member(&req, "InstallSnapshot")?;
        let req = req.into_inner();
        let mut rpc: openraft::raft::InstallSnapshotRequest<TypeConfig> =
            decode("install-snapshot request", &req.payload)?;
        same_node(
            caller,
            rpc.vote.leader_id().voted_for(),
            "the snapshot's vote",
        )?;
        rpc.data = req.data;
        use pb::install_snapshot_reply::Outcome;
        let outcome = match outcome(self.raft.install_snapshot(rpc).await) {
            (Some(p), _) => Outcome::Payload(p),
            (_, e) => Outcome::Error(e.unwrap_or_default()),
        };
        Ok(TonicResponse::new(pb::InstallSnapshotReply {
            outcome: Some(outcome),
        }))
    }

    async fn forward(
        &self,
        req: Request<pb::ForwardRequest>,
    ) -> Result<TonicResponse<pb::ForwardReply>, Status> {
        let from = self.member(&req, "Forward")?.unwrap_or(0);
        let write: crate::node::writer::Write =
            decode("forwarded write", &req.into_inner().payload)?;
        let reply = self.writer.accept_forwarded(from, write).await?;
        Ok(TonicResponse::new(pb::ForwardReply {
            outcome: Some(pb::forward_reply::Outcome::Payload(encode(&reply))),
        }))
    }

    async fn subscribers(
        &self,
        req: Request<pb::SubscribersRequest>,
    ) -> Result<TonicResponse<pb::SubscribersReply>, Status> {
        self.member(&req, "Subscribers")?;
        let subscribers = self
            .registry
            .list()
            .into_iter()
            .map(|s| pb::SubscriberLag {
                subscriber_id: s.id,
                node_id: String::new(),
                applied_version: s.applied,
                behind: 0,
                last_ack_ms: s.last_ack.as_millis(),
                via: s.via,
            })
            .collect();
        Ok(TonicResponse::new(pb::SubscribersReply {
            node_id: self.raft.metrics().borrow().id,
            subscribers,
        }))
    }

    async fn node_sightings(
        &self,
        req: Request<pb::ListSightingsRequest>,
    ) -> Result<TonicResponse<pb::NodeSightingsReply>, Status> {
        self.member(&req, "NodeSightings")?;
        let req = req.into_inner();
        let limit = sightings::limit(&req)?;
        let mut reply = self.sightings.list(req.since_ms, limit);
        reply.node_id = self.raft.metrics().borrow().id;
        Ok(TonicResponse::new(reply))
    }
}
