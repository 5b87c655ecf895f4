//! Deltas: what one applied command changed, as subscribers see it (fingerprints only). Deltas
//! chain by version: a subscriber applies a delta only when it sits exactly at `prev_version`,
//! and checks its digest afterwards. Anything else is a gap, and a gap means resync, never guess.

use serde::{Deserialize, Serialize};

use crate::{Digest, Fingerprint, RuleFingerprint};

/// The change one applied command made to the subscriber-visible set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    /// The version (Raft log index) this delta brings a subscriber to.
    pub version: u64,
    /// The version of the previous delta; a subscriber must be exactly there to apply this one.
    pub prev_version: u64,
    /// Fingerprints newly revoked.
    pub added: Vec<Fingerprint>,
    /// Fingerprints no longer revoked (lifted or pruned).
    pub removed: Vec<Fingerprint>,
    /// Rules added, or moved to a later time (replacing the rule of the same scope).
    pub rules_set: Vec<RuleFingerprint>,
    /// Rules lifted or pruned, by scope fingerprint.
    pub rules_removed: Vec<Fingerprint>,
    /// The digest of the whole set after this delta.
    pub digest: Digest,
    /// When the leader accepted the command (a prune: the time inside it), so subscribers can
    /// measure how long the change took to reach them.
    #[serde(default)]
    pub at: crate::Timestamp,
    /// The latest expiry of each fingerprint whose expiry is new or moved later: every
    /// fingerprint in `added`, and a fingerprint already revoked when a re-revocation (or a
    /// colliding key) extended it. In order; a later one for the same fingerprint supersedes an
    /// earlier one. Not part of the digest: only subscribers that keep expiries (the Redis mirror
    /// sets TTLs from them) ask for them on the stream.
    #[serde(default)]
    pub expiries: Vec<Expiry>,
}

/// When a revoked fingerprint stops mattering: the latest `expires_at` of the entries that have
/// it, or `None` when one of them never expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expiry {
    /// The fingerprint.
    pub fingerprint: Fingerprint,
    /// Its latest expiry; `None`: until lifted.
    pub at: Option<crate::Timestamp>,
}

impl Delta {
    /// Whether the delta changes nothing (an expiry moved later is a change).
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.rules_set.is_empty()
            && self.rules_removed.is_empty()
            && self.expiries.is_empty()
    }

    /// How many changes the delta carries.
    pub fn len(&self) -> usize {
        self.added.len() + self.removed.len() + self.rules_set.len() + self.rules_removed.len()
    }
}

/// The subscriber-visible state at one version: what a snapshot sent to a subscriber holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    /// The fingerprint seed of the cluster.
    pub seed: crate::FingerprintSeed,
    /// The version (Raft log index) the view is at.
    pub version: u64,
    /// The version of the last delta folded into the view.
    pub last_change: u64,
    /// The digest of the view.
    pub digest: Digest,
    /// Every revoked fingerprint, sorted.
    pub fingerprints: Vec<Fingerprint>,
    /// Every rule, sorted by scope fingerprint.
    pub rules: Vec<RuleFingerprint>,
}
