//! The indexed prune removes exactly what a scan of every entry removes (what prune did before
//! the expiry index), over random sequences of revokes, re-revokes, rules, lifts and prunes at
//! times that move back and forth; and the index holds one item per thing that can expire, so it
//! never keeps what a lift or prune removed.

mod ops;

use std::collections::BTreeSet;

use ops::{command, op};
use proptest::collection::vec;
use proptest::prelude::*;
use recall_core::{
    Command, Entry, Fingerprint, FingerprintSeed, RevocationSet, SetSnapshot, StoredRule, Timestamp,
};

fn expired(expires_at: Option<Timestamp>, now: Timestamp) -> bool {
    expires_at.is_some_and(|e| e <= now)
}

/// What a prune at `now` leaves, found by scanning every entry and rule of `before`.
fn scan_prune(before: &SetSnapshot, now: Timestamp) -> (Vec<Entry>, Vec<StoredRule>) {
    let entries = before
        .entries
        .iter()
        .filter(|e| !expired(e.expires_at, now))
        .cloned()
        .collect();
    let rules = before
        .rules
        .iter()
        .filter(|r| !expired(r.rule.expires_at, now))
        .cloned()
        .collect();
    (entries, rules)
}

/// What the index must hold: a fingerprint per entry that can expire (no collisions among these
/// few keys) and a scope per rule that can.
fn expected_index_len(snap: &SetSnapshot) -> usize {
    snap.entries
        .iter()
        .filter(|e| e.expires_at.is_some())
        .count()
        + snap
            .rules
            .iter()
            .filter(|r| r.rule.expires_at.is_some())
            .count()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn indexed_prune_equals_a_scan_of_every_entry(ops in vec(op(), 1..60)) {
        let mut set = RevocationSet::new(FingerprintSeed(7));
        for (op, version) in ops.iter().zip(1u64..) {
            let before = set.snapshot();
            let cmd = command(op);
            if let Command::Prune { now } = cmd {
                let scanned_any = before.entries.iter().any(|e| expired(e.expires_at, now))
                    || before.rules.iter().any(|r| expired(r.rule.expires_at, now));
                prop_assert_eq!(set.has_expired(now), scanned_any);
                let (entries, rules) = scan_prune(&before, now);
                let applied = set.apply(version, &cmd).expect("in order");
                let after = set.snapshot();
                prop_assert_eq!(&after.entries, &entries);
                prop_assert_eq!(&after.rules, &rules);
                let removed = before.entries.len() + before.rules.len()
                    - entries.len() - rules.len();
                prop_assert_eq!(applied.removed, removed as u64);
                let left: BTreeSet<Fingerprint> = entries.iter().map(|e| e.fingerprint).collect();
                let mut gone: Vec<Fingerprint> = before
                    .entries
                    .iter()
                    .map(|e| e.fingerprint)
                    .filter(|f| !left.contains(f))
                    .collect();
                gone.dedup();
                gone.sort();
                let delta = applied.delta.unwrap_or_default();
                let mut delta_removed = delta.removed.clone();
                delta_removed.sort();
                prop_assert_eq!(delta_removed, gone);
                prop_assert!(!set.has_expired(now), "nothing expired at {:?} is left", now);
            } else {
                set.apply(version, &cmd).expect("in order");
            }
            prop_assert_eq!(set.indexed_expiries(), expected_index_len(&set.snapshot()));
        }
        // A replica restored from a snapshot indexes the same things.
        let restored = RevocationSet::restore(set.snapshot()).expect("restores");
        prop_assert_eq!(restored.indexed_expiries(), set.indexed_expiries());
        prop_assert_eq!(&restored, &set);
    }
}
