//! Loading a snapshot that arrives in chunks. The loader gathers fingerprints and rules while the
//! filter keeps answering from its current state; `finish` checks the whole against the announced
//! digest and only then publishes it.

use recall_core::{Digest, Fingerprint, FingerprintSeed, RuleFingerprint};

use crate::rules::Rules;
use crate::{Filter, FilterError};

/// A snapshot being received.
#[derive(Debug)]
pub struct SnapshotLoader {
    seed: FingerprintSeed,
    version: u64,
    last_change: u64,
    digest: Digest,
    fps: Vec<u64>,
    rules: Rules,
    duplicate_rule: Option<Fingerprint>,
}

impl SnapshotLoader {
    pub(crate) fn new(
        seed: FingerprintSeed,
        version: u64,
        last_change: u64,
        digest: Digest,
    ) -> Self {
        Self {
            seed,
            version,
            last_change,
            digest,
            fps: Vec::new(),
            rules: Rules::default(),
            duplicate_rule: None,
        }
    }

    /// Reserves room for `n` more fingerprints (from the snapshot's announced size).
    pub fn reserve(&mut self, n: usize) {
        self.fps.reserve(n);
    }

    /// Adds a chunk of fingerprints.
    pub fn push_fingerprints(&mut self, fps: &[Fingerprint]) {
        self.fps.extend(fps.iter().map(|f| f.0));
    }

    /// Adds a chunk of rules.
    pub fn push_rules(&mut self, rules: &[RuleFingerprint]) {
        for r in rules {
            if self.rules.insert(r.scope, r.not_before).is_some() {
                self.duplicate_rule.get_or_insert(r.scope);
            }
        }
    }

    /// How many fingerprints have arrived.
    pub fn len(&self) -> usize {
        self.fps.len()
    }

    /// Whether no fingerprint has arrived.
    pub fn is_empty(&self) -> bool {
        self.fps.is_empty()
    }

    /// Checks the snapshot and publishes it into `filter`. On error the filter is unchanged.
    pub fn finish(mut self, filter: &mut Filter) -> Result<(), FilterError> {
        let corrupt = |what: String| FilterError::CorruptSnapshot {
            version: self.version,
            what,
        };
        if let Some(scope) = self.duplicate_rule {
            return Err(corrupt(format!(
                "rule scope {:016x} appears twice",
                scope.0
            )));
        }
        self.fps.sort_unstable();
        if let Some(w) = self.fps.windows(2).find(|w| w[0] == w[1]) {
            return Err(corrupt(format!("fingerprint {:016x} appears twice", w[0])));
        }
        if self.last_change > self.version {
            return Err(corrupt(format!(
                "last change {} is after the version {}",
                self.last_change, self.version
            )));
        }
        filter.publish_snapshot(
            self.seed,
            self.version,
            self.last_change,
            self.digest,
            &self.fps,
            self.rules,
        )
    }
}
