//! Why a filter refused a delta or a snapshot. Every refusal leaves the published state as it was;
//! the caller resyncs from a snapshot.

use recall_core::Digest;

/// A delta or snapshot the filter will not apply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// The delta does not continue the filter's chain: applying it could skip a change.
    #[error(
        "gap: the delta to version {version} follows version {prev_version}, but the filter is at \
         {at} (last change {last_change}); resync from a snapshot"
    )]
    Gap {
        /// The delta's version.
        version: u64,
        /// The version the delta follows.
        prev_version: u64,
        /// The filter's version.
        at: u64,
        /// The filter's last change.
        last_change: u64,
    },
    /// After applying, the filter's digest differs from the authority's.
    #[error(
        "digest mismatch at version {version}: expected {expected}, computed {computed}; the \
         filter diverged from the authority and must resync from a snapshot"
    )]
    DigestMismatch {
        /// The version of the delta or snapshot.
        version: u64,
        /// The digest the authority sent.
        expected: Digest,
        /// The digest the filter computed.
        computed: Digest,
    },
    /// A version that goes backwards.
    #[error("version {given} is behind the filter's version {at}; versions only move forward")]
    Backwards {
        /// The version given.
        given: u64,
        /// The filter's version.
        at: u64,
    },
    /// The snapshot was not what its header announced.
    #[error("corrupt snapshot at version {version}: {what}; request a new snapshot")]
    CorruptSnapshot {
        /// The snapshot's version.
        version: u64,
        /// What was wrong.
        what: String,
    },
}
