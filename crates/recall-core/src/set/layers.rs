//! Where the set keeps its entries: a mutable head layer over frozen layers that are shared
//! (`Arc`) and never change again. Freezing moves the head under the frozen ones in O(1), so a
//! snapshot can take the whole set by cloning a few `Arc`s and read it off every lock while the
//! set goes on changing in a fresh head. Merging frozen layers (done off the lock, with a
//! snapshot) keeps lookups at a few probes: the layers above the bottom one are merged into one,
//! and the bottom one is rewritten only when what is above it reaches a quarter of its size, so
//! a snapshot after a few changes does not copy the whole set.
//!
//! A fingerprint's bucket is the one in the newest layer that has the fingerprint; an empty
//! bucket there means "removed" (it shadows what older frozen layers hold). Changing a bucket
//! that only a frozen layer holds copies that bucket (usually one entry) into the head.

use std::collections::HashMap;
use std::collections::hash_map::Entry as Slot;
use std::sync::Arc;

use super::Entry;
use crate::Fingerprint;

/// The entries of one fingerprint (more than one only on a fingerprint collision), sorted by key.
pub(super) type Bucket = Vec<Entry>;

/// One layer: fingerprint to bucket, an empty bucket shadowing older layers.
pub(super) type Layer = HashMap<Fingerprint, Bucket>;

/// The head over the frozen layers (oldest first).
#[derive(Clone, Debug, Default)]
pub(super) struct Layers {
    head: Layer,
    frozen: Vec<Arc<Layer>>,
}

impl Layers {
    /// The bucket of `fp`, if it holds an entry.
    pub(super) fn get(&self, fp: &Fingerprint) -> Option<&Bucket> {
        let newest = match self.head.get(fp) {
            Some(b) => Some(b),
            None => self.frozen.iter().rev().find_map(|l| l.get(fp)),
        };
        newest.filter(|b| !b.is_empty())
    }

    /// Whether `fp` holds an entry.
    pub(super) fn contains_key(&self, fp: &Fingerprint) -> bool {
        self.get(fp).is_some()
    }

    /// The bucket of `fp` to change, copied into the head if a frozen layer holds it (empty if
    /// `fp` holds nothing). Leave it non-empty or call [`Layers::remove`].
    pub(super) fn entry(&mut self, fp: Fingerprint) -> &mut Bucket {
        match self.head.entry(fp) {
            Slot::Occupied(o) => o.into_mut(),
            Slot::Vacant(v) => {
                let below = self.frozen.iter().rev().find_map(|l| l.get(&fp));
                v.insert(below.cloned().unwrap_or_default())
            }
        }
    }

    /// Removes `fp`, shadowing it if a frozen layer still shows it.
    pub(super) fn remove(&mut self, fp: Fingerprint) {
        let below = self.frozen.iter().rev().find_map(|l| l.get(&fp));
        if below.is_some_and(|b| !b.is_empty()) {
            self.head.insert(fp, Vec::new());
        } else {
            self.head.remove(&fp);
        }
    }

    /// Every fingerprint that holds entries, with its bucket, in no particular order: O(n)
    /// probes for each frozen layer above a bucket's own.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&Fingerprint, &Bucket)> {
        let head = self.head.iter().filter(|(_, b)| !b.is_empty());
        let frozen = (0..self.frozen.len()).rev().flat_map(move |i| {
            self.frozen[i].iter().filter(move |(fp, b)| {
                !b.is_empty()
                    && !self.head.contains_key(*fp)
                    && !self.frozen[i + 1..].iter().any(|l| l.contains_key(*fp))
            })
        });
        head.chain(frozen)
    }

    /// Freezes the head (if it holds anything) and returns every frozen layer: O(layers).
    pub(super) fn freeze(&mut self) -> Vec<Arc<Layer>> {
        if !self.head.is_empty() {
            self.frozen.push(Arc::new(std::mem::take(&mut self.head)));
        }
        self.frozen.clone()
    }

    /// Replaces the frozen layers `merged_from`, found from index `start` (as
    /// [`Layers::freeze`] gave them), with `merged`, their merge; false, changing nothing, if
    /// the set no longer has them there.
    pub(super) fn settle(
        &mut self,
        start: usize,
        merged_from: &[Arc<Layer>],
        merged: Arc<Layer>,
    ) -> bool {
        let end = start + merged_from.len();
        let same = self.frozen.len() >= end
            && self.frozen[start..end]
                .iter()
                .zip(merged_from)
                .all(|(a, b)| Arc::ptr_eq(a, b));
        if same {
            self.frozen.splice(start..end, [merged]);
        }
        same
    }

    /// How many frozen layers there are.
    pub(super) fn frozen_layers(&self) -> usize {
        self.frozen.len()
    }
}

/// The one layer equal to `layers` (oldest first): O(their entries), cloning each bucket once.
/// `on_bottom`: nothing is under the result, so its removals are dropped; otherwise they are
/// kept, to go on shadowing what lies below.
pub(super) fn merge(layers: &[Arc<Layer>], on_bottom: bool) -> Layer {
    let mut out = Layer::with_capacity(layers.iter().map(|l| l.len()).max().unwrap_or(0));
    for layer in layers.iter().rev() {
        for (fp, bucket) in layer.iter() {
            if let Slot::Vacant(v) = out.entry(*fp) {
                v.insert(bucket.clone());
            }
        }
    }
    if on_bottom {
        out.retain(|_, b| !b.is_empty());
    }
    out
}

/// Every fingerprint that holds entries in `layers` (oldest first), with its bucket: a bucket
/// counts unless a newer layer has its fingerprint.
pub(super) fn live<'a: 'b, 'b>(
    layers: &'b [&'a Layer],
) -> impl Iterator<Item = (&'a Fingerprint, &'a Bucket)> + 'b {
    (0..layers.len()).rev().flat_map(move |i| {
        let layer: &'a Layer = layers[i];
        layer.iter().filter(move |(fp, b)| {
            !b.is_empty() && !layers[i + 1..].iter().any(|l| l.contains_key(*fp))
        })
    })
}
