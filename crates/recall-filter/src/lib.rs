//! The subscriber's local filters: what a sidecar or an embedded subscriber holds so that "is this
//! token revoked?" is answered locally, in nanoseconds, without a network call.
//!
//! - [`Filter`] is the single writer: it applies a snapshot ([`SnapshotLoader`]) or a chain of
//!   [`Delta`](recall_core::Delta)s, checks the digest after each, and publishes an immutable
//!   state (`published.rs`);
//! - [`Reader`] is the check path, cloned into every request handler: it finds the published
//!   state with one plain load of a generation counter (its thread keeps the state it saw last)
//!   and never waits for the writer; a [`LocalReader`] keeps that state in itself;
//! - the state is split into shards by the top bits of the fingerprint ([`FULL_SHARD_BITS`],
//!   [`LITE_SHARD_BITS`]), held in groups of 64 that states share (`shards.rs`), so a delta
//!   copies only the groups and shards it touches; a full shard is a
//!   word-blocked Bloom prefilter keyed straight from the fingerprint's bits (`prefilter.rs`),
//!   which answers most negatives from one word, in front of the sorted exact fingerprints,
//!   probed where the fingerprint's uniform bits predict;
//! - rules are kept by scope fingerprint in a map that hashes with the identity (`rules.rs`);
//! - [`Mode::Lite`] keeps only Bloom filters (the `bloomfilter` crate, 1% false positives): a hit
//!   answers "possibly revoked, confirm" (the subscriber confirms it with the cluster); a shard
//!   that deltas fill past what it was sized for is reported ([`Filter::needs_rebuild`]) and the
//!   next snapshot rebuilds it.
//!
//! The crate does no I/O, reads no clock and knows nothing of gRPC: staleness, persistence and
//! the stream live in the service (`src/sidecar`).

mod error;
mod filter;
mod loader;
mod prefilter;
mod published;
mod rules;
mod shard;
mod shards;
mod state;

pub use error::FilterError;
pub use filter::{Checked, Filter, LocalReader, Mode, Reader, Stats};
pub use loader::SnapshotLoader;
pub use shard::{FULL_SHARD_BITS, LITE_SHARD_BITS};
