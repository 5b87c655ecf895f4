//! A lite shard filled by deltas past what its Bloom filter was sized for is reported, and the
//! next snapshot rebuilds it: the false-positive rate measured in the shard goes over the design
//! 1% as it fills, and back under it once rebuilt, while no held fingerprint is ever missed.

use recall_core::{Delta, Digest, Fingerprint, FingerprintSeed, Lookup, Presence, View};

use super::{Filter, Mode};
use crate::shard::LITE_SHARD_BITS;

const SEED: FingerprintSeed = FingerprintSeed(11);

/// A 64-bit mix of `i` (splitmix64's finaliser).
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The `i`th fingerprint of shard 0 (its top bits are zero); odd `i` are never held.
fn in_shard_zero(i: u64) -> u64 {
    mix(i) >> LITE_SHARD_BITS
}

fn view(version: u64, held: &[u64]) -> View {
    let mut fingerprints: Vec<Fingerprint> = held.iter().map(|&x| Fingerprint(x)).collect();
    fingerprints.sort_unstable();
    let mut digest = Digest::default();
    fingerprints.iter().for_each(|&f| digest.add_entry(f));
    View {
        seed: SEED,
        version,
        last_change: version,
        digest,
        fingerprints,
        rules: vec![],
    }
}

/// The share of 20 000 fingerprints of shard 0 that are not held but answer "possible".
fn false_positive_rate(f: &Filter) -> f64 {
    let state = f.shared.load_full();
    let probes = (0..20_000u64).map(|i| in_shard_zero(2 * i + 1_000_001));
    let hits = probes
        .filter(|&x| state.entry(Fingerprint(x)) == Presence::Possible)
        .count();
    hits as f64 / 20_000.0
}

fn assert_holds_all(f: &Filter, held: &[u64]) {
    let state = f.shared.load_full();
    for &x in held {
        assert_eq!(state.entry(Fingerprint(x)), Presence::Possible, "{x:016x}");
    }
}

#[test]
fn an_overfull_lite_shard_is_reported_and_rebuilt_by_the_next_snapshot() {
    let mut f = Filter::new(Mode::Lite, SEED);
    let first: Vec<u64> = (0..400).map(|i| in_shard_zero(2 * i)).collect();
    f.load_view(&view(1, &first)).unwrap();
    let fresh = false_positive_rate(&f);
    assert!(fresh <= 0.015, "a shard as built: {fresh}");
    assert!(!f.needs_rebuild());

    // Deltas add 400 more to the same shard: twice what it was sized for (400 + 50 + 16).
    let mut held = first.clone();
    let mut digest = f.digest();
    for (n, chunk) in (400..800u64).collect::<Vec<_>>().chunks(100).enumerate() {
        let added: Vec<Fingerprint> = chunk
            .iter()
            .map(|&i| Fingerprint(in_shard_zero(2 * i)))
            .collect();
        added.iter().for_each(|&x| digest.add_entry(x));
        held.extend(added.iter().map(|x| x.0));
        let version = 2 + n as u64;
        f.apply(&Delta {
            version,
            prev_version: version - 1,
            added,
            digest,
            ..Delta::default()
        })
        .unwrap();
    }
    assert!(f.needs_rebuild());
    let stats = f.stats();
    assert_eq!((stats.overfull_shards, stats.rebuilds), (1, 0), "{stats:?}");
    let filled = false_positive_rate(&f);
    assert!(filled > 0.05, "an overfull shard: {filled}");
    assert_holds_all(&f, &held);

    // The snapshot carries the exact set; every shard is built again for what it holds.
    f.load_view(&view(f.version(), &held)).unwrap();
    assert!(!f.needs_rebuild());
    let stats = f.stats();
    assert_eq!((stats.overfull_shards, stats.rebuilds), (0, 1), "{stats:?}");
    let rebuilt = false_positive_rate(&f);
    assert!(rebuilt <= 0.015, "the rebuilt shard: {rebuilt}");
    assert_holds_all(&f, &held);

    // A snapshot while nothing is overfull is not a rebuild.
    f.load_view(&view(f.version() + 1, &held)).unwrap();
    assert_eq!(f.stats().rebuilds, 1);
}
