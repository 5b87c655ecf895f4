//! Memory per revoked entry of a filter holding 1M entries, measured by counting the bytes the
//! allocator hands out (not computed from sizes), in full and lite mode, against a
//! `HashSet<u64>` of the same fingerprints.
//!
//! Run: `cargo bench --bench memory` (prints one line per structure; see BENCHMARKS.md).

use std::alloc::System;
use std::collections::HashSet;

use recall_core::{
    Command, Digest, Fingerprint, FingerprintSeed, Fingerprinter, Kind, Meta, Revocation,
    RevocationKey, RevocationSet, Timestamp, View,
};
use recall_filter::{Filter, Mode};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const N: usize = 1_000_000;

/// Bytes still allocated after `build` ran and its temporaries were dropped.
fn retained<T>(build: impl FnOnce() -> T) -> (T, isize) {
    let region = Region::new(GLOBAL);
    let value = build();
    let stats = region.change();
    (
        value,
        stats.bytes_allocated as isize - stats.bytes_deallocated as isize,
    )
}

fn main() {
    let seed = FingerprintSeed(0x5eed);
    let fp = Fingerprinter::new(seed);
    let mut fingerprints: Vec<Fingerprint> = (0..N)
        .map(|i| {
            fp.of(
                Kind::Token,
                "https://login.example.com",
                &format!("jti-{i:08}"),
            )
        })
        .collect();
    fingerprints.sort_unstable();
    let digest = Digest::of(&fingerprints, &[]);
    let view = View {
        seed,
        version: 1,
        last_change: 1,
        digest,
        fingerprints,
        rules: vec![],
    };

    println!("memory per entry at {N} entries (bytes retained on the heap / {N})");
    for mode in [Mode::Full, Mode::Lite] {
        let (filter, bytes) = retained(|| {
            let mut f = Filter::new(mode, seed);
            f.load_view(&view).unwrap();
            f
        });
        let s = filter.stats();
        println!(
            "{:<22} {:>6.2} B/entry  (bloom {:.2}, exact {:.2}, overhead {:.2})",
            format!("filter {mode:?}"),
            bytes as f64 / N as f64,
            s.bloom_bytes as f64 / N as f64,
            s.exact_bytes as f64 / N as f64,
            (bytes as f64 - (s.bloom_bytes + s.exact_bytes) as f64) / N as f64,
        );
    }
    let (_set, bytes) = retained(|| {
        view.fingerprints
            .iter()
            .map(|f| f.0)
            .collect::<HashSet<u64>>()
    });
    println!(
        "{:<22} {:>6.2} B/entry",
        "baseline HashSet<u64>",
        bytes as f64 / N as f64
    );
    authority_set(seed);
}

/// The authority's set: 1M token revocations with an expiry, applied in 1000-item commands as
/// an import does, then frozen as a snapshot leaves it.
fn authority_set(seed: FingerprintSeed) {
    let meta = Meta {
        at: Timestamp::from_millis(1_800_000_000_000),
        actor: "spiffe://recall.local/operator/admin".into(),
        on_behalf_of: "alice".into(),
        reason: "incident 42".into(),
    };
    let (mut set, bytes) = retained(|| {
        let mut set = RevocationSet::new(seed);
        for (v, chunk) in (0..N).collect::<Vec<_>>().chunks(1000).enumerate() {
            let items = chunk
                .iter()
                .map(|i| Revocation {
                    key: RevocationKey::new(
                        Kind::Token,
                        "https://login.example.com",
                        format!("0b6f3c2e-{i:08}-4d1a-9a7e-5c3b2f1e0d9c"),
                    ),
                    expires_at: Some(Timestamp::from_millis(1_800_003_600_000 + *i as i64)),
                })
                .collect();
            set.apply(
                v as u64 + 1,
                &Command::Revoke {
                    meta: meta.clone(),
                    items,
                },
            )
            .unwrap();
        }
        set
    });
    println!(
        "{:<22} {:>6.2} B/entry  (36-byte token ids, one issuer, each with an expiry)",
        "authority set",
        bytes as f64 / N as f64
    );
    let (frozen, after) = retained(|| set.freeze());
    println!(
        "{:<22} {:>6.2} B/entry  (what freezing for a snapshot adds)",
        "  + freeze",
        after as f64 / N as f64
    );
    let ((), merged) = retained(|| {
        let flat = frozen.flatten();
        set.settle(&flat);
    });
    println!(
        "{:<22} {:>6.2} B/entry  (once merged into the sorted layer, as a snapshot or the \
         node's merge leaves it)",
        "  merged",
        (bytes + after + merged) as f64 / N as f64
    );
}
