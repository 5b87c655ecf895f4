//! The indexed prune removes exactly what a scan of every entry removes (what prune did before
//! the expiry index), over random sequences of revokes, re-revokes, rules, lifts and prunes at
//! times that move back and forth; and the index holds one item per thing that can expire, so it
//! never keeps what a lift or prune removed.

use std::collections::BTreeSet;

use proptest::collection::vec;
use proptest::prelude::*;
use recall_core::{
    Command, Entry, Fingerprint, FingerprintSeed, Kind, Meta, Revocation, RevocationKey,
    RevocationSet, Rule, RuleScope, ScopeKind, SetSnapshot, StoredRule, Timestamp,
};

const BASE: i64 = 1_700_000_000_000;
const KEYS: usize = 300;
const SCOPES: usize = 20;

#[derive(Clone, Debug)]
enum Op {
    /// Keys by index, each with an expiry in ms after `BASE` (`None`: until lifted).
    Revoke(Vec<(usize, Option<u16>)>),
    /// A rule scope by index, with an expiry.
    Rule(usize, Option<u16>),
    Lift(Vec<usize>, Vec<usize>),
    /// A prune at `BASE` plus this many ms.
    Prune(u16),
}

fn op() -> impl Strategy<Value = Op> {
    let expiry = prop::option::weighted(0.8, 0u16..2000);
    prop_oneof![
        5 => vec((0..KEYS, expiry.clone()), 1..40).prop_map(Op::Revoke),
        1 => (0..SCOPES, expiry).prop_map(|(s, e)| Op::Rule(s, e)),
        2 => (vec(0..KEYS, 0..10), vec(0..SCOPES, 0..2)).prop_map(|(k, r)| Op::Lift(k, r)),
        2 => (0u16..2200).prop_map(Op::Prune),
    ]
}

fn key(i: usize) -> RevocationKey {
    RevocationKey::new(Kind::Token, "https://sso.example", format!("jti-{i}"))
}

fn scope(i: usize) -> RuleScope {
    RuleScope::new(
        ScopeKind::Subject,
        "https://sso.example",
        format!("user-{i}"),
    )
}

fn at(ms: Option<u16>) -> Option<Timestamp> {
    ms.map(|ms| Timestamp(BASE + i64::from(ms)))
}

fn meta() -> Meta {
    Meta {
        at: Timestamp(BASE),
        actor: "prop".into(),
        on_behalf_of: String::new(),
        reason: String::new(),
    }
}

fn command(op: &Op) -> Command {
    match op {
        Op::Revoke(items) => Command::Revoke {
            meta: meta(),
            items: items
                .iter()
                .map(|(k, e)| Revocation {
                    key: key(*k),
                    expires_at: at(*e),
                })
                .collect(),
        },
        Op::Rule(s, e) => Command::AddRule {
            meta: meta(),
            rule: Rule {
                scope: scope(*s),
                not_before: Timestamp(BASE),
                expires_at: at(*e),
            },
        },
        Op::Lift(k, r) => Command::Lift {
            meta: meta(),
            keys: k.iter().map(|i| key(*i)).collect(),
            rules: r.iter().map(|i| scope(*i)).collect(),
        },
        Op::Prune(ms) => Command::Prune {
            now: Timestamp(BASE + i64::from(*ms)),
        },
    }
}

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
                let fp = set.fingerprinter();
                let left: BTreeSet<Fingerprint> = entries.iter().map(|e| fp.key(&e.key)).collect();
                let mut gone: Vec<Fingerprint> = before
                    .entries
                    .iter()
                    .map(|e| fp.key(&e.key))
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
