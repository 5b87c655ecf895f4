//! The server side of the internal Raft RPC: decodes what peers send, hands it to openraft, and
//! accepts writes forwarded by followers.

use std::sync::Arc;

use tonic::{Request, Response as TonicResponse, Status};

use super::codec::{decode, encode};
use super::{Raft, TypeConfig};
use crate::node::contact::Contact;
use crate::node::writer::Writer;
use crate::proto as pb;
use crate::proto::raft_internal_server::RaftInternal;

/// The internal Raft service of one node.
pub struct RaftService {
    raft: Raft,
    writer: Writer,
    contact: Arc<Contact>,
}

impl RaftService {
    /// Serves `raft`, and forwarded writes through `writer`; every AppendEntries openraft
    /// accepts is recorded in `contact`.
    pub fn new(raft: Raft, writer: Writer, contact: Arc<Contact>) -> Self {
        Self {
            raft,
            writer,
            contact,
        }
    }
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
        let rpc: openraft::raft::AppendEntriesRequest<TypeConfig> =
            decode("append-entries request", &req.into_inner().payload)?;
        use pb::append_entries_reply::Outcome;
        let result = self.raft.append_entries(rpc).await;
        if matches!(&result, Ok(r) if !matches!(r, openraft::raft::AppendEntriesResponse::HigherVote(_)))
        {
            // A leader of the current term reached this node (a conflict reply included).
            self.contact.heard();
        }
        let outcome = match outcome(result) {
            (Some(p), _) => Outcome::Payload(p),
            (_, e) => Outcome::Error(e.unwrap_or_default()),
        };
        Ok(TonicResponse::new(pb::AppendEntriesReply {
            outcome: Some(outcome),
        }))
    }

    async fn vote(
        &self,
        req: Request<pb::VoteRequest>,
    ) -> Result<TonicResponse<pb::VoteReply>, Status> {
        let rpc: openraft::raft::VoteRequest<u64> =
            decode("vote request", &req.into_inner().payload)?;
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
        let req = req.into_inner();
        let mut rpc: openraft::raft::InstallSnapshotRequest<TypeConfig> =
            decode("install-snapshot request", &req.payload)?;
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
        let cmd: recall_core::Command = decode("forwarded command", &req.into_inner().payload)?;
        let reply = self.writer.accept_forwarded(cmd).await?;
        Ok(TonicResponse::new(pb::ForwardReply {
            outcome: Some(pb::forward_reply::Outcome::Payload(encode(&reply))),
        }))
    }
}
