//! One shard of the filter: the fingerprints whose top bits select it, as a Bloom filter in front
//! of a sorted exact array (full mode) or the Bloom filter alone (lite mode). Shards are
//! immutable once built; a change builds a new shard from the old one and the changes.

use bloomfilter::Bloom;
use recall_core::Presence;

/// How many shards a filter has (a power of two): the top `log2(SHARDS)` bits of a fingerprint
/// pick its shard. A 10k-entry delta into a 1M-entry filter touches most shards, but each copy is
/// a memcpy of about a thousand entries, and a one-key delta copies one shard only.
pub const SHARDS: usize = 1024;

const SHIFT: u32 = 64 - SHARDS.trailing_zeros();

/// The false-positive rate each shard's Bloom filter is sized for.
pub(crate) const FP_RATE: f64 = 0.01;

/// The seed of the Bloom hashes. Fingerprints are already keyed hashes, so a fixed seed gives
/// nothing away and keeps filters reproducible.
const BLOOM_SEED: [u8; 32] = *b"recall-filter bloom seed v1.....";

/// The shard a fingerprint belongs to.
#[inline]
pub(crate) fn shard_of(fp: u64) -> usize {
    (fp >> SHIFT) as usize
}

/// One shard.
#[derive(Clone, Debug)]
pub(crate) struct Shard {
    /// Sorted, distinct fingerprints; empty in lite mode.
    exact: Box<[u64]>,
    /// Every fingerprint ever set since the last rebuild (lite mode cannot unset).
    bloom: Bloom<u64>,
    /// How many fingerprints the shard holds.
    len: usize,
    /// How many fingerprints the Bloom filter was sized for; beyond it the shard is rebuilt
    /// (full mode) or its false-positive rate grows (lite mode, until the next snapshot).
    capacity: usize,
    /// Whether `exact` is kept.
    full: bool,
}

impl Shard {
    /// A shard holding `fps` (sorted, distinct).
    pub(crate) fn build(fps: &[u64], full: bool) -> Self {
        let capacity = fps.len() + fps.len() / 8 + 16;
        let mut bloom = new_bloom(capacity);
        fps.iter().for_each(|fp| bloom.set(fp));
        Self {
            exact: if full { fps.into() } else { Box::default() },
            bloom,
            len: fps.len(),
            capacity,
            full,
        }
    }

    /// What the shard knows of `fp`.
    #[inline]
    pub(crate) fn lookup(&self, fp: u64) -> Presence {
        if !self.bloom.check(&fp) {
            Presence::Absent
        } else if !self.full {
            Presence::Possible
        } else if self.exact.binary_search(&fp).is_ok() {
            Presence::Present
        } else {
            Presence::Absent
        }
    }

    /// Whether `fp` is certainly held (full mode only).
    pub(crate) fn contains(&self, fp: u64) -> bool {
        self.exact.binary_search(&fp).is_ok()
    }

    /// A new shard with `added` (sorted, distinct, absent) and without `removed` (sorted,
    /// distinct, present). Full mode merges the exact array and rebuilds the Bloom filter when
    /// something was removed or the capacity is exceeded; lite mode only sets bits.
    pub(crate) fn changed(&self, added: &[u64], removed: &[u64]) -> Self {
        if !self.full {
            let mut next = self.clone();
            added.iter().for_each(|fp| next.bloom.set(fp));
            next.len = (next.len + added.len()).saturating_sub(removed.len());
            return next;
        }
        let merged = merge(&self.exact, added, removed);
        if removed.is_empty() && merged.len() <= self.capacity {
            let mut bloom = self.bloom.clone();
            added.iter().for_each(|fp| bloom.set(fp));
            Self {
                len: merged.len(),
                exact: merged.into(),
                bloom,
                capacity: self.capacity,
                full: true,
            }
        } else {
            Self::build(&merged, true)
        }
    }

    /// The fingerprints held (full mode).
    pub(crate) fn fingerprints(&self) -> &[u64] {
        &self.exact
    }

    /// How many fingerprints the shard holds.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Heap bytes of the Bloom filter and of the exact array.
    pub(crate) fn heap_bytes(&self) -> (usize, usize) {
        (self.bloom.as_slice().len(), self.exact.len() * 8)
    }
}

fn new_bloom(capacity: usize) -> Bloom<u64> {
    Bloom::new_for_fp_rate_with_seed(capacity.max(1), FP_RATE, &BLOOM_SEED)
        .expect("a positive capacity and a rate in (0, 1) are always accepted")
}

/// `(old ∖ removed) ∪ added`, all sorted and distinct.
fn merge(old: &[u64], added: &[u64], removed: &[u64]) -> Vec<u64> {
    let mut out = Vec::with_capacity(old.len() + added.len() - removed.len().min(old.len()));
    let (mut a, mut r) = (added.iter().peekable(), removed.iter().peekable());
    for &fp in old {
        while let Some(&&x) = a.peek() {
            if x >= fp {
                break;
            }
            out.push(x);
            a.next();
        }
        while r.next_if(|&&x| x < fp).is_some() {}
        if r.next_if(|&&x| x == fp).is_none() {
            out.push(fp);
        }
    }
    out.extend(a);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_and_removes_in_order() {
        assert_eq!(merge(&[2, 4, 6], &[1, 5, 9], &[4]), vec![1, 2, 5, 6, 9]);
        assert_eq!(merge(&[], &[3], &[]), vec![3]);
        assert_eq!(merge(&[3], &[], &[3]), Vec::<u64>::new());
    }

    #[test]
    fn full_shard_is_exact_after_removal() {
        let s = Shard::build(&[10, 20, 30], true);
        let s = s.changed(&[25], &[20]);
        assert_eq!(s.lookup(20), Presence::Absent);
        assert_eq!(s.lookup(25), Presence::Present);
        assert_eq!(s.fingerprints(), &[10, 25, 30]);
    }

    #[test]
    fn lite_shard_answers_possible_and_never_absent_for_held() {
        let s = Shard::build(&[10, 20], false);
        assert_eq!(s.lookup(10), Presence::Possible);
        let s = s.changed(&[30], &[10]);
        assert_eq!(s.lookup(30), Presence::Possible);
        assert_eq!(s.len(), 2);
    }
}
