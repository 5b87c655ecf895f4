//! Snapshots without holding the set: [`RevocationSet::freeze`] takes an immutable view of the
//! whole set (shared frozen layers, and copies of the rules and of who revoked what), and
//! everything that is O(entries) happens on that view, off every lock: merging its layers into
//! one, sorting, encoding. [`RevocationSet::settle`] then gives the set the merged layer back in
//! place of the layers it merged.
//!
//! [`RevocationSet::freeze`]: super::RevocationSet::freeze
//! [`RevocationSet::settle`]: super::RevocationSet::settle

use std::sync::Arc;

use serde::Serialize;

use super::layers::{Layer, merge};
use super::{Entry, SetSnapshot, StoredRule};
use crate::{Digest, FingerprintSeed, Meta};

/// The whole set at one version, immutable.
#[derive(Clone, Debug)]
pub struct Frozen {
    pub(super) seed: FingerprintSeed,
    pub(super) version: u64,
    pub(super) last_change: u64,
    pub(super) digest: Digest,
    pub(super) layers: Vec<Arc<Layer>>,
    pub(super) rules: Vec<StoredRule>,
    pub(super) events: Vec<(u64, Meta)>,
}

/// A [`Frozen`] set with its layers merged: what a snapshot is encoded from.
#[derive(Clone, Debug)]
pub struct Flat {
    frozen: Frozen,
    base: Arc<Layer>,
}

/// [`SetSnapshot`] by reference: it serialises to the same bytes, without copying any entry.
#[derive(Debug, Serialize)]
pub struct SetSnapshotRef<'a> {
    /// See [`SetSnapshot::seed`].
    pub seed: FingerprintSeed,
    /// See [`SetSnapshot::version`].
    pub version: u64,
    /// See [`SetSnapshot::last_change`].
    pub last_change: u64,
    /// See [`SetSnapshot::digest`].
    pub digest: Digest,
    /// See [`SetSnapshot::entries`]: sorted by key.
    pub entries: Vec<&'a Entry>,
    /// See [`SetSnapshot::rules`]: sorted by scope.
    pub rules: Vec<&'a StoredRule>,
    /// See [`SetSnapshot::events`].
    pub events: Vec<(u64, &'a Meta)>,
}

impl Frozen {
    /// The version the view is at.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Merges the layers into one: O(entries), so call it off the lock (and off the async
    /// runtime). With one layer only, nothing is copied.
    pub fn flatten(self) -> Flat {
        let base = merge(&self.layers);
        Flat { frozen: self, base }
    }
}

impl Flat {
    /// The snapshot, by reference: O(n log n) to sort, nothing copied.
    pub fn snapshot(&self) -> SetSnapshotRef<'_> {
        let mut entries: Vec<&Entry> = self.base.values().flatten().collect();
        entries.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        let mut rules: Vec<&StoredRule> = self.frozen.rules.iter().collect();
        rules.sort_unstable_by(|a, b| a.rule.scope.cmp(&b.rule.scope));
        SetSnapshotRef {
            seed: self.frozen.seed,
            version: self.frozen.version,
            last_change: self.frozen.last_change,
            digest: self.frozen.digest,
            entries,
            rules,
            events: self.frozen.events.iter().map(|(v, m)| (*v, m)).collect(),
        }
    }

    pub(super) fn merged_from(&self) -> &[Arc<Layer>] {
        &self.frozen.layers
    }

    pub(super) fn base(&self) -> Arc<Layer> {
        Arc::clone(&self.base)
    }
}

impl SetSnapshotRef<'_> {
    /// An owned copy.
    pub fn to_owned(&self) -> SetSnapshot {
        SetSnapshot {
            seed: self.seed,
            version: self.version,
            last_change: self.last_change,
            digest: self.digest,
            entries: self.entries.iter().map(|e| (*e).clone()).collect(),
            rules: self.rules.iter().map(|r| (*r).clone()).collect(),
            events: self
                .events
                .iter()
                .map(|(v, m)| (*v, (*m).clone()))
                .collect(),
        }
    }
}
