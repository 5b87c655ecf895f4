//! One shard of the filter: the fingerprints whose top bits select it. A full shard is the sorted
//! exact fingerprints, probed at the position their uniform bits predict; a lite shard is a Bloom
//! filter (the `bloomfilter` crate) alone. Shards are immutable once built: a change builds a new
//! shard from the old one and the changes, and every other shard is shared.
//!
//! A full check reaches a shard only when the state's prefilter (`prefilter.rs`) lets the
//! fingerprint pass: the held ones, and about 0.5% of the others. The `bloomfilter` crate was
//! measured in front of the exact arrays first and was slower than the exact probe alone (two
//! SipHash-1-3 rounds and a 64-bit division per probe, BENCHMARKS.md); the prefilter hashes
//! nothing.

use std::sync::Arc;

use bloomfilter::Bloom;
use recall_core::Presence;

/// How many shards of sorted exact fingerprints a full filter has (log2). A delta rebuilds
/// every shard it touches, so the cost of a delta is about (shards touched) × (entries per
/// shard): with 4096 shards, a 1000-entry delta into a 1M-entry filter copies about 220k
/// entries instead of the whole set, and a one-key delta copies about 250.
pub const FULL_SHARD_BITS: u32 = 12;

/// How many Bloom shards a lite filter has (log2): fewer, because each Bloom filter has a fixed
/// overhead that would otherwise dominate lite mode's two bytes an entry.
pub const LITE_SHARD_BITS: u32 = 10;

/// How a filter splits fingerprints into shards: by their top `bits` bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    bits: u32,
}

impl Layout {
    /// The layout of a full (`true`) or lite filter.
    pub(crate) const fn new(full: bool) -> Self {
        Self {
            bits: if full {
                FULL_SHARD_BITS
            } else {
                LITE_SHARD_BITS
            },
        }
    }

    /// How many shards.
    pub(crate) const fn shards(self) -> usize {
        1 << self.bits
    }

    /// The shard a fingerprint belongs to.
    #[inline]
    pub(crate) const fn shard_of(self, fp: u64) -> usize {
        (fp >> (64 - self.bits)) as usize
    }
}

/// The false-positive rate each lite shard's Bloom filter is sized for.
pub(crate) const FP_RATE: f64 = 0.01;

/// The seed of the Bloom hashes. Fingerprints are already keyed hashes, so a fixed seed gives
/// nothing away and keeps filters reproducible.
const BLOOM_SEED: [u8; 32] = *b"recall-filter bloom seed v1.....";

/// One shard, cheap to clone (it shares its content).
#[derive(Clone, Debug)]
pub(crate) enum Shard {
    /// Sorted, distinct fingerprints.
    Exact(Arc<[u64]>),
    /// A Bloom filter of the fingerprints.
    Lite(Arc<LiteShard>),
}

/// The content of a lite shard.
#[derive(Clone, Debug)]
pub(crate) struct LiteShard {
    /// Every fingerprint set since the shard was built (a Bloom filter cannot unset).
    bloom: Bloom<u64>,
    /// How many fingerprints the shard holds.
    len: usize,
    /// How many fingerprints the Bloom filter was sized for at [`FP_RATE`].
    capacity: usize,
    /// How many fingerprints have been set since it was built, removed ones included (their
    /// bits stay): past `capacity`, false positives exceed [`FP_RATE`].
    inserted: usize,
}

impl Shard {
    /// A shard holding `fps` (sorted, distinct).
    pub(crate) fn build(fps: &[u64], full: bool) -> Self {
        if full {
            return Shard::Exact(fps.into());
        }
        // Room for growth by deltas; past it the shard is overfull and the filter asks to be
        // rebuilt from a snapshot (`Filter::needs_rebuild`).
        let capacity = fps.len() + fps.len() / 8 + 16;
        let mut bloom = new_bloom(capacity);
        fps.iter().for_each(|fp| bloom.set(fp));
        Shard::Lite(Arc::new(LiteShard {
            bloom,
            len: fps.len(),
            capacity,
            inserted: fps.len(),
        }))
    }

    /// What the shard knows of `fp`.
    #[inline]
    pub(crate) fn lookup(&self, fp: u64, layout: Layout) -> Presence {
        match self {
            Shard::Exact(exact) if contains(exact, fp, layout.bits) => Presence::Present,
            Shard::Exact(_) => Presence::Absent,
            Shard::Lite(lite) if lite.bloom.check(&fp) => Presence::Possible,
            Shard::Lite(_) => Presence::Absent,
        }
    }

    /// Whether `fp` is certainly held (always false for a lite shard).
    #[inline]
    pub(crate) fn contains(&self, fp: u64, layout: Layout) -> bool {
        matches!(self, Shard::Exact(exact) if contains(exact, fp, layout.bits))
    }

    /// A new shard with `added` (sorted, distinct, absent) and without `removed` (sorted,
    /// distinct, present). A lite shard can only set bits: its removals wait for a snapshot.
    pub(crate) fn changed(&self, added: &[u64], removed: &[u64]) -> Self {
        match self {
            Shard::Exact(exact) => {
                let n = (exact.len() + added.len()).saturating_sub(removed.len());
                let mut out = Vec::with_capacity(n);
                merge(exact, added, removed, &mut out);
                Shard::Exact(out.into())
            }
            Shard::Lite(lite) => {
                let mut next = LiteShard::clone(lite);
                added.iter().for_each(|fp| next.bloom.set(fp));
                next.len = (next.len + added.len()).saturating_sub(removed.len());
                next.inserted += added.len();
                Shard::Lite(Arc::new(next))
            }
        }
    }

    /// Whether more fingerprints were set in this (lite) shard than its Bloom filter was sized
    /// for, so that its false-positive rate is past [`FP_RATE`]; never for a full shard.
    pub(crate) fn overfull(&self) -> bool {
        matches!(self, Shard::Lite(lite) if lite.inserted > lite.capacity)
    }

    /// The fingerprints held (empty for a lite shard).
    pub(crate) fn fingerprints(&self) -> &[u64] {
        match self {
            Shard::Exact(exact) => exact,
            Shard::Lite(_) => &[],
        }
    }

    /// How many fingerprints the shard holds.
    pub(crate) fn len(&self) -> usize {
        match self {
            Shard::Exact(exact) => exact.len(),
            Shard::Lite(lite) => lite.len,
        }
    }

    /// Heap bytes of the Bloom filter and of the exact array.
    pub(crate) fn heap_bytes(&self) -> (usize, usize) {
        match self {
            Shard::Exact(exact) => (0, exact.len() * 8),
            Shard::Lite(lite) => (lite.bloom.as_slice().len(), 0),
        }
    }
}

/// Whether sorted `exact` (a shard of a layout with `bits` shard bits) holds `fp`. Fingerprints
/// are uniform keyed hashes, so the position of `fp` is predicted from the bits below its shard
/// index; a search of the `WINDOW` entries around the prediction finds it, and a binary search
/// of the whole shard covers the rare prediction that is further off.
#[inline]
fn contains(exact: &[u64], fp: u64, bits: u32) -> bool {
    let n = exact.len();
    if n <= WINDOW {
        return holds(exact, fp);
    }
    // The bits below the shard index, as a fraction of the shard's range.
    let below = fp << bits;
    let guess = ((u128::from(below) * n as u128) >> 64) as usize;
    let lo = guess.saturating_sub(WINDOW / 2).min(n - WINDOW);
    let window: &[u64; WINDOW] = exact[lo..lo + WINDOW]
        .try_into()
        .expect("the window is WINDOW entries long");
    if window[0] <= fp && fp <= window[WINDOW - 1] {
        in_window(window, fp)
    } else {
        exact.binary_search(&fp).is_ok()
    }
}

/// How many entries around the predicted position are searched first (a multiple of `GROUP`).
const WINDOW: usize = 64;

/// How many entries of the window are compared in the second step (one cache line of them).
const GROUP: usize = 8;

/// Whether the sorted window, whose first entry is at most `fp`, holds `fp`. The first entry of
/// every group is compared at once (independent loads, so the window's cache lines are fetched
/// together rather than one after another as a binary search would), then the group that can
/// hold `fp` is compared whole.
#[inline]
fn in_window(window: &[u64; WINDOW], fp: u64) -> bool {
    let at_or_below = window
        .iter()
        .step_by(GROUP)
        .map(|&x| usize::from(x <= fp))
        .sum::<usize>();
    let start = (at_or_below.max(1) - 1) * GROUP;
    window[start..start + GROUP]
        .iter()
        .fold(false, |found, &x| found | (x == fp))
}

/// Whether sorted `xs` holds `fp`, searched without data-dependent branches: the invariant is
/// that `fp`, if held, lies in `xs[base..base + len]`.
#[inline]
fn holds(xs: &[u64], fp: u64) -> bool {
    let (mut base, mut len) = (0usize, xs.len());
    if len == 0 {
        return false;
    }
    while len > 1 {
        let half = len / 2;
        base = if xs[base + half] <= fp {
            base + half
        } else {
            base
        };
        len -= half;
    }
    xs[base] == fp
}

fn new_bloom(capacity: usize) -> Bloom<u64> {
    Bloom::new_for_fp_rate_with_seed(capacity.max(1), FP_RATE, &BLOOM_SEED)
        .expect("a positive capacity and a rate in (0, 1) are always accepted")
}

/// Appends `(old ∖ removed) ∪ added` to `out`, all sorted and distinct.
fn merge(old: &[u64], added: &[u64], removed: &[u64], out: &mut Vec<u64>) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged(old: &[u64], added: &[u64], removed: &[u64]) -> Vec<u64> {
        let mut out = Vec::new();
        merge(old, added, removed, &mut out);
        out
    }

    #[test]
    fn merge_adds_and_removes_in_order() {
        assert_eq!(merged(&[2, 4, 6], &[1, 5, 9], &[4]), vec![1, 2, 5, 6, 9]);
        assert_eq!(merged(&[], &[3], &[]), vec![3]);
        assert_eq!(merged(&[3], &[], &[3]), Vec::<u64>::new());
    }

    #[test]
    fn contains_finds_every_held_and_no_other_fingerprint() {
        // Clustered values (not uniform) exercise the window bounds and the binary search
        // behind them.
        let layout = Layout::new(true);
        let shift = 64 - FULL_SHARD_BITS;
        let base = 5u64 << shift;
        let held: Vec<u64> = (0..500).map(|i| base + i * 7).collect();
        let s = Shard::build(&held, true);
        for &x in &held {
            assert!(s.contains(x, layout), "{x}");
            assert!(!s.contains(x + 1, layout), "{}", x + 1);
        }
        assert!(!s.contains(base + ((1 << shift) - 1), layout));
        assert!(!Shard::build(&[], true).contains(base, layout));
    }

    #[test]
    fn full_shard_is_exact_after_removal() {
        let s = Shard::build(&[10, 20, 30], true);
        let s = s.changed(&[25], &[20]);
        assert_eq!(s.lookup(20, Layout::new(true)), Presence::Absent);
        assert_eq!(s.lookup(25, Layout::new(true)), Presence::Present);
        assert_eq!(s.fingerprints(), &[10, 25, 30]);
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn lite_shard_answers_possible_and_never_absent_for_held() {
        let s = Shard::build(&[10, 20], false);
        assert_eq!(s.lookup(10, Layout::new(false)), Presence::Possible);
        let s = s.changed(&[30], &[10]);
        assert_eq!(s.lookup(30, Layout::new(false)), Presence::Possible);
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn a_lite_shard_is_overfull_once_more_was_set_than_it_was_sized_for() {
        // Sized for 2 + 0 + 16 = 18 fingerprints; a removal does not free its bits.
        let mut s = Shard::build(&[1, 2], false);
        let more: Vec<u64> = (10..26).collect();
        s = s.changed(&more, &[1]);
        assert!(!s.overfull(), "18 set, 18 designed for");
        s = s.changed(&[99], &[]);
        assert!(s.overfull(), "19 set");
        assert!(!Shard::build(&more, true).changed(&[1000], &[]).overfull());
    }
}
