//! The Raft type configuration of an authority node: what a log entry carries (a [`Request`]) and
//! what applying it answers (a [`Response`]).

use std::io::Cursor;

use recall_core::{Command, FingerprintSeed};
use serde::{Deserialize, Serialize};

use crate::node::access::RoleChange;
use crate::node::stepup::{Approval, Change, OtpEnrollment, PolicyChange, Proposed, StepUpPolicy};

/// A node id.
pub type NodeId = u64;

/// A member's address as the cluster knows it.
pub type Node = openraft::BasicNode;

openraft::declare_raft_types!(
    /// The type configuration of recall's Raft group.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = Node,
        SnapshotData = Cursor<Vec<u8>>,
);

/// What a Raft log entry of recall carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Fixes the cluster's fingerprint seed. The first leader proposes it before any command; the
    /// first one applied wins and later ones change nothing, so every replica agrees.
    Init {
        /// The seed chosen by the proposing leader.
        seed: FingerprintSeed,
        /// The first admins of the cluster (identity URIs from the leader's configuration),
        /// bound when this `Init` is the one that fixes the seed.
        admins: Vec<String>,
        /// The proposing leader's time (recorded with the admins' binding).
        at: recall_core::Timestamp,
    },
    /// A validated command, stamped with the leader's time.
    Command(Command),
    /// A change of one role binding, by an admin.
    Roles(RoleChange),
    /// [`Request::Init`] for clusters created since step-up: also fixes the cluster's step-up
    /// policy. `Init` stays for the logs of older clusters (which get the production policy).
    Bootstrap {
        /// The seed chosen by the proposing leader.
        seed: FingerprintSeed,
        /// The first admins of the cluster.
        admins: Vec<String>,
        /// The proposing leader's time.
        at: recall_core::Timestamp,
        /// The step-up policy the cluster starts with.
        policy: StepUpPolicy,
    },
    /// A change of the step-up policy, applied as it is (its own policy must ask nothing).
    Policy(PolicyChange),
    /// An operator enrolling their one-time-code secret.
    EnrollOtp(OtpEnrollment),
    /// A change that came with a one-time code of its actor: applied if the code is current and
    /// unused when the entry is applied.
    WithOtp {
        /// The code.
        code: String,
        /// The change.
        change: Change,
    },
    /// A change proposed as a pending request, to take effect when another operator approves;
    /// applied at once if, when the entry is applied, the policy asks nothing for it.
    Propose(Change),
    /// A second operator's approval of a pending request.
    Approve(Approval),
    /// A node binds its checkpoint-signing key (only that node can cause this entry).
    NodeKey {
        /// The node.
        node: NodeId,
        /// Its ed25519 public key.
        key: [u8; 32],
        /// The leader's time.
        at: recall_core::Timestamp,
    },
    /// A node's signed checkpoint, counted towards a quorum.
    Witness(crate::node::history::Signed),
    /// The leader carried out the membership change approved at `version`.
    MembershipDone {
        /// The version of the approval.
        version: u64,
    },
}

/// What applying one entry did, as the operator sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The log index (version) the entry was applied at.
    pub version: u64,
    /// Keys or rules newly revoked.
    pub added: u64,
    /// Keys or rules already revoked (no-op).
    pub already_present: u64,
    /// Keys or rules lifted or pruned.
    pub removed: u64,
    /// Keys or rules a lift named that were not revoked.
    pub not_found: u64,
    /// Why the entry changed nothing: a step-up rule did not hold when it was applied.
    pub refused: Option<String>,
    /// The pending request the entry created (a change that waits for a second operator).
    pub proposed: Option<Proposed>,
}

impl Response {
    /// The reply to a write committed in several entries: counts add up, the version is the
    /// last one committed.
    pub fn merge(self, other: Response) -> Response {
        Response {
            version: self.version.max(other.version),
            added: self.added + other.added,
            already_present: self.already_present + other.already_present,
            removed: self.removed + other.removed,
            not_found: self.not_found + other.not_found,
            refused: self.refused.or(other.refused),
            proposed: self.proposed.or(other.proposed),
        }
    }
}

/// The openraft handle of a node.
pub type Raft = openraft::Raft<TypeConfig>;
