//! Snapshots without holding the set: [`RevocationSet::freeze`] takes an immutable view of the
//! whole set (shared frozen layers, and copies of the rules and of who revoked what), and
//! everything that is O(entries) happens on that view, off every lock: merging its layers,
//! sorting, encoding. [`RevocationSet::settle`] then gives the set the merged layer back in
//! place of the layers it merged.
//!
//! [`RevocationSet::freeze`]: super::RevocationSet::freeze
//! [`RevocationSet::settle`]: super::RevocationSet::settle

use std::sync::Arc;

use serde::Serialize;

use super::layers::{Layer, live, merge};
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

/// A [`Frozen`] set with its layers merged down to at most two: what a snapshot is encoded
/// from.
#[derive(Clone, Debug)]
pub struct Flat {
    frozen: Frozen,
    /// `frozen.layers[start..]` merged, if more than one layer was there to merge.
    merged: Option<(usize, Arc<Layer>)>,
}

/// Where a merged layer goes: the index of the first layer it replaces, those layers, itself.
pub(super) type Placement<'a> = (usize, &'a [Arc<Layer>], Arc<Layer>);

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

    /// Merges the layers down to two at most: the ones above the bottom into one (O(their
    /// entries)), or all of them when those reach a quarter of the bottom one (O(entries)). Call
    /// it off the lock (and off the async runtime). With one layer, or two of which the upper
    /// one is small, nothing is copied.
    pub fn flatten(self) -> Flat {
        let layers = &self.layers;
        let bottom = layers.first().map_or(0, |l| l.len());
        let above: usize = layers.iter().skip(1).map(|l| l.len()).sum();
        let merged = if layers.len() > 1 && above.saturating_mul(4) >= bottom {
            Some((0, Arc::new(merge(layers, true))))
        } else if layers.len() > 2 {
            Some((1, Arc::new(merge(&layers[1..], false))))
        } else {
            None
        };
        Flat {
            frozen: self,
            merged,
        }
    }
}

impl Flat {
    /// The layers as they are after the merge, oldest first.
    fn layers(&self) -> Vec<&Layer> {
        let all = &self.frozen.layers;
        match &self.merged {
            Some((start, merged)) => all[..*start]
                .iter()
                .map(|l| &**l)
                .chain([&**merged])
                .collect(),
            None => all.iter().map(|l| &**l).collect(),
        }
    }

    /// The snapshot, by reference: O(n log n) to sort, nothing copied.
    pub fn snapshot(&self) -> SetSnapshotRef<'_> {
        let layers = self.layers();
        let mut entries: Vec<&Entry> = live(&layers).flat_map(|(_, b)| b).collect();
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

    /// Where the merged layer goes in the set: its index, the layers it replaces, the layer.
    pub(super) fn merged(&self) -> Option<Placement<'_>> {
        let (start, merged) = self.merged.as_ref()?;
        Some((*start, &self.frozen.layers[*start..], Arc::clone(merged)))
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
