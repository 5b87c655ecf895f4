//! Why a write was not committed, as the operator sees it.

use std::time::Duration;

use recall_core::ValidationError;

/// A write that did not commit.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The command is invalid; nothing was proposed.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// No leader committed the write within the deadline: no quorum, or an election in progress.
    #[error(
        "not committed within {0:?}: the cluster has no leader with a quorum (are a majority of \
         the voters up and reachable?); the write may still commit later, and retrying it is safe \
         because revocations are idempotent"
    )]
    Timeout(Duration),
    /// The leader is known but could not be reached to forward the write.
    #[error("cannot forward the write to the leader, node {leader} at {addr}: {reason}; retry")]
    Forward {
        /// The leader's id.
        leader: u64,
        /// The leader's address.
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// No leader is known right now.
    #[error("no leader is known right now (election in progress or no quorum); retry shortly")]
    NoLeader,
    /// Raft refused the write for another reason (shutting down, storage failure).
    #[error("the write failed: {0}")]
    Raft(String),
    /// A step-up rule did not hold when the write was applied (a wrong or used code, an
    /// expired or self-approved request...): nothing changed, and the message says why.
    #[error("{0}")]
    StepUp(String),
    /// The leader refused a forwarded write for good (a role it lacks, an invalid command, a
    /// rate limit): its status is passed on as it is, without retrying.
    #[error("the leader refused the write: {}", .0.message())]
    Refused(tonic::Status),
}

impl From<WriteError> for tonic::Status {
    fn from(e: WriteError) -> Self {
        let msg = e.to_string();
        match e {
            WriteError::Invalid(_) => tonic::Status::invalid_argument(msg),
            WriteError::Timeout(_) | WriteError::Forward { .. } | WriteError::NoLeader => {
                tonic::Status::unavailable(msg)
            }
            WriteError::Raft(_) => tonic::Status::internal(msg),
            WriteError::StepUp(_) => tonic::Status::failed_precondition(msg),
            WriteError::Refused(s) => s,
        }
    }
}
