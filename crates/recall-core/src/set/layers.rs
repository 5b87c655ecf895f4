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
//! that only a frozen layer holds copies that bucket (usually one slot) into the head.
//!
//! Memory: the authority keeps no key, only its identity. A [`Slot`] is 24 bytes (the key's
//! check hash, its expiry, the version that revoked it); a bucket holds one inline (32 bytes),
//! more only on a fingerprint collision. The head is a hash map (about 40 bytes an entry over
//! its load factor); every merged layer is a sorted array of `(fingerprint, bucket)`, 40 bytes
//! an entry, with a table of where each range of top bits starts ([`SortedLayer`]).

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::sync::Arc;

use smallvec::SmallVec;

use crate::{Fingerprint, KeyCheck, Timestamp};

/// "Never expires" in a slot (`None` outside).
const NEVER: i64 = i64::MAX;

/// One revoked key, as a layer holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Slot {
    /// The key's check hash: with the fingerprint, its identity.
    pub(super) check: KeyCheck,
    expires_ms: i64,
    /// The version of the command that revoked it.
    pub(super) revoked_in: u64,
}

impl Slot {
    pub(super) fn new(check: KeyCheck, expires_at: Option<Timestamp>, revoked_in: u64) -> Self {
        Self {
            check,
            expires_ms: expires_at.map_or(NEVER, |t| t.0),
            revoked_in,
        }
    }

    /// When it stops mattering; `None` until lifted.
    pub(super) fn expires_at(&self) -> Option<Timestamp> {
        (self.expires_ms != NEVER).then_some(Timestamp(self.expires_ms))
    }

    pub(super) fn set_expires_at(&mut self, at: Option<Timestamp>) {
        self.expires_ms = at.map_or(NEVER, |t| t.0);
    }
}

/// The slots of one fingerprint (more than one only on a fingerprint collision), sorted by
/// check.
pub(super) type Bucket = SmallVec<[Slot; 1]>;

/// One layer: fingerprint to bucket, an empty bucket shadowing older layers.
#[derive(Clone, Debug)]
pub(super) enum Layer {
    /// The head as it was frozen.
    Hash(HashMap<Fingerprint, Bucket>),
    /// A merged layer.
    Sorted(SortedLayer),
}

/// A merged layer: `(fingerprint, bucket)` sorted by fingerprint, each fingerprint once, and
/// where each range of the fingerprint's top bits starts (one `u32` per 4 to 8 items), so a
/// lookup is one read of that table and a search of a few neighbouring items: two cache misses,
/// about what a hash map costs, at 40.5 to 41 bytes an entry.
#[derive(Clone, Debug)]
pub(super) struct SortedLayer {
    items: Vec<(Fingerprint, Bucket)>,
    starts: Vec<u32>,
    shift: u32,
}

impl SortedLayer {
    /// `items` must be sorted by fingerprint, each once.
    pub(super) fn new(mut items: Vec<(Fingerprint, Bucket)>) -> Self {
        debug_assert!(items.windows(2).all(|w| w[0].0 < w[1].0));
        items.shrink_to_fit();
        let n = items.len();
        let bits = match n {
            0..64 => 0,
            _ => (n.ilog2() - 2).min(28),
        };
        let shift = 64 - bits;
        let range = |fp: Fingerprint| fp.0.checked_shr(shift).unwrap_or(0) as usize;
        let mut starts = Vec::with_capacity((1 << bits) + 1);
        let mut i = 0;
        for r in 0..(1usize << bits) {
            while i < n && range(items[i].0) < r {
                i += 1;
            }
            starts.push(i as u32);
        }
        starts.push(n as u32);
        Self {
            items,
            starts,
            shift,
        }
    }

    fn find(&self, fp: Fingerprint) -> Option<&Bucket> {
        let r = fp.0.checked_shr(self.shift).unwrap_or(0) as usize;
        let (lo, hi) = (self.starts[r] as usize, self.starts[r + 1] as usize);
        let range = &self.items[lo..hi];
        range
            .binary_search_by_key(&fp, |(f, _)| *f)
            .ok()
            .map(|i| &range[i].1)
    }
}

impl Layer {
    fn get(&self, fp: &Fingerprint) -> Option<&Bucket> {
        match self {
            Layer::Hash(m) => m.get(fp),
            Layer::Sorted(v) => v.find(*fp),
        }
    }

    /// How many fingerprints it has (removals included).
    pub(super) fn len(&self) -> usize {
        match self {
            Layer::Hash(m) => m.len(),
            Layer::Sorted(v) => v.items.len(),
        }
    }

    /// Whether it is the head as frozen (not yet merged into a sorted layer).
    pub(super) fn is_hash(&self) -> bool {
        matches!(self, Layer::Hash(_))
    }

    /// Every fingerprint with its bucket, sorted by fingerprint: in place for a sorted layer,
    /// O(n log n) references for a hash one.
    fn sorted(&self) -> Sorted<'_> {
        match self {
            Layer::Sorted(v) => Box::new(v.items.iter().map(|(f, b)| (f, b))),
            Layer::Hash(m) => {
                let mut refs: Vec<(&Fingerprint, &Bucket)> = m.iter().collect();
                refs.sort_unstable_by_key(|(f, _)| **f);
                Box::new(refs.into_iter())
            }
        }
    }
}

/// The head over the frozen layers (oldest first).
#[derive(Clone, Debug, Default)]
pub(super) struct Layers {
    head: HashMap<Fingerprint, Bucket>,
    frozen: Vec<Arc<Layer>>,
}

impl Layers {
    /// Layers holding only `bottom` (sorted by fingerprint, each once, no empty bucket).
    pub(super) fn from_sorted(bottom: Vec<(Fingerprint, Bucket)>) -> Self {
        debug_assert!(bottom.windows(2).all(|w| w[0].0 < w[1].0));
        Self {
            head: HashMap::new(),
            frozen: match bottom.is_empty() {
                true => vec![],
                false => vec![Arc::new(Layer::Sorted(SortedLayer::new(bottom)))],
            },
        }
    }

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
            MapEntry::Occupied(o) => o.into_mut(),
            MapEntry::Vacant(v) => {
                let below = self.frozen.iter().rev().find_map(|l| l.get(&fp));
                v.insert(below.cloned().unwrap_or_default())
            }
        }
    }

    /// Removes `fp`, shadowing it if a frozen layer still shows it.
    pub(super) fn remove(&mut self, fp: Fingerprint) {
        let below = self.frozen.iter().rev().find_map(|l| l.get(&fp));
        if below.is_some_and(|b| !b.is_empty()) {
            self.head.insert(fp, Bucket::new());
        } else {
            self.head.remove(&fp);
        }
    }

    /// Every fingerprint that holds entries, with its bucket, sorted by fingerprint.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&Fingerprint, &Bucket)> {
        let mut sources: Vec<Sorted<'_>> = self.frozen.iter().map(|l| l.sorted()).collect();
        let mut refs: Vec<(&Fingerprint, &Bucket)> = self.head.iter().collect();
        refs.sort_unstable_by_key(|(f, _)| **f);
        sources.push(Box::new(refs.into_iter()));
        Newest::new(sources).filter(|(_, b)| !b.is_empty())
    }

    /// Freezes the head (if it holds anything) and returns every frozen layer: O(layers).
    pub(super) fn freeze(&mut self) -> Vec<Arc<Layer>> {
        if !self.head.is_empty() {
            self.frozen
                .push(Arc::new(Layer::Hash(std::mem::take(&mut self.head))));
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

    /// How many fingerprints sit in hash maps (the head, and frozen heads not merged yet).
    pub(super) fn unmerged(&self) -> usize {
        self.head.len()
            + self
                .frozen
                .iter()
                .filter(|l| l.is_hash())
                .map(|l| l.len())
                .sum::<usize>()
    }

    /// How many frozen layers there are.
    pub(super) fn frozen_layers(&self) -> usize {
        self.frozen.len()
    }
}

/// A layer's buckets in fingerprint order.
type Sorted<'a> = Box<dyn Iterator<Item = (&'a Fingerprint, &'a Bucket)> + 'a>;

/// Merges sorted sources (oldest first) into one sorted sequence in which each fingerprint
/// comes once, from the newest source that has it.
struct Newest<'a> {
    sources: Vec<std::iter::Peekable<Sorted<'a>>>,
}

impl<'a> Newest<'a> {
    fn new(sources: Vec<Sorted<'a>>) -> Self {
        Self {
            sources: sources.into_iter().map(Iterator::peekable).collect(),
        }
    }
}

impl<'a> Iterator for Newest<'a> {
    type Item = (&'a Fingerprint, &'a Bucket);

    fn next(&mut self) -> Option<Self::Item> {
        let mut best: Option<(usize, Fingerprint)> = None;
        for (i, s) in self.sources.iter_mut().enumerate() {
            if let Some((fp, _)) = s.peek() {
                // Ties go to the later (newer) source.
                if best.is_none_or(|(_, b)| **fp <= b) {
                    best = Some((i, **fp));
                }
            }
        }
        let (newest, fp) = best?;
        let mut out = None;
        for (i, s) in self.sources.iter_mut().enumerate() {
            if s.peek().is_some_and(|(f, _)| **f == fp) {
                let item = s.next();
                if i == newest {
                    out = item;
                }
            }
        }
        out
    }
}

/// The one sorted layer equal to `layers` (oldest first): O(their entries), copying each
/// bucket once. `on_bottom`: nothing is under the result, so its removals are dropped;
/// otherwise they are kept, to go on shadowing what lies below.
pub(super) fn merge(layers: &[Arc<Layer>], on_bottom: bool) -> Layer {
    let capacity = layers.iter().map(|l| l.len()).max().unwrap_or(0);
    let mut out = Vec::with_capacity(capacity);
    let sources = layers.iter().map(|l| l.sorted()).collect();
    for (fp, bucket) in Newest::new(sources) {
        if !(on_bottom && bucket.is_empty()) {
            out.push((*fp, bucket.clone()));
        }
    }
    Layer::Sorted(SortedLayer::new(out))
}

/// Every fingerprint that holds entries in `layers` (oldest first), with its bucket, sorted by
/// fingerprint: a bucket counts unless a newer layer has its fingerprint.
pub(super) fn live<'a>(
    layers: &[&'a Layer],
) -> impl Iterator<Item = (&'a Fingerprint, &'a Bucket)> {
    Newest::new(layers.iter().map(|l| l.sorted()).collect()).filter(|(_, b)| !b.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(fps: &[u64]) -> Vec<(Fingerprint, Bucket)> {
        fps.iter()
            .map(|f| {
                let mut b = Bucket::new();
                b.push(Slot::new(KeyCheck(*f), None, 1));
                (Fingerprint(*f), b)
            })
            .collect()
    }

    #[test]
    fn a_sorted_layer_finds_every_fingerprint_and_nothing_else() {
        let mut x = 0x1234_5678_9abc_def0u64;
        for n in [0usize, 1, 63, 64, 65, 1000, 5000] {
            let mut fps: Vec<u64> = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x
                })
                .collect();
            if n > 2 {
                fps[0] = 0;
                fps[1] = u64::MAX;
            }
            fps.sort_unstable();
            fps.dedup();
            let layer = SortedLayer::new(sorted(&fps));
            for f in &fps {
                let b = layer.find(Fingerprint(*f)).expect("present");
                assert_eq!(b[0].check, KeyCheck(*f));
                for near in [f.wrapping_sub(1), f.wrapping_add(1)] {
                    assert_eq!(
                        layer.find(Fingerprint(near)).is_some(),
                        fps.binary_search(&near).is_ok()
                    );
                }
            }
        }
    }

    #[test]
    fn a_slot_is_24_bytes_and_a_bucket_of_one_is_inline() {
        assert_eq!(std::mem::size_of::<Slot>(), 24);
        assert_eq!(std::mem::size_of::<Bucket>(), 32);
        assert!(!Bucket::from_slice(&[Slot::new(KeyCheck(1), None, 1)]).spilled());
    }
}
