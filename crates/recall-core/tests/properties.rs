//! Properties of the revocation set over arbitrary histories of valid commands: replicas that
//! restore a snapshot midway agree with those that replayed everything, subscribers that follow
//! the deltas hold exactly the authority's view, a lift is as if the revocation never happened,
//! the digest ignores order, and a check never lets through what is revoked.
//!
//! Keys and scopes come from small pools so that re-revokes, lifts and rule moves hit existing
//! entries; times advance monotonically so that some expiries pass before a later prune.

mod model;

use std::collections::{BTreeMap, BTreeSet};

use model::{BASE, Model, build, key, keys, scopes, steps, token};
use proptest::prelude::*;
use recall_core::{
    Command, Digest, Fingerprint, FingerprintSeed, Match, Meta, RevocationSet, RuleFingerprint,
    Status, Timestamp, View,
};

const SEED: FingerprintSeed = FingerprintSeed(0x00c0_ffee);

/// Applies every command to a fresh set.
fn replay(cmds: &[(u64, Command)]) -> RevocationSet {
    let mut set = RevocationSet::new(SEED);
    for (version, cmd) in cmds {
        set.apply(*version, cmd).expect("versions increase");
    }
    set
}

/// What a subscriber holds: fingerprints, rules and the version of the last delta it applied.
#[derive(Default)]
struct Subscriber {
    last_change: u64,
    fingerprints: BTreeSet<Fingerprint>,
    rules: BTreeMap<Fingerprint, Timestamp>,
}

impl Subscriber {
    fn fingerprints(&self) -> Vec<Fingerprint> {
        self.fingerprints.iter().copied().collect()
    }

    fn rules(&self) -> Vec<RuleFingerprint> {
        let rule = |(scope, not_before): (&Fingerprint, &Timestamp)| RuleFingerprint {
            scope: *scope,
            not_before: *not_before,
        };
        self.rules.iter().map(rule).collect()
    }

    fn digest(&self) -> Digest {
        Digest::of(&self.fingerprints, &self.rules())
    }
}

/// The visible contents of a view: what two sets at different versions can share.
fn contents(view: View) -> (Vec<Fingerprint>, Vec<RuleFingerprint>, Digest) {
    (view.fingerprints, view.rules, view.digest)
}

/// Matches in a canonical order, to compare verdicts as multisets.
fn sorted(matches: &[Match]) -> Vec<String> {
    let mut all: Vec<String> = matches.iter().map(|m| format!("{m:?}")).collect();
    all.sort();
    all
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// A replica restored from a snapshot taken at any point (and sent as JSON) and then fed the
    /// rest of the log is the same set as one that replayed the whole log: same view, same digest.
    #[test]
    fn snapshot_midway_then_replay_equals_full_replay(
        steps in steps(), split in any::<prop::sample::Index>()
    ) {
        let cmds = build(&steps);
        let split = split.index(cmds.len() + 1);
        let full = replay(&cmds);

        let before = replay(&cmds[..split]);
        let json = serde_json::to_string(&before.snapshot()).expect("serialises");
        let mut restored = RevocationSet::restore(serde_json::from_str(&json).expect("parses"))
            .expect("a snapshot restores");
        prop_assert_eq!(&restored, &before);
        for (version, cmd) in &cmds[split..] {
            restored.apply(*version, cmd).expect("versions increase");
        }
        prop_assert_eq!(restored.view(), full.view());
        prop_assert_eq!(restored.digest(), full.digest());
        prop_assert_eq!(restored.snapshot(), full.snapshot());
        let view = full.view();
        prop_assert_eq!(Digest::of(&view.fingerprints, &view.rules), view.digest);
    }

    /// A subscriber that applies each delta in its version chain, and nothing else, holds exactly
    /// the authority's view after every command, and the digest each delta carries is the digest
    /// of what the subscriber then holds. A command without a delta changed nothing visible.
    #[test]
    fn following_the_deltas_reproduces_the_view(steps in steps()) {
        let mut set = RevocationSet::new(SEED);
        let mut sub = Subscriber::default();
        for (version, cmd) in build(&steps) {
            let before = contents(set.view());
            let applied = set.apply(version, &cmd).expect("versions increase");
            let Some(delta) = applied.delta else {
                prop_assert_eq!(contents(set.view()), before, "a change without a delta");
                continue;
            };
            prop_assert!(!delta.is_empty());
            prop_assert_eq!((delta.version, delta.prev_version), (version, sub.last_change));
            for fp in &delta.removed {
                prop_assert!(sub.fingerprints.remove(fp), "removed {:?} not held", fp);
            }
            for fp in &delta.added {
                prop_assert!(sub.fingerprints.insert(*fp), "added {:?} already held", fp);
            }
            for scope in &delta.rules_removed {
                prop_assert!(sub.rules.remove(scope).is_some(), "rule {:?} not held", scope);
            }
            for rule in &delta.rules_set {
                let old = sub.rules.insert(rule.scope, rule.not_before);
                prop_assert!(old.is_none_or(|nb| nb < rule.not_before), "a rule moved back");
            }
            sub.last_change = version;
            prop_assert_eq!(sub.digest(), delta.digest);
            let view = set.view();
            prop_assert_eq!(view.last_change, sub.last_change);
            prop_assert_eq!(contents(view), (sub.fingerprints(), sub.rules(), delta.digest));
        }
    }

    /// Lifting a key and a rule scope leaves the view and digest the set would have had if that
    /// key had never been revoked and that scope never ruled, whatever happened in between.
    #[test]
    fn a_lift_is_as_if_never_revoked(
        steps in steps(), lifted_key in 0..keys(), lifted_scope in 0..scopes().len()
    ) {
        let (k, scope) = (key(lifted_key), scopes()[lifted_scope].clone());
        let mut with = build(&steps);
        let last = with.last().map_or(0, |(v, _)| *v);
        let meta = Meta { at: Timestamp(BASE), actor: "prop".into(), on_behalf_of: String::new(), reason: String::new() };
        let (keys, rules) = (vec![k.clone()], vec![scope.clone()]);
        with.push((last + 1, Command::Lift { meta, keys, rules }));
        let with = replay(&with);

        let mut without = RevocationSet::new(SEED);
        for (version, mut cmd) in build(&steps) {
            let keep = match &mut cmd {
                Command::Revoke { items, .. } => {
                    items.retain(|i| i.key != k);
                    !items.is_empty()
                }
                Command::AddRule { rule, .. } => rule.scope != scope,
                Command::Lift { keys, rules, .. } => {
                    keys.retain(|x| *x != k);
                    rules.retain(|s| *s != scope);
                    !keys.is_empty() || !rules.is_empty()
                }
                Command::Prune { .. } => true,
            };
            if keep {
                without.apply(version, &cmd).expect("versions increase");
            } else {
                without.advance(version).expect("versions increase");
            }
        }
        prop_assert!(with.get(&k).is_none() && with.rule(&scope).is_none());
        prop_assert_eq!(contents(with.view()), contents(without.view()));
    }

    /// The digest depends on what is revoked, never on the order: one batch in two orders, or
    /// split into one command per key, gives the same digest and fingerprints.
    #[test]
    fn the_digest_is_order_independent(
        prefix in steps(),
        (batch, shuffled) in prop::collection::vec(0..keys(), 1..24)
            .prop_flat_map(|b| (Just(b.clone()), Just(b).prop_shuffle())),
    ) {
        let history = build(&prefix);
        let next = history.last().map_or(1, |(v, _)| v + 1);
        let revoke = |idx: &[usize]| {
            let items: Vec<_> = idx.iter().map(|i| (*i, None)).collect();
            model::revoke(Timestamp(BASE), &items)
        };
        let mut a = replay(&history);
        a.apply(next, &revoke(&batch)).expect("in order");
        let mut b = replay(&history);
        b.apply(next, &revoke(&shuffled)).expect("in order");
        let mut c = replay(&history);
        for (i, version) in shuffled.iter().rev().zip(next..) {
            c.apply(version, &revoke(&[*i])).expect("in order");
        }
        prop_assert_eq!(a.view(), b.view());
        prop_assert_eq!(contents(a.view()), contents(c.view()));
    }

    /// After every command the set agrees with a plain reference model, and checks against it
    /// never say Allowed for a revoked key or for a token that any rule covers; everything that
    /// applies is reported (a union), and nothing else.
    #[test]
    fn checks_never_allow_what_is_revoked(
        steps in steps(), tokens in prop::collection::vec(token(), 1..12)
    ) {
        let mut set = RevocationSet::new(SEED);
        let mut model = Model::default();
        let fp = *set.fingerprinter();
        for (version, cmd) in build(&steps) {
            set.apply(version, &cmd).expect("versions increase");
            model.apply(version, &cmd);
            prop_assert_eq!(set.len(), model.entries.len());
            prop_assert_eq!(set.rule_count(), model.rules.len());
            for i in 0..keys() {
                let k = key(i);
                let held = set.get(&k).map(|(e, m)| (e.expires_at, e.revoked_in, m.at));
                prop_assert_eq!(held, model.entries.get(&k).copied(), "{}", k);
                let want = if held.is_some() { Status::Revoked } else { Status::Allowed };
                let verdict = fp.check_key(k.kind, &k.namespace, &k.value, &set);
                prop_assert_eq!(verdict.status(), want);
            }
            for scope in scopes() {
                let held = set.rule(&scope).map(|r| (r.rule.not_before, r.rule.expires_at));
                prop_assert_eq!(held, model.rules.get(&scope).copied(), "{}", scope);
            }
            for t in &tokens {
                let (facts, want) = model.check(t);
                let verdict = fp.check_token(&facts, &set);
                prop_assert_eq!(sorted(&verdict.matches), sorted(&want), "{:?}", facts);
                let status = if want.is_empty() { Status::Allowed } else { Status::Revoked };
                prop_assert_eq!(verdict.status(), status);
            }
        }
    }
}
