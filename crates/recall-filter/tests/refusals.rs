//! What a filter refuses, and that a refusal changes nothing a reader can see: a subscriber that
//! missed a delta, got a corrupt one, or was sent a bad snapshot keeps answering from what it
//! had and resyncs, instead of guessing.

use recall_core::{
    Delta, Digest, Fingerprint, FingerprintSeed, Kind, RuleFingerprint, Status, Timestamp, View,
};
use recall_filter::{Filter, FilterError, Mode};

const SEED: FingerprintSeed = FingerprintSeed(1);

fn fp(kind: Kind, value: &str) -> Fingerprint {
    recall_core::Fingerprinter::new(SEED).of(kind, "iss", value)
}

fn delta(version: u64, prev: u64, added: &[Fingerprint], digest_before: Digest) -> Delta {
    let mut digest = digest_before;
    added.iter().for_each(|f| digest.add_entry(*f));
    Delta {
        version,
        prev_version: prev,
        added: added.to_vec(),
        digest,
        ..Delta::default()
    }
}

fn filter_with_one() -> Filter {
    let mut f = Filter::new(Mode::Full, SEED);
    f.apply(&delta(3, 0, &[fp(Kind::Token, "a")], Digest::default()))
        .unwrap();
    f
}

/// A delta that does not follow the last change is a gap: refused, state untouched.
#[test]
fn gap_is_refused() {
    let mut f = filter_with_one();
    let d = delta(9, 5, &[fp(Kind::Token, "b")], f.digest());
    let err = f.apply(&d).unwrap_err();
    assert!(
        matches!(
            err,
            FilterError::Gap {
                version: 9,
                prev_version: 5,
                at: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("resync"));
    assert_eq!(f.version(), 3);
    assert_eq!(
        f.reader()
            .check_key(Kind::Token, "iss", "b")
            .verdict
            .status(),
        Status::Allowed
    );
}

/// A replayed (already applied) delta is refused too, never applied twice.
#[test]
fn replayed_delta_is_refused() {
    let mut f = filter_with_one();
    let d = delta(3, 0, &[fp(Kind::Token, "a")], Digest::default());
    assert!(matches!(f.apply(&d), Err(FilterError::Gap { .. })));
}

/// A delta whose digest disagrees with what the filter computes is refused, nothing published.
#[test]
fn digest_mismatch_is_refused() {
    let mut f = filter_with_one();
    let mut d = delta(4, 3, &[fp(Kind::Token, "b")], f.digest());
    d.digest = Digest(d.digest.0 ^ 1);
    let err = f.apply(&d).unwrap_err();
    assert!(
        matches!(err, FilterError::DigestMismatch { version: 4, .. }),
        "{err}"
    );
    assert_eq!(f.version(), 3);
    assert_eq!(
        f.reader()
            .check_key(Kind::Token, "iss", "b")
            .verdict
            .status(),
        Status::Allowed
    );
}

/// A heartbeat whose last change the filter has not applied reveals a missed delta.
#[test]
fn heartbeat_past_a_missed_change_is_a_gap() {
    let mut f = filter_with_one();
    assert!(matches!(f.advance(10, 7), Err(FilterError::Gap { .. })));
    f.advance(10, 3).unwrap();
    assert_eq!(f.version(), 10);
    assert_eq!(f.last_change(), 3);
}

/// A snapshot whose content does not match its digest, or that repeats a fingerprint, is refused.
#[test]
fn corrupt_snapshots_are_refused() {
    let mut f = filter_with_one();
    let a = fp(Kind::Token, "x");
    let view = View {
        seed: SEED,
        version: 20,
        last_change: 20,
        digest: Digest(12345),
        fingerprints: vec![a],
        rules: vec![],
    };
    assert!(matches!(
        f.load_view(&view),
        Err(FilterError::DigestMismatch { .. })
    ));
    let dup = View {
        fingerprints: vec![a, a],
        ..view.clone()
    };
    assert!(matches!(
        f.load_view(&dup),
        Err(FilterError::CorruptSnapshot { .. })
    ));
    let rule = RuleFingerprint {
        scope: a,
        not_before: Timestamp(5),
    };
    let dup_rule = View {
        fingerprints: vec![],
        rules: vec![rule, rule],
        ..view
    };
    assert!(matches!(
        f.load_view(&dup_rule),
        Err(FilterError::CorruptSnapshot { .. })
    ));
    assert_eq!(f.version(), 3);
    assert_eq!(
        f.reader()
            .check_key(Kind::Token, "iss", "a")
            .verdict
            .status(),
        Status::Revoked
    );
}

/// A snapshot older than what the filter has is refused: versions only move forward.
#[test]
fn older_snapshot_is_refused() {
    let mut f = filter_with_one();
    let view = View {
        seed: SEED,
        version: 2,
        last_change: 2,
        ..View::default()
    };
    assert!(matches!(
        f.load_view(&view),
        Err(FilterError::Backwards { given: 2, at: 3 })
    ));
}

/// Readers keep answering while a writer applies deltas, and see each version whole.
#[test]
fn readers_never_wait_for_the_writer() {
    let mut f = Filter::new(Mode::Full, SEED);
    let reader = f.reader();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let checks = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let checker = {
        let (stop, checks) = (stop.clone(), checks.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let c = reader.check_key(Kind::Token, "iss", "v0");
                // Once version ≥ 1 is visible, so is the revocation it carried.
                if c.version >= 1 {
                    assert_eq!(c.verdict.status(), Status::Revoked);
                }
                checks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })
    };
    // The writes start once the reader is checking, so they overlap however fast they are.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while checks.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the checker never ran"
        );
        std::thread::yield_now();
    }
    for v in 1..=200u64 {
        let value = format!("v{}", v - 1);
        let d = delta(v, v - 1, &[fp(Kind::Token, &value)], f.digest());
        f.apply(&d).unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    checker.join().unwrap();
    assert_eq!(f.stats().entries, 200);
}

/// A batch with a gap inside is refused whole: the deltas before the gap are not published
/// either, so the subscriber resumes from where it was.
#[test]
fn batch_with_a_gap_inside_publishes_nothing() {
    let mut f = filter_with_one();
    let b = fp(Kind::Token, "b");
    let d4 = delta(4, 3, &[b], f.digest());
    let mut after_b = f.digest();
    after_b.add_entry(b);
    let d7 = delta(7, 5, &[fp(Kind::Token, "c")], after_b);
    let err = f.apply_many(&[d4, d7]).unwrap_err();
    assert!(
        matches!(
            err,
            FilterError::Gap {
                version: 7,
                prev_version: 5,
                at: 4,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(f.version(), 3);
    assert_eq!(
        f.reader()
            .check_key(Kind::Token, "iss", "b")
            .verdict
            .status(),
        Status::Allowed
    );
}
