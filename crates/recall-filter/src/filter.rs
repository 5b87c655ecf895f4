//! The writer and the readers of a filter. One [`Filter`] applies deltas, heartbeats and
//! snapshots and publishes each result; any number of [`Reader`]s check against the latest
//! published state without ever waiting for the writer.

use std::sync::Arc;

use recall_core::{
    Digest, Fingerprint, FingerprintSeed, Fingerprinter, Kind, RuleFingerprint, TokenFacts,
    Verdict, View,
};

use crate::FilterError;
use crate::loader::SnapshotLoader;
use crate::published::Published;
use crate::rules::Rules;
use crate::state::State;

/// What a filter keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// The exact fingerprints behind a prefilter: every answer is certain (about 10.2 bytes an
    /// entry: 8 exact, 2 prefilter).
    #[default]
    Full,
    /// Bloom filters only (about 1.7 bytes an entry): a hit answers "possibly revoked", to be
    /// confirmed with the cluster; lifts cannot be applied until the next snapshot, and a shard
    /// filled past its design rate waits for one to be rebuilt ([`Filter::needs_rebuild`]).
    Lite,
}

/// The answer to a check, with the version it was computed at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    /// What matched.
    pub verdict: Verdict,
    /// The filter's version when it answered.
    pub version: u64,
    /// The version of the last change the answering state had applied: an answer computed
    /// elsewhere at a version at least this is at least as current (a lite-mode confirmation).
    pub last_change: u64,
}

/// What a filter holds, for status pages and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    /// The mode.
    pub mode: Mode,
    /// The version.
    pub version: u64,
    /// The version of the last change.
    pub last_change: u64,
    /// The digest.
    pub digest: Digest,
    /// Revoked fingerprints held.
    pub entries: usize,
    /// Rules held.
    pub rules: usize,
    /// Removals a lite filter could not apply.
    pub stale_removals: usize,
    /// Lite shards filled past the fingerprints their Bloom filters were sized for (their
    /// false-positive rate is over the design 1%); 0 in full mode.
    pub overfull_shards: usize,
    /// Snapshots that rebuilt overfull lite shards since the filter was made.
    pub rebuilds: u64,
    /// Heap bytes of the Bloom filters (lite mode) or of the prefilter (full mode).
    pub bloom_bytes: usize,
    /// Heap bytes of the exact fingerprints.
    pub exact_bytes: usize,
}

/// The single writer of a filter.
#[derive(Debug)]
pub struct Filter {
    mode: Mode,
    shared: Arc<Published>,
    /// Snapshots published while a lite shard was overfull: each rebuilt it.
    rebuilds: u64,
}

/// A cheap, cloneable handle that checks against the latest published state.
#[derive(Clone, Debug)]
pub struct Reader {
    shared: Arc<Published>,
    mode: Mode,
}

impl Filter {
    /// An empty filter at version 0 under `seed` (a snapshot replaces both).
    pub fn new(mode: Mode, seed: FingerprintSeed) -> Self {
        let state = State::build(
            Fingerprinter::new(seed),
            0,
            0,
            &[],
            Rules::default(),
            mode_full(mode),
        );
        Self {
            mode,
            shared: Arc::new(Published::new(state)),
            rebuilds: 0,
        }
    }

    /// A handle for checks.
    pub fn reader(&self) -> Reader {
        Reader {
            shared: Arc::clone(&self.shared),
            mode: self.mode,
        }
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The version the filter is at.
    pub fn version(&self) -> u64 {
        self.shared.load().version
    }

    /// The version of the last change applied.
    pub fn last_change(&self) -> u64 {
        self.shared.load().last_change
    }

    /// The digest of what the filter holds.
    pub fn digest(&self) -> Digest {
        self.shared.load().digest
    }

    /// How many fingerprints the filter holds.
    pub fn entries(&self) -> usize {
        self.shared.load().len
    }

    /// How many times overfull lite shards were rebuilt (see [`Stats::rebuilds`]).
    pub fn rebuilds(&self) -> u64 {
        self.rebuilds
    }

    /// The fingerprint seed.
    pub fn seed(&self) -> FingerprintSeed {
        self.shared.load().fp.seed()
    }

    /// Moves the filter to `version` without a change: a heartbeat saying the authority is at
    /// `version` and its last change is `last_change`. Refuses when the filter has not applied
    /// that last change (it missed a delta).
    pub fn advance(&mut self, version: u64, last_change: u64) -> Result<(), FilterError> {
        let cur = self.shared.load_full();
        if last_change != cur.last_change {
            return Err(FilterError::Gap {
                version,
                prev_version: last_change,
                at: cur.version,
                last_change: cur.last_change,
            });
        }
        if version > cur.version {
            let mut next = State::clone(&cur);
            next.version = version;
            self.shared.store(next);
        }
        Ok(())
    }

    /// Starts loading a snapshot; the filter keeps answering from its current state until
    /// [`SnapshotLoader::finish`] publishes the new one.
    pub fn begin_snapshot(
        &self,
        seed: FingerprintSeed,
        version: u64,
        last_change: u64,
        digest: Digest,
    ) -> SnapshotLoader {
        SnapshotLoader::new(seed, version, last_change, digest)
    }

    /// Replaces the filter's content with a whole view (a snapshot in one piece, or a state
    /// persisted on disk), after checking its digest.
    pub fn load_view(&mut self, view: &View) -> Result<(), FilterError> {
        let mut loader =
            self.begin_snapshot(view.seed, view.version, view.last_change, view.digest);
        loader.push_fingerprints(&view.fingerprints);
        loader.push_rules(&view.rules);
        loader.finish(self)
    }

    /// Publishes a state built by a snapshot loader.
    pub(crate) fn publish_snapshot(
        &mut self,
        seed: FingerprintSeed,
        version: u64,
        last_change: u64,
        digest: Digest,
        fps: &[u64],
        rules: Rules,
    ) -> Result<(), FilterError> {
        let cur = self.shared.load();
        if version < cur.version && seed == cur.fp.seed() {
            return Err(FilterError::Backwards {
                given: version,
                at: cur.version,
            });
        }
        let overfull = cur.overfull > 0;
        drop(cur);
        let state = State::build(
            Fingerprinter::new(seed),
            version,
            last_change,
            fps,
            rules,
            mode_full(self.mode),
        );
        if state.digest != digest {
            return Err(FilterError::DigestMismatch {
                version,
                expected: digest,
                computed: state.digest,
            });
        }
        self.shared.store(state);
        self.rebuilds += u64::from(overfull);
        Ok(())
    }

    /// Whether a lite shard has been filled past what its Bloom filter was sized for, so its
    /// false positives are over the design 1%. A Bloom filter cannot grow without the
    /// fingerprints it holds, which a lite filter does not keep; the caller fetches a snapshot
    /// (the exact set, which also clears the removals a Bloom filter cannot apply) and the
    /// snapshot rebuilds every shard sized for what it then holds.
    pub fn needs_rebuild(&self) -> bool {
        self.shared.load().overfull > 0
    }

    /// The whole content as a view, for persisting (full mode; a lite filter has no exact set and
    /// returns `None`).
    pub fn view(&self) -> Option<View> {
        self.reader().view()
    }

    /// What the filter holds, its memory included: this walks every shard, so a caller that
    /// needs only the version, digest or size after each change asks for those alone.
    pub fn stats(&self) -> Stats {
        let cur = self.shared.load_full();
        let (mut bloom_bytes, mut exact_bytes) =
            (cur.prefilter.as_ref().map_or(0, |p| p.heap_bytes()), 0);
        for shard in cur.shards.iter() {
            let (b, e) = shard.heap_bytes();
            bloom_bytes += b;
            exact_bytes += e;
        }
        debug_assert_eq!(cur.shards.len(), cur.layout.shards());
        debug_assert_eq!(cur.shards.iter().map(|s| s.len()).sum::<usize>(), cur.len);
        Stats {
            mode: self.mode,
            version: cur.version,
            last_change: cur.last_change,
            digest: cur.digest,
            entries: cur.len,
            rules: cur.rules.len(),
            stale_removals: cur.stale_removals,
            overfull_shards: cur.overfull,
            rebuilds: self.rebuilds,
            bloom_bytes,
            exact_bytes,
        }
    }
}

impl Reader {
    /// The whole content as of the latest published state, as a view (full mode; a lite filter
    /// has no exact set and returns `None`).
    pub fn view(&self) -> Option<View> {
        if self.mode == Mode::Lite {
            return None;
        }
        let cur = self.shared.load_full();
        let mut fingerprints = Vec::with_capacity(cur.len);
        for shard in cur.shards.iter() {
            fingerprints.extend(shard.fingerprints().iter().map(|&x| Fingerprint(x)));
        }
        let mut rules: Vec<RuleFingerprint> = cur
            .rules
            .iter()
            .map(|(&scope, &not_before)| RuleFingerprint { scope, not_before })
            .collect();
        rules.sort_unstable();
        Some(View {
            seed: cur.fp.seed(),
            version: cur.version,
            last_change: cur.last_change,
            digest: cur.digest,
            fingerprints,
            rules,
        })
    }

    /// Checks every fact of a token against the entries and the rules.
    #[inline]
    pub fn check_token(&self, facts: &TokenFacts<'_>) -> Checked {
        self.shared.with_latest(|state| Checked {
            verdict: state.fp.check_token(facts, state),
            version: state.version,
            last_change: state.last_change,
        })
    }

    /// Checks several tokens against one published state, so every answer carries the same
    /// version even if the writer publishes meanwhile (a batch check promises one state).
    pub fn check_tokens(&self, facts: &[TokenFacts<'_>]) -> Vec<Checked> {
        self.shared.with_latest(|state| {
            facts
                .iter()
                .map(|f| Checked {
                    verdict: state.fp.check_token(f, state),
                    version: state.version,
                    last_change: state.last_change,
                })
                .collect()
        })
    }

    /// Checks one key.
    #[inline]
    pub fn check_key(&self, kind: Kind, namespace: &str, value: &str) -> Checked {
        self.shared.with_latest(|state| Checked {
            verdict: state.fp.check_key(kind, namespace, value, state),
            version: state.version,
            last_change: state.last_change,
        })
    }

    /// The version of the published state.
    pub fn version(&self) -> u64 {
        self.shared.load().version
    }

    /// A reader for one thread's hot loop: it keeps the published state it saw last in itself
    /// and only reloads when the writer has published a newer one (one plain load per check),
    /// where a [`Reader`] keeps it in a slot of its thread.
    pub fn local(&self) -> LocalReader {
        let generation = self.shared.generation();
        LocalReader {
            state: self.shared.load_full(),
            generation,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// A reader owned by one thread (see [`Reader::local`]).
#[derive(Debug)]
pub struct LocalReader {
    shared: Arc<Published>,
    /// The generation read before `state` was loaded.
    generation: u64,
    state: Arc<State>,
}

impl LocalReader {
    /// Checks every fact of a token against the entries and the rules.
    #[inline]
    pub fn check_token(&mut self, facts: &TokenFacts<'_>) -> Checked {
        let state = self.latest();
        Checked {
            verdict: state.fp.check_token(facts, state),
            version: state.version,
            last_change: state.last_change,
        }
    }

    /// Checks one key.
    #[inline]
    pub fn check_key(&mut self, kind: Kind, namespace: &str, value: &str) -> Checked {
        let state = self.latest();
        Checked {
            verdict: state.fp.check_key(kind, namespace, value, state),
            version: state.version,
            last_change: state.last_change,
        }
    }

    /// The latest published state, reloaded only if the writer has published since.
    #[inline]
    fn latest(&mut self) -> &State {
        let generation = self.shared.generation();
        if generation != self.generation {
            self.generation = generation;
            self.state = self.shared.load_full();
        }
        &self.state
    }
}

fn mode_full(mode: Mode) -> bool {
    mode == Mode::Full
}

mod apply;

#[cfg(test)]
mod exactness;

#[cfg(test)]
mod rebuild;

#[cfg(test)]
mod tests {
    use recall_core::{Delta, Status};

    use super::*;

    /// A batch answers each token as a single check would, at one version.
    #[test]
    fn batch_agrees_with_single_checks() {
        let seed = FingerprintSeed(7);
        let mut f = Filter::new(Mode::Full, seed);
        let revoked = Fingerprinter::new(seed).of(Kind::Token, "iss", "a");
        let mut digest = Digest::default();
        digest.add_entry(revoked);
        f.apply(&Delta {
            version: 4,
            prev_version: 0,
            added: vec![revoked],
            digest,
            ..Delta::default()
        })
        .unwrap();
        let facts = ["a", "b", "a"].map(|jti| TokenFacts {
            iss: "iss",
            jti: Some(jti),
            ..Default::default()
        });
        let reader = f.reader();
        let batch = reader.check_tokens(&facts);
        let statuses: Vec<Status> = batch.iter().map(|c| c.verdict.status()).collect();
        assert_eq!(
            statuses,
            [Status::Revoked, Status::Allowed, Status::Revoked]
        );
        assert!(batch.iter().all(|c| c.version == 4));
        for (f, c) in facts.iter().zip(&batch) {
            assert_eq!(&reader.check_token(f), c);
        }
        assert!(reader.check_tokens(&[]).is_empty());
    }
}
