//! A node's sightings table under the reports of a fleet whose services keep being shown revoked
//! credentials (a replay of stolen tokens, or a load test presenting revoked ones): the table is
//! full (`MAX_HELD`) and every report is the largest a subscriber sends (`MAX_PER_REPORT`).
//! Measures, per report:
//! - `new`: every sighting is new, so the table evicts the least recently seen to make room;
//! - `held`: every sighting is one the table holds, so only counts and times move.
//!
//! What a report costs is what the node's Raft and streams do not get while it is recorded, so
//! it must stay a small fraction of a heartbeat interval.
//!
//! Run: `cargo bench --bench sightings`.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use recall::node::sightings::{MAX_HELD, Store};
use recall::proto as pb;
use recall::subscriber::sightings::MAX_PER_REPORT;

fn sighting(i: usize, at_ms: i64) -> pb::Sighting {
    pb::Sighting {
        rule: false,
        kind: "token".into(),
        namespace: "https://idp.example.com".into(),
        value: format!("0f3c8a7e-{i:012}"),
        service: format!("checkout-{}", i % 16),
        count: 3,
        first_seen_ms: at_ms,
        last_seen_ms: at_ms,
        subscriber_id: String::new(),
    }
}

/// `n` sightings of the values `from..from + n`.
fn report(from: usize, n: usize, at_ms: i64) -> pb::ReportSightingsRequest {
    pb::ReportSightingsRequest {
        sightings: (from..from + n)
            .map(|i| sighting(i, at_ms + i as i64))
            .collect(),
        dropped: 0,
    }
}

/// A full table: `MAX_HELD` rows, the oldest first.
fn full() -> Store {
    let store = Store::new(MAX_HELD);
    for from in (0..MAX_HELD).step_by(MAX_PER_REPORT) {
        let n = MAX_PER_REPORT.min(MAX_HELD - from);
        store.record("sidecar-0", report(from, n, 1_000));
    }
    assert_eq!(store.held(), MAX_HELD);
    store
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("sightings_report");
    g.sample_size(30);
    let store = full();
    let mut next = MAX_HELD;
    g.bench_function("new", |b| {
        b.iter_batched(
            || {
                next += MAX_PER_REPORT;
                report(next, MAX_PER_REPORT, 10_000_000)
            },
            |r| store.record("sidecar-1", r),
            BatchSize::LargeInput,
        )
    });
    let store = full();
    g.bench_function("held", |b| {
        b.iter_batched(
            || report(MAX_HELD - MAX_PER_REPORT, MAX_PER_REPORT, 20_000_000),
            |r| store.record("sidecar-1", r),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
