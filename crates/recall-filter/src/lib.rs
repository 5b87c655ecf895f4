//! The subscriber's local filters: what a sidecar or an embedded subscriber holds so that "is this
//! token revoked?" is answered locally, in nanoseconds, without a network call.
//!
//! - [`Filter`] is the single writer: it applies a snapshot ([`SnapshotLoader`]) or a chain of
//!   [`Delta`](recall_core::Delta)s, checks the digest after each, and publishes an immutable
//!   state;
//! - [`Reader`] is the check path, cloned into every request handler: it loads the published
//!   state (a lock-free `arc-swap` load) and never waits for the writer; a [`LocalReader`]
//!   does the same for one thread with a cheaper load;
//! - the state is split into shards by the top bits of the fingerprint ([`FULL_SHARD_BITS`],
//!   [`LITE_SHARD_BITS`]), so a delta copies only the shards it touches; a full shard is a sorted exact fingerprint array probed
//!   where the fingerprint's uniform bits predict it (see `shard.rs` for why no Bloom filter sits
//!   in front of it);
//! - [`Mode::Lite`] keeps only Bloom filters (the `bloomfilter` crate, 1% false positives): a hit
//!   answers "possibly revoked, confirm".
//!
//! The crate does no I/O, reads no clock and knows nothing of gRPC: staleness, persistence and
//! the stream live in the service (`src/sidecar`).

mod error;
mod filter;
mod loader;
mod shard;
mod state;

pub use error::FilterError;
pub use filter::{Checked, Filter, LocalReader, Mode, Reader, Stats};
pub use loader::SnapshotLoader;
pub use shard::{FULL_SHARD_BITS, LITE_SHARD_BITS};
