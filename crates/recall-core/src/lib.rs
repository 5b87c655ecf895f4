//! The revocation core of recall: what can be revoked, the commands that change the set, the
//! deltas and digests subscribers follow, and the verdict of a check.
//!
//! - [`key`] and [`rule`]: revocation keys `(kind, namespace, value)` and not-before rules;
//! - [`command`] and [`validate`]: the commands and the checks they pass before being proposed;
//! - [`set`]: the authoritative [`RevocationSet`], whose `apply` is deterministic and yields a
//!   [`Delta`] per command;
//! - [`fingerprint`] and [`digest`]: keyed xxh3 fingerprints and the order-independent digest;
//! - [`delta`]: deltas and the subscriber [`View`];
//! - [`verdict`]: checks of keys and whole tokens against any [`Lookup`].
//!
//! This crate never does I/O, never reads a clock and knows nothing of gRPC or Raft: every
//! replica and subscriber computes the same results from the same inputs.

pub mod command;
pub mod delta;
pub mod digest;
pub mod fingerprint;
pub mod key;
pub mod rule;
pub mod set;
pub mod time;
pub mod validate;
pub mod verdict;

pub use command::{Command, Meta, Revocation};
pub use delta::{Delta, Expiry, View};
pub use digest::{Digest, RuleFingerprint};
pub use fingerprint::{Fingerprint, FingerprintSeed, Fingerprinter, KeyCheck, NamespaceHasher};
pub use key::{Kind, RevocationKey};
pub use rule::{Rule, RuleScope, ScopeKind, issued_before};
pub use set::frozen::{Flat, Frozen, SetSnapshotRef};
pub use set::{
    Applied, CorruptSnapshot, Entry, OutOfOrder, RevocationSet, SetSnapshot, StoredRule,
};
pub use time::Timestamp;
pub use validate::{Limits, MAX_VALUE_LEN, ValidationError, validate};
pub use verdict::{
    Lookup, MAX_IAT_SECONDS, Match, Namespace, Presence, Status, TokenFacts, Verdict, plausible_iat,
};
