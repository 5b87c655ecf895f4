//! The check path and the filter's write path at 1M revoked entries, against a baseline measured
//! in the same run: the same fingerprint looked up in a `std::collections::HashSet<u64>` (what a
//! service would write by hand).
//!
//! Run: `cargo bench --bench filter` (results and conditions in BENCHMARKS.md).

use std::collections::HashSet;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use recall_core::{
    Delta, Digest, Fingerprint, FingerprintSeed, Fingerprinter, Kind, RuleFingerprint, ScopeKind,
    Timestamp, TokenFacts, View,
};
use recall_filter::{Filter, Mode};

const N: usize = 1_000_000;
const ISS: &str = "https://login.example.com";
const SEED: FingerprintSeed = FingerprintSeed(0x5eed);

fn jti(i: usize) -> String {
    format!("jti-{i:08}")
}

/// A view of `N` revoked token ids plus a few rules, as a subscriber receives it.
fn view(fp: &Fingerprinter) -> View {
    let mut fingerprints: Vec<Fingerprint> =
        (0..N).map(|i| fp.of(Kind::Token, ISS, &jti(i))).collect();
    fingerprints.sort_unstable();
    let mut rules: Vec<RuleFingerprint> = (0..4)
        .map(|i| RuleFingerprint {
            scope: fp.scope_of(ScopeKind::Subject, ISS, &format!("user-{i}")),
            not_before: Timestamp::from_secs(1_700_000_000),
        })
        .collect();
    rules.sort_unstable();
    let digest = Digest::of(&fingerprints, &rules);
    View {
        seed: SEED,
        version: 1,
        last_change: 1,
        digest,
        fingerprints,
        rules,
    }
}

fn checks(c: &mut Criterion) {
    let fp = Fingerprinter::new(SEED);
    let view = view(&fp);
    let mut filter = Filter::new(Mode::Full, SEED);
    filter.load_view(&view).unwrap();
    let mut lite = Filter::new(Mode::Lite, SEED);
    lite.load_view(&view).unwrap();
    let (reader, lite_reader) = (filter.reader(), lite.reader());
    let baseline: HashSet<u64> = view.fingerprints.iter().map(|f| f.0).collect();

    // Many distinct keys, cycled, so the benchmark is not one cached cache line.
    let absent: Vec<String> = (0..4096).map(|i| format!("absent-{i:08}")).collect();
    let present: Vec<String> = (0..4096).map(|i| jti(i * 211)).collect();

    let mut g = c.benchmark_group("check_key_1M");
    let mut i = 0usize;
    g.bench_function("negative/filter", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(reader.check_key(Kind::Token, ISS, black_box(&absent[i])))
        })
    });
    let mut local = reader.local();
    g.bench_function("negative/filter_local_reader", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(local.check_key(Kind::Token, ISS, black_box(&absent[i])))
        })
    });
    g.bench_function("negative/filter_lite", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(lite_reader.check_key(Kind::Token, ISS, black_box(&absent[i])))
        })
    });
    g.bench_function("negative/baseline_hashset", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(baseline.contains(&fp.of(Kind::Token, ISS, black_box(&absent[i])).0))
        })
    });
    g.bench_function("positive/filter", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(reader.check_key(Kind::Token, ISS, black_box(&present[i])))
        })
    });
    g.bench_function("positive/filter_local_reader", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(local.check_key(Kind::Token, ISS, black_box(&present[i])))
        })
    });
    g.bench_function("positive/baseline_hashset", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(baseline.contains(&fp.of(Kind::Token, ISS, black_box(&present[i])).0))
        })
    });
    // The parts of a check, to see where its time goes.
    g.bench_function("part/fingerprint_only", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(fp.of(Kind::Token, ISS, black_box(&absent[i])))
        })
    });
    let raw: Vec<Vec<u8>> = absent
        .iter()
        .map(|a| format!("\x01{ISS}{a}").into_bytes())
        .collect();
    g.bench_function("part/xxh3_of_the_same_bytes", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(xxhash_rust::xxh3::xxh3_64_with_seed(black_box(&raw[i]), 7))
        })
    });
    g.bench_function("part/published_state_load", |b| {
        b.iter(|| black_box(reader.version()))
    });
    g.finish();

    let facts: Vec<TokenFacts<'_>> = absent
        .iter()
        .map(|s| TokenFacts {
            iss: ISS,
            jti: Some(s),
            sid: Some(s),
            sub: Some(s),
            client: Some("web-app"),
            kid: Some("key-2026-11"),
            iat: Some(1_800_000_000),
            ..TokenFacts::default()
        })
        .collect();
    let mut g = c.benchmark_group("check_token_1M");
    g.bench_function("negative/filter", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(reader.check_token(black_box(&facts[i])))
        })
    });
    let mut local = reader.local();
    g.bench_function("negative/filter_local_reader", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(local.check_token(black_box(&facts[i])))
        })
    });
    g.bench_function("negative/baseline_hashset", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            let f = &facts[i];
            let hit = [
                (Kind::Token, f.jti),
                (Kind::Session, f.sid),
                (Kind::Subject, f.sub),
                (Kind::Client, f.client),
                (Kind::Key, f.kid),
            ]
            .iter()
            .any(|(k, v)| baseline.contains(&fp.of(*k, ISS, v.unwrap()).0));
            black_box(hit)
        })
    });
    g.finish();
}

/// A delta adding (or removing) `n` token ids numbered from `from`.
fn delta(fp: &Fingerprinter, filter: &Filter, from: usize, n: usize, add: bool) -> Delta {
    let fps: Vec<Fingerprint> = (from..from + n)
        .map(|i| fp.of(Kind::Token, ISS, &jti(i)))
        .collect();
    let mut digest = filter.digest();
    let (version, prev) = (filter.version() + 1, filter.last_change());
    if add {
        fps.iter().for_each(|f| digest.add_entry(*f));
        Delta {
            version,
            prev_version: prev,
            added: fps,
            digest,
            ..Delta::default()
        }
    } else {
        fps.iter().for_each(|f| digest.remove_entry(*f));
        Delta {
            version,
            prev_version: prev,
            removed: fps,
            digest,
            ..Delta::default()
        }
    }
}

fn writes(c: &mut Criterion) {
    let fp = Fingerprinter::new(SEED);
    let view = view(&fp);
    let mut filter = Filter::new(Mode::Full, SEED);
    filter.load_view(&view).unwrap();

    let mut g = c.benchmark_group("write_1M");
    g.sample_size(20).measurement_time(Duration::from_secs(10));
    // Adds: one revocation (the common wave: one shard touched), a mass recall's delta (the
    // chaos harness writes 1000 a request) and a bulk one. Each iteration adds `n` new entries,
    // timed, then removes them again, untimed (and the reverse for the removal benchmark), so
    // every iteration starts from the same 1M set.
    for (name, n) in [
        ("apply_delta_1_add", 1),
        ("apply_delta_1k_adds", 1_000),
        ("apply_delta_10k_adds", 10_000),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let add = delta(&fp, &filter, N, n, true);
                    let t = Instant::now();
                    filter.apply(&add).unwrap();
                    spent += t.elapsed();
                    filter.apply(&delta(&fp, &filter, N, n, false)).unwrap();
                }
                spent
            })
        });
    }
    g.bench_function("apply_delta_10k_removals", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                filter.apply(&delta(&fp, &filter, N, 10_000, true)).unwrap();
                let remove = delta(&fp, &filter, N, 10_000, false);
                let t = Instant::now();
                filter.apply(&remove).unwrap();
                spent += t.elapsed();
            }
            spent
        })
    });
    g.bench_function("snapshot_load_1M", |b| {
        b.iter_batched(
            || Filter::new(Mode::Full, SEED),
            |mut f| f.load_view(&view).unwrap(),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("snapshot_export_1M", |b| {
        b.iter(|| black_box(filter.view()))
    });
    g.finish();

    let fps: Vec<Fingerprint> = (0..10_000)
        .map(|i| fp.of(Kind::Token, ISS, &jti(i)))
        .collect();
    let mut g = c.benchmark_group("digest");
    g.bench_function("update_10k_entries", |b| {
        b.iter(|| {
            let mut d = Digest::default();
            fps.iter().for_each(|f| d.add_entry(*f));
            black_box(d)
        })
    });
    g.bench_function("from_scratch_1M", |b| {
        b.iter(|| black_box(Digest::of(&view.fingerprints, &view.rules)))
    });
    g.finish();
}

criterion_group!(benches, checks, writes);
criterion_main!(benches);
