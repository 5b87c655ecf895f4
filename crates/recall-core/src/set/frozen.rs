//! Snapshots without holding the set: [`RevocationSet::freeze`] takes an immutable view of the
//! whole set (shared frozen layers, and copies of the rules and of who revoked what), and
//! everything that is O(entries) happens on that view, off every lock: merging its layers,
//! sorting, encoding. [`RevocationSet::settle`] then gives the set the merged layer back in
//! place of the layers it merged.
//!
//! [`RevocationSet::freeze`]: super::RevocationSet::freeze
//! [`RevocationSet::settle`]: super::RevocationSet::settle

use std::sync::Arc;

use serde::{Serialize, Serializer};

use super::layers::{Bucket, Layer, live, merge};
use super::{Entry, SetSnapshot, StoredRule};
use crate::{Digest, Fingerprint, FingerprintSeed, Meta};

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
    /// See [`SetSnapshot::entries`]: sorted by fingerprint and check.
    pub entries: EntriesRef<'a>,
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
    /// A layer still as the head was frozen (a hash map) is always merged into a sorted one,
    /// which is what keeps the set at 40 bytes an entry.
    pub fn flatten(self) -> Flat {
        let layers = &self.layers;
        let bottom = layers.first().map_or(0, |l| l.len());
        let above: usize = layers.iter().skip(1).map(|l| l.len()).sum();
        let hash_above = layers.iter().skip(1).any(|l| l.is_hash());
        let merged = match layers.first() {
            None => None,
            Some(first)
                if first.is_hash() || (layers.len() > 1 && above.saturating_mul(4) >= bottom) =>
            {
                Some((0, Arc::new(merge(layers, true))))
            }
            Some(_) if layers.len() > 2 || hash_above => {
                Some((1, Arc::new(merge(&layers[1..], false))))
            }
            Some(_) => None,
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

    /// The snapshot, by reference: O(n) (the layers are sorted), no entry copied.
    pub fn snapshot(&self) -> SetSnapshotRef<'_> {
        let layers = self.layers();
        let entries = EntriesRef(live(&layers).collect());
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
            entries: self.entries.iter().collect(),
            rules: self.rules.iter().map(|r| (*r).clone()).collect(),
            events: self
                .events
                .iter()
                .map(|(v, m)| (*v, (*m).clone()))
                .collect(),
        }
    }
}

/// The entries of a snapshot by reference: each fingerprint's bucket, sorted by fingerprint;
/// serialised as the [`Entry`] list of [`SetSnapshot::entries`].
#[derive(Debug)]
pub struct EntriesRef<'a>(Vec<(&'a Fingerprint, &'a Bucket)>);

impl EntriesRef<'_> {
    /// How many entries.
    pub fn len(&self) -> usize {
        self.0.iter().map(|(_, b)| b.len()).sum()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every entry, in order.
    pub fn iter(&self) -> impl Iterator<Item = Entry> + '_ {
        self.0
            .iter()
            .flat_map(|(fp, b)| b.iter().map(|s| Entry::of(**fp, s)))
    }
}

impl Serialize for EntriesRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(self.len()))?;
        for e in self.iter() {
            seq.serialize_element(&e)?;
        }
        seq.end()
    }
}
