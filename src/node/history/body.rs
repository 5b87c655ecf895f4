//! What an audit record's `command_hash` covers, kept forever beside the record: the exact
//! change in its canonical (postcard) encoding, so anyone can recheck what a record claims was
//! done, and replay the commands to the set digest a checkpoint signed.

use recall_core::{Command, FingerprintSeed, Meta};
use serde::{Deserialize, Serialize};

use crate::node::access::RoleChange;
use crate::node::audit::{command_hash, hash_of};
use crate::node::stepup::{Change, PolicyChange, StepUpPolicy};

/// The body of one audit record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// A revoke, rule, lift or prune, applied.
    Command(Command),
    /// A role binding, applied.
    Roles(RoleChange),
    /// A step-up policy change, applied.
    Policy(PolicyChange),
    /// A change proposed as a pending request (not applied).
    Proposal(Change),
    /// A pending change approved by a second operator, applied.
    Approval(Change),
    /// The request that fixed the cluster's seed: the first admins and the step-up policy.
    Bootstrap {
        /// The fingerprint seed (replaying needs it).
        seed: FingerprintSeed,
        /// The admins bound.
        admins: Vec<String>,
        /// The step-up policy fixed (none for clusters from before step-up).
        policy: Option<StepUpPolicy>,
    },
    /// An operator enrolled a one-time-code secret: only a commitment to it.
    Enrollment {
        /// Who, when.
        meta: Meta,
        /// BLAKE3 commitment to the secret.
        commitment: [u8; 32],
    },
    /// A membership change, asked for directly or approved.
    Membership(crate::node::stepup::MembershipChange),
    /// A node bound its checkpoint-signing key.
    NodeKey {
        /// The node.
        node: u64,
        /// Its ed25519 public key.
        key: [u8; 32],
    },
}

impl Body {
    /// The body of an applied change.
    pub fn of_change(change: &Change) -> Self {
        match change {
            Change::Command(c) => Body::Command(c.clone()),
            Change::Roles(r) => Body::Roles(r.clone()),
            Change::Policy(p) => Body::Policy(p.clone()),
            Change::Membership(m) => Body::Membership(m.clone()),
        }
    }

    /// The hash its record must hold.
    pub fn hash(&self) -> [u8; 32] {
        match self {
            Body::Command(c) => command_hash(c),
            Body::Roles(r) => hash_of(r),
            Body::Policy(p) => hash_of(p),
            Body::Membership(m) => hash_of(m),
            Body::Proposal(c) | Body::Approval(c) => c.hash(),
            Body::Bootstrap {
                seed,
                admins,
                policy,
            } => match policy {
                None => hash_of(admins),
                Some(p) => hash_of(&(seed, admins, p)),
            },
            Body::Enrollment { meta, commitment } => hash_of(&(meta, commitment)),
            Body::NodeKey { node, key } => hash_of(&(node, key)),
        }
    }

    /// The set command this body applies when replayed, if any.
    pub fn replayed(&self) -> Option<&Command> {
        match self {
            Body::Command(c) | Body::Approval(Change::Command(c)) => Some(c),
            _ => None,
        }
    }

    /// The prefix its record's summary starts with, where the kind shows in it.
    pub fn summary_prefix(&self) -> Option<&'static str> {
        match self {
            Body::Proposal(_) => Some("propose request "),
            Body::Approval(_) => Some("approve request "),
            Body::NodeKey { .. } => Some("node "),
            Body::Enrollment { .. } => Some("enroll a one-time-code secret"),
            _ => None,
        }
    }
}
