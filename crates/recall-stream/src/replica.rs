//! The sidecar's filter as a follower's replica.

use recall_core::{Delta, Digest, FingerprintSeed};
use recall_filter::{Filter, FilterError, SnapshotLoader};

use crate::follower::Replica;
use crate::message::{SnapshotBegin, SnapshotChunk};

impl Replica for Filter {
    type Error = FilterError;
    type Loader = SnapshotLoader;

    fn version(&self) -> u64 {
        Filter::version(self)
    }

    fn last_change(&self) -> u64 {
        Filter::last_change(self)
    }

    fn digest(&self) -> Digest {
        Filter::digest(self)
    }

    fn seed(&self) -> FingerprintSeed {
        Filter::seed(self)
    }

    fn apply(&mut self, deltas: &[Delta]) -> Result<(), FilterError> {
        self.apply_many(deltas)
    }

    fn advance(&mut self, version: u64, last_change: u64) -> Result<(), FilterError> {
        Filter::advance(self, version, last_change)
    }

    fn diverged(e: &FilterError) -> bool {
        matches!(e, FilterError::DigestMismatch { .. })
    }

    fn begin_snapshot(&mut self, b: &SnapshotBegin) -> SnapshotLoader {
        let mut l = Filter::begin_snapshot(self, b.seed, b.version, b.last_change, b.digest);
        l.reserve(usize::try_from(b.entries).unwrap_or(0).min(1 << 26));
        l
    }

    fn push_chunk(loader: &mut SnapshotLoader, chunk: SnapshotChunk) {
        loader.push_fingerprints(&chunk.fingerprints);
        loader.push_rules(&chunk.rules);
    }

    fn loaded(loader: &SnapshotLoader) -> u64 {
        loader.len() as u64
    }

    fn finish_snapshot(&mut self, loader: SnapshotLoader) -> Result<(), FilterError> {
        loader.finish(self)
    }
}
