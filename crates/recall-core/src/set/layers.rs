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
//! its load factor); every merged layer is a sorted array of `(fingerprint, bucket)`, exactly
//! 40 bytes an entry, searched by interpolation (fingerprints are uniform, so a lookup takes a
//! few probes, not log n).

use std::cmp::Ordering;
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
    /// A merged layer, sorted by fingerprint, each fingerprint once.
    Sorted(Vec<(Fingerprint, Bucket)>),
}

/// Interpolation rounds before the search falls back to halving.
const INTERPOLATIONS: usize = 8;

/// Where `fp` is in `v` (sorted, unique), or where it would go.
fn find(v: &[(Fingerprint, Bucket)], fp: Fingerprint) -> Result<usize, usize> {
    let (mut lo, mut hi) = (0, v.len());
    for _ in 0..INTERPOLATIONS {
        if hi - lo <= 16 {
            break;
        }
        let (a, b, x) = (v[lo].0.0, v[hi - 1].0.0, fp.0);
        if x < a {
            return Err(lo);
        }
        if x > b {
            return Err(hi);
        }
        let span = (b - a) as u128;
        let guess = lo + ((x - a) as u128 * (hi - 1 - lo) as u128 / span.max(1)) as usize;
        match v[guess].0.cmp(&fp) {
            Ordering::Equal => return Ok(guess),
            Ordering::Less => lo = guess + 1,
            Ordering::Greater => hi = guess,
        }
    }
    v[lo..hi]
        .binary_search_by_key(&fp, |(f, _)| *f)
        .map(|i| i + lo)
        .map_err(|i| i + lo)
}

impl Layer {
    fn get(&self, fp: &Fingerprint) -> Option<&Bucket> {
        match self {
            Layer::Hash(m) => m.get(fp),
            Layer::Sorted(v) => find(v, *fp).ok().map(|i| &v[i].1),
        }
    }

    /// How many fingerprints it has (removals included).
    pub(super) fn len(&self) -> usize {
        match self {
            Layer::Hash(m) => m.len(),
            Layer::Sorted(v) => v.len(),
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
            Layer::Sorted(v) => Box::new(v.iter().map(|(f, b)| (f, b))),
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
                false => vec![Arc::new(Layer::Sorted(bottom))],
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
    out.shrink_to_fit();
    Layer::Sorted(out)
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
    fn interpolation_finds_every_fingerprint_and_places_every_gap() {
        let mut x = 0x1234_5678_9abc_def0u64;
        let mut fps: Vec<u64> = (0..5000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            })
            .collect();
        fps.push(0);
        fps.push(u64::MAX);
        fps.sort_unstable();
        fps.dedup();
        let v = sorted(&fps);
        for (i, f) in fps.iter().enumerate() {
            assert_eq!(find(&v, Fingerprint(*f)), Ok(i));
            if *f > 0 && (i == 0 || fps[i - 1] != f - 1) {
                assert_eq!(find(&v, Fingerprint(f - 1)), Err(i));
            }
        }
        // Skewed values still end in the right place.
        let skewed = sorted(&[
            1,
            2,
            3,
            4,
            5,
            6,
            7,
            8,
            9,
            10,
            11,
            12,
            13,
            14,
            15,
            16,
            17,
            u64::MAX,
        ]);
        assert_eq!(find(&skewed, Fingerprint(17)), Ok(16));
        assert_eq!(find(&skewed, Fingerprint(18)), Err(17));
    }

    #[test]
    fn a_slot_is_24_bytes_and_a_bucket_of_one_is_inline() {
        assert_eq!(std::mem::size_of::<Slot>(), 24);
        assert_eq!(std::mem::size_of::<Bucket>(), 32);
        assert!(!Bucket::from_slice(&[Slot::new(KeyCheck(1), None, 1)]).spilled());
    }
}
