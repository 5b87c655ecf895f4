//! The prefilter in front of a full filter's exact shards: a Bloom filter blocked to one 64-bit
//! word per fingerprint, so a negative check reads one word and most never touch a shard.
//!
//! Fingerprints are already uniform keyed hashes, so the prefilter hashes nothing. It is split
//! into [`PAGES`] pages by the fingerprint's top bits (a page holds the words of
//! `SHARDS_PER_PAGE` consecutive shards, in one allocation). Within a page, the word is chosen
//! by the bits below the page index, scaled to the page's length, so each shard's fingerprints
//! fall in a block of `words per shard` words of their own; the [`PROBES`] bits that must be set
//! in the word come from the fingerprint's low bits, which the word's choice does not use.
//!
//! Why pages rather than a prefilter in each shard: a check then reads the page table (1 KiB,
//! always cached) and one word of a few contiguous megabytes, where words scattered among the
//! shards' allocations cost a shard-table load and, measured, a TLB miss per check. A change
//! copies the pages it touches (at 1M entries, 32 KiB each). In the block of a shard that only
//! gained fingerprints it sets their bits; the block of a shard that lost some is refilled from
//! the fingerprints it holds. So the prefilter never keeps a bit for a removed fingerprint and
//! never misses a held one, and a block is always what building it afresh would give. A page whose size has drifted past half or
//! twice what it was sized for is rebuilt at [`BITS_PER_ENTRY`].
//!
//! At 16 bits an entry and 4 probes, about 0.5% of absent fingerprints pass (computed for a
//! word-blocked filter; a test below measures it), for 2 bytes an entry.

use std::sync::Arc;

use crate::shard::{FULL_SHARD_BITS, Shard};
use crate::shards::{GROUP, Shards};

/// Prefilter bits per fingerprint a page is sized for.
pub(crate) const BITS_PER_ENTRY: usize = 16;

/// How many bits of its word a fingerprint sets.
const PROBES: u32 = 4;

/// How many pages (log2); at most [`FULL_SHARD_BITS`].
const PAGE_BITS: u32 = 6;

/// How many pages.
const PAGES: usize = 1 << PAGE_BITS;

/// How many consecutive shards share a page.
const SHARDS_PER_PAGE: usize = 1 << (FULL_SHARD_BITS - PAGE_BITS);

// A page covers one group of shards, so a change copies the same groups in both.
const _: () = assert!(SHARDS_PER_PAGE == GROUP);

/// A shard a change rebuilt, as the prefilter needs to know it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Touched<'a> {
    /// The shard's index.
    pub(crate) index: usize,
    /// The fingerprints it gained, when it lost none (its block then only gains their bits);
    /// `None` when it lost some (its block is refilled from what it holds).
    pub(crate) only_added: Option<&'a [u64]>,
}

/// The prefilter of a full state: immutable, cheap to clone (pages are shared).
#[derive(Clone, Debug)]
pub(crate) struct Prefilter {
    /// `PAGES` pages, each `SHARDS_PER_PAGE × words per shard` words.
    pages: Arc<[Arc<[u64]>]>,
}

impl Prefilter {
    /// The prefilter of `shards` (all of a full state's, in order).
    pub(crate) fn build(shards: &[Shard]) -> Self {
        debug_assert_eq!(shards.len(), PAGES * SHARDS_PER_PAGE);
        let pages = shards.chunks(SHARDS_PER_PAGE).map(page).collect();
        Self { pages }
    }

    /// The prefilter after a change: `shards` are the changed state's, and `touched` (by
    /// index, ascending, each once) the shards the change rebuilt.
    pub(crate) fn changed(&self, shards: &Shards, touched: &[Touched<'_>]) -> Self {
        let mut pages = self.pages.to_vec();
        let mut rest = touched;
        while let Some(first) = rest.first() {
            let p = first.index / SHARDS_PER_PAGE;
            let end = rest.partition_point(|t| t.index / SHARDS_PER_PAGE == p);
            let (mine, tail) = rest.split_at(end);
            rest = tail;
            let own = shards.group(p);
            let held: usize = own.iter().map(Shard::len).sum();
            let per_shard = pages[p].len() / SHARDS_PER_PAGE;
            let sized_for = per_shard * SHARDS_PER_PAGE * 64 / BITS_PER_ENTRY;
            if held > 2 * sized_for || (per_shard > 1 && 2 * held < sized_for) {
                pages[p] = page(own);
                continue;
            }
            let mut words = pages[p].to_vec();
            let len = words_len(per_shard);
            for t in mine {
                let k = t.index % SHARDS_PER_PAGE;
                let block = &mut words[k * per_shard..(k + 1) * per_shard];
                match t.only_added {
                    Some(added) => fill(block, added, k * per_shard, len),
                    None => {
                        block.fill(0);
                        fill(
                            block,
                            shards.get(t.index).fingerprints(),
                            k * per_shard,
                            len,
                        );
                    }
                }
            }
            pages[p] = words.into();
        }
        Self {
            pages: pages.into(),
        }
    }

    /// Whether `fp` may be held: `false` means certainly not.
    #[inline]
    pub(crate) fn may_hold(&self, fp: u64) -> bool {
        let page = &self.pages[(fp >> (64 - PAGE_BITS)) as usize];
        let (index, mask) = probe(fp, page.len());
        page[index] & mask == mask
    }

    /// Heap bytes of the words.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.pages.iter().map(|p| p.len() * 8).sum()
    }
}

/// The page of `shards` (one page's worth), sized for what they hold now.
fn page(shards: &[Shard]) -> Arc<[u64]> {
    let held: usize = shards.iter().map(Shard::len).sum();
    let per_shard = (held * BITS_PER_ENTRY)
        .div_ceil(64 * SHARDS_PER_PAGE)
        .max(1);
    page_sized(shards, per_shard)
}

/// The page of `shards` with `per_shard` words for each.
fn page_sized(shards: &[Shard], per_shard: usize) -> Arc<[u64]> {
    let len = words_len(per_shard);
    let mut words = vec![0; len];
    for (k, shard) in shards.iter().enumerate() {
        let block = &mut words[k * per_shard..(k + 1) * per_shard];
        fill(block, shard.fingerprints(), k * per_shard, len);
    }
    words.into()
}

/// The length of a page of `per_shard` words per shard.
const fn words_len(per_shard: usize) -> usize {
    per_shard * SHARDS_PER_PAGE
}

/// Sets the bits of `fps` (one shard's) in `block`, the words of a page of `len` words that
/// start at `offset`.
fn fill(block: &mut [u64], fps: &[u64], offset: usize, len: usize) {
    for &fp in fps {
        let (index, mask) = probe(fp, len);
        block[index - offset] |= mask;
    }
}

/// The word of `fp` in its page of `len` words, and the bits `fp` needs set in it. The word is
/// the bits below the page index scaled to `len`; as `len` is a multiple of the shards per
/// page, each shard's fingerprints land in their own block of `len / SHARDS_PER_PAGE` words.
#[inline]
const fn probe(fp: u64, len: usize) -> (usize, u64) {
    let below = fp << PAGE_BITS;
    let index = ((below as u128 * len as u128) >> 64) as usize;
    let mut mask = 0u64;
    let mut i = 0;
    while i < PROBES {
        mask |= 1 << ((fp >> (6 * i)) & 63);
        i += 1;
    }
    (index, mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream of uniform 64-bit values (splitmix64), standing in for fingerprints.
    fn uniform(seed: u64) -> impl Iterator<Item = u64> {
        let mut s = seed;
        std::iter::repeat_with(move || {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        })
    }

    /// The shards of a full state holding `fps`.
    fn shards(fps: &[u64]) -> Vec<Shard> {
        let mut fps = fps.to_vec();
        fps.sort_unstable();
        let shift = 64 - FULL_SHARD_BITS;
        let mut rest = &fps[..];
        (0..PAGES * SHARDS_PER_PAGE)
            .map(|s| {
                let (mine, tail) =
                    rest.split_at(rest.partition_point(|&x| (x >> shift) as usize == s));
                rest = tail;
                Shard::build(mine, true)
            })
            .collect()
    }

    #[test]
    fn every_held_fingerprint_passes() {
        for n in [0, 1, 3, 100, 5000] {
            let fps: Vec<u64> = uniform(n as u64).take(n).collect();
            let p = Prefilter::build(&shards(&fps));
            assert!(fps.iter().all(|&fp| p.may_hold(fp)), "n = {n}");
        }
    }

    #[test]
    fn few_absent_fingerprints_pass() {
        let fps: Vec<u64> = uniform(1).take(200_000).collect();
        let p = Prefilter::build(&shards(&fps));
        let passed = uniform(2)
            .take(100_000)
            .filter(|&fp| p.may_hold(fp))
            .count();
        let rate = passed as f64 / 100_000.0;
        assert!(rate < 0.008, "false-positive rate {rate}");
        let bits = p.heap_bytes() as f64 * 8.0 / fps.len() as f64;
        assert!((16.0..17.0).contains(&bits), "{bits} bits an entry");
    }

    #[test]
    fn an_empty_prefilter_passes_nothing() {
        let p = Prefilter::build(&shards(&[]));
        assert!(uniform(9).take(1000).all(|fp| !p.may_hold(fp)));
    }

    #[test]
    fn a_changed_page_equals_a_page_built_afresh_at_its_size() {
        let fps: Vec<u64> = uniform(3).take(50_000).collect();
        let before = shards(&fps);
        let p = Prefilter::build(&before);
        // Remove a tenth and add as many new ones.
        let mut now: Vec<u64> = fps[5_000..].to_vec();
        now.extend(uniform(4).take(5_000));
        let after = shards(&now);
        let touched: Vec<Touched> = (0..after.len())
            .filter(|&s| before[s].fingerprints() != after[s].fingerprints())
            .map(|index| Touched {
                index,
                only_added: None,
            })
            .collect();
        let changed = p.changed(&Shards::new(after.clone()), &touched);
        assert_built_afresh(&changed, &after);
        assert!(now.iter().all(|&fp| changed.may_hold(fp)));
    }

    /// Every page of `p` is what building it from `shards` at its size gives.
    fn assert_built_afresh(p: &Prefilter, shards: &[Shard]) {
        for (i, page) in p.pages.iter().enumerate() {
            let own = &shards[i * SHARDS_PER_PAGE..(i + 1) * SHARDS_PER_PAGE];
            assert_eq!(
                page,
                &page_sized(own, page.len() / SHARDS_PER_PAGE),
                "page {i}"
            );
        }
    }

    #[test]
    fn a_change_that_only_adds_sets_their_bits_and_equals_a_page_built_afresh() {
        let fps: Vec<u64> = uniform(6).take(50_000).collect();
        let before = shards(&fps);
        let p = Prefilter::build(&before);
        let mut added: Vec<u64> = uniform(7).take(2_000).collect();
        added.sort_unstable();
        let mut now = fps.clone();
        now.extend(&added);
        let after = shards(&now);
        let shift = 64 - FULL_SHARD_BITS;
        let mut touched = Vec::new();
        let mut rest = &added[..];
        while let Some(&first) = rest.first() {
            let index = (first >> shift) as usize;
            let (mine, tail) =
                rest.split_at(rest.partition_point(|&x| (x >> shift) as usize == index));
            touched.push(Touched {
                index,
                only_added: Some(mine),
            });
            rest = tail;
        }
        let changed = p.changed(&Shards::new(after.clone()), &touched);
        assert_built_afresh(&changed, &after);
        assert!(now.iter().all(|&fp| changed.may_hold(fp)));
    }

    #[test]
    fn a_page_that_grew_past_twice_its_size_is_rebuilt() {
        let small: Vec<u64> = uniform(5).take(1_000).collect();
        let p = Prefilter::build(&shards(&small));
        let big: Vec<u64> = uniform(5).take(100_000).collect();
        let after = shards(&big);
        let touched: Vec<Touched> = (0..after.len())
            .map(|index| Touched {
                index,
                only_added: None,
            })
            .collect();
        let changed = p.changed(&Shards::new(after.clone()), &touched);
        assert_eq!(changed.pages, Prefilter::build(&after).pages);
        assert!(changed.heap_bytes() > 5 * p.heap_bytes());
    }
}
