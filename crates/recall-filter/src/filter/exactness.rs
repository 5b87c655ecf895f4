//! The check path answers exactly like a `HashSet<u64>` of the same fingerprints: the
//! prefilter in front of each full shard never hides a held fingerprint, and the exact probe
//! behind it never admits another, whatever mix of deltas, batched deltas and snapshots built
//! the filter. Fingerprints are drawn raw rather than hashed from keys, and many are crowded
//! into a few shards (some uniform below the shard bits, some clustered so that the position a
//! probe predicts is wrong), so shards grow past the probe window and change size often.

use std::collections::HashSet;

use proptest::prelude::*;
use recall_core::{Delta, Digest, Fingerprint, FingerprintSeed, Lookup, Presence, View};

use super::{Filter, Mode};

const SEED: FingerprintSeed = FingerprintSeed(3);

/// How many distinct fingerprints the steps draw from (few enough that adds, removals and
/// re-adds of the same fingerprint are common).
const POOL: u32 = 3000;

/// A 64-bit mix of `i` (splitmix64's finaliser).
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The `i`th fingerprint of the pool: uniform over every shard, uniform within one of four
/// shards, or clustered at the bottom of one shard.
fn pooled(i: u32) -> u64 {
    let i = u64::from(i);
    match i % 3 {
        0 => mix(i),
        1 => ((i % 4) << 52) | (mix(i) >> 12),
        _ => (5 << 52) | (i * 7),
    }
}

/// One change to the filter.
#[derive(Clone, Debug)]
enum Step {
    /// One delta: pool indices to add, and to remove (an index in both is only added).
    Delta(Vec<u32>, Vec<u32>),
    /// Several deltas applied as one change.
    Batch(Vec<(Vec<u32>, Vec<u32>)>),
    /// A snapshot of the set as it is.
    Snapshot,
}

fn change() -> impl Strategy<Value = (Vec<u32>, Vec<u32>)> {
    (
        prop::collection::vec(0..POOL, 0..300),
        prop::collection::vec(0..POOL, 0..200),
    )
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => change().prop_map(|(a, r)| Step::Delta(a, r)),
        2 => prop::collection::vec(change(), 1..5).prop_map(Step::Batch),
        1 => Just(Step::Snapshot),
    ]
}

/// The authority's side: the set, its digest and its chain.
struct Truth {
    set: HashSet<u64>,
    digest: Digest,
    version: u64,
}

impl Truth {
    /// The next delta of the chain, and the set after it. Like the authority's, it lists only
    /// what changes: indices already held are not added again, nor absent ones removed.
    fn delta(&mut self, added: &[u32], removed: &[u32]) -> Delta {
        let mut really_added = Vec::new();
        for x in added.iter().map(|&i| pooled(i)) {
            if self.set.insert(x) {
                self.digest.add_entry(Fingerprint(x));
                really_added.push(x);
            }
        }
        let mut really_removed = Vec::new();
        for x in removed.iter().map(|&i| pooled(i)) {
            if !really_added.contains(&x) && self.set.remove(&x) {
                self.digest.remove_entry(Fingerprint(x));
                really_removed.push(x);
            }
        }
        let prev_version = self.version;
        self.version += 1;
        Delta {
            version: self.version,
            prev_version,
            added: really_added.into_iter().map(Fingerprint).collect(),
            removed: really_removed.into_iter().map(Fingerprint).collect(),
            digest: self.digest,
            ..Delta::default()
        }
    }

    fn view(&self) -> View {
        let mut fingerprints: Vec<Fingerprint> = self.set.iter().map(|&x| Fingerprint(x)).collect();
        fingerprints.sort_unstable();
        View {
            seed: SEED,
            version: self.version,
            last_change: self.version,
            digest: self.digest,
            fingerprints,
            rules: vec![],
        }
    }
}

/// Asserts that `filter` answers every fingerprint of the pool, and `probes`, as `truth` does:
/// through the writer's state and through a reader (whose thread keeps the state it saw).
fn assert_exact(filter: &Filter, truth: &Truth, probes: &[u64]) {
    let reader = filter.reader();
    let mut local = reader.local();
    let state = filter.shared.load_full();
    assert_eq!(state.len, truth.set.len());
    assert_eq!(filter.view().unwrap(), truth.view());
    let all = (0..POOL).map(pooled).chain(probes.iter().copied());
    for x in all {
        let held = truth.set.contains(&x);
        assert_eq!(state.holds(x), held, "{x:#018x}");
        let expected = if held {
            Presence::Present
        } else {
            Presence::Absent
        };
        assert_eq!(state.entry(Fingerprint(x)), expected, "{x:#018x}");
        assert_eq!(reader.shared.with_latest(|s| s.holds(x)), held, "{x:#018x}");
        assert_eq!(local.latest().holds(x), held, "{x:#018x}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// After every delta, batch and snapshot, the full filter holds exactly the set (no false
    /// negative, no false positive), and a lite filter fed the same changes never answers
    /// "absent" for a held fingerprint.
    #[test]
    fn full_filter_answers_like_a_hash_set(
        steps in prop::collection::vec(step(), 1..25),
        probes in prop::collection::vec(any::<u64>(), 0..200),
    ) {
        let mut truth = Truth { set: HashSet::new(), digest: Digest::default(), version: 0 };
        let mut full = Filter::new(Mode::Full, SEED);
        let mut lite = Filter::new(Mode::Lite, SEED);
        for step in &steps {
            match step {
                Step::Delta(added, removed) => {
                    let d = truth.delta(added, removed);
                    full.apply(&d).unwrap();
                    lite.apply(&d).unwrap();
                }
                Step::Batch(changes) => {
                    let ds: Vec<Delta> = changes.iter().map(|(a, r)| truth.delta(a, r)).collect();
                    full.apply_many(&ds).unwrap();
                    lite.apply_many(&ds).unwrap();
                }
                Step::Snapshot => {
                    full.load_view(&truth.view()).unwrap();
                    lite.load_view(&truth.view()).unwrap();
                }
            }
            assert_exact(&full, &truth, &probes);
            let lite_state = lite.shared.load_full();
            for &x in &truth.set {
                prop_assert_ne!(lite_state.entry(Fingerprint(x)), Presence::Absent);
            }
        }
    }
}
