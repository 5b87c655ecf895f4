//! Properties of the filter a subscriber relies on: fed the deltas of the authority's set, it
//! holds exactly that set (same view, same digest), never answers "allowed" for a revoked key or
//! for a token a rule covers, whatever mix of revokes, rules, lifts and prunes came before, and
//! whether it started empty or from a snapshot taken midway.

use proptest::prelude::*;
use recall_core::{
    Command, FingerprintSeed, Kind, Meta, Revocation, RevocationKey, RevocationSet, Rule,
    RuleScope, ScopeKind, Status, Timestamp, TokenFacts,
};
use recall_filter::{Filter, Mode};

const ISS: [&str; 2] = ["https://a.example", "https://b.example"];
const VALUES: [&str; 6] = ["v0", "v1", "v2", "v3", "v4", "v5"];
const KINDS: [Kind; 4] = [Kind::Token, Kind::Session, Kind::Subject, Kind::Client];

fn meta(at: i64) -> Meta {
    Meta {
        at: Timestamp(at),
        actor: "prop".into(),
        on_behalf_of: String::new(),
        reason: "property test".into(),
    }
}

fn key() -> impl Strategy<Value = RevocationKey> {
    (0..KINDS.len(), 0..ISS.len(), 0..VALUES.len())
        .prop_map(|(k, i, v)| RevocationKey::new(KINDS[k], ISS[i], VALUES[v]))
}

fn scope() -> impl Strategy<Value = RuleScope> {
    (0..3usize, 0..ISS.len(), 0..VALUES.len()).prop_map(|(k, i, v)| match k {
        0 => RuleScope::new(ScopeKind::Issuer, ISS[i], ""),
        1 => RuleScope::new(ScopeKind::Subject, ISS[i], VALUES[v]),
        _ => RuleScope::new(ScopeKind::Client, ISS[i], VALUES[v]),
    })
}

/// One step; times are relative to a clock that moves 1 s per step.
#[derive(Clone, Debug)]
enum Step {
    Revoke(Vec<(RevocationKey, Option<i64>)>),
    Rule(RuleScope, i64, Option<i64>),
    Lift(Vec<RevocationKey>, Vec<RuleScope>),
    Prune,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => prop::collection::vec((key(), prop::option::of(1..20i64)), 1..6).prop_map(Step::Revoke),
        2 => (scope(), 0..5i64, prop::option::of(1..20i64)).prop_map(|(s, b, e)| Step::Rule(s, b, e)),
        2 => (prop::collection::vec(key(), 0..4), prop::collection::vec(scope(), 0..2))
            .prop_map(|(k, r)| Step::Lift(k, r)),
        1 => Just(Step::Prune),
    ]
}

fn command(step: &Step, now: i64) -> Command {
    let s = |x: i64| Timestamp::from_secs(now + x);
    match step {
        Step::Revoke(items) => Command::Revoke {
            meta: meta(now),
            items: items
                .iter()
                .map(|(key, exp)| Revocation {
                    key: key.clone(),
                    expires_at: exp.map(s),
                })
                .collect(),
        },
        Step::Rule(scope, back, exp) => Command::AddRule {
            meta: meta(now),
            rule: Rule {
                scope: scope.clone(),
                not_before: Timestamp::from_secs(now - back),
                expires_at: exp.map(s),
            },
        },
        Step::Lift(keys, rules) => Command::Lift {
            meta: meta(now),
            keys: keys.clone(),
            rules: rules.clone(),
        },
        Step::Prune => Command::Prune {
            now: Timestamp::from_secs(now),
        },
    }
}

/// Asserts that no check against `filter` answers "allowed" where the set says revoked, and (in
/// full mode) that the filter holds exactly the set.
fn assert_agrees(set: &RevocationSet, filter: &Filter) {
    let reader = filter.reader();
    assert_eq!(
        filter.digest(),
        set.digest(),
        "digest at version {}",
        set.version()
    );
    if filter.mode() == Mode::Full {
        assert_eq!(filter.view().unwrap(), set.view());
    }
    let fp = *set.fingerprinter();
    for kind in KINDS {
        for iss in ISS {
            for value in VALUES {
                let truth = fp.check_key(kind, iss, value, set).status();
                let seen = reader.check_key(kind, iss, value).verdict.status();
                match (filter.mode(), truth) {
                    (Mode::Full, _) => assert_eq!(seen, truth, "{kind:?} {iss} {value}"),
                    (Mode::Lite, Status::Revoked) => {
                        assert_ne!(seen, Status::Allowed, "{kind:?} {iss} {value}")
                    }
                    (Mode::Lite, _) => {}
                }
            }
        }
    }
    for iss in ISS {
        for sub in VALUES {
            for iat in [None, Some(0), Some(10_000)] {
                let facts = TokenFacts {
                    iss,
                    sub: Some(sub),
                    client: Some(VALUES[0]),
                    iat,
                    ..TokenFacts::default()
                };
                if fp.check_token(&facts, set).is_revoked() {
                    let seen = reader.check_token(&facts).verdict.status();
                    assert_ne!(seen, Status::Allowed, "{facts:?}");
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// A filter following the deltas (full or lite), and one loaded from a snapshot taken midway
    /// that then follows the remaining deltas, agree with the authority's set after every step.
    #[test]
    fn filter_follows_the_set(steps in prop::collection::vec(step(), 1..40), cut in 0usize..40) {
        let seed = FingerprintSeed(7);
        let mut set = RevocationSet::new(seed);
        let mut full = Filter::new(Mode::Full, seed);
        let mut lite = Filter::new(Mode::Lite, seed);
        let mut late: Option<Filter> = None;
        for (i, step) in steps.iter().enumerate() {
            let version = i as u64 + 1;
            let applied = set.apply(version, &command(step, 1_000 + i as i64)).unwrap();
            for f in [&mut full, &mut lite].into_iter().chain(late.as_mut()) {
                match &applied.delta {
                    Some(d) => f.apply(d).unwrap(),
                    None => f.advance(version, set.last_change()).unwrap(),
                }
            }
            if i == cut.min(steps.len() - 1) {
                let mut f = Filter::new(Mode::Full, FingerprintSeed(99));
                f.load_view(&set.view()).unwrap();
                late = Some(f);
            }
            assert_agrees(&set, &full);
            assert_agrees(&set, &lite);
            if let Some(f) = &late {
                assert_agrees(&set, f);
            }
            prop_assert_eq!(full.version(), set.version());
        }
    }

    /// Deltas applied in batches (`apply_many`, as a subscriber catching up does) leave the
    /// filter exactly where applying them one at a time does: the same set, version and digest.
    #[test]
    fn batched_deltas_equal_one_at_a_time(
        steps in prop::collection::vec(step(), 1..40),
        sizes in prop::collection::vec(1usize..6, 1..40),
    ) {
        let seed = FingerprintSeed(7);
        let mut set = RevocationSet::new(seed);
        let mut deltas = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            let version = i as u64 + 1;
            if let Some(d) = set.apply(version, &command(step, 1_000 + i as i64)).unwrap().delta {
                deltas.push(d);
            }
        }
        for mode in [Mode::Full, Mode::Lite] {
            let mut batched = Filter::new(mode, seed);
            let mut rest = &deltas[..];
            for &n in sizes.iter().cycle().take(deltas.len()) {
                let (now, later) = rest.split_at(n.min(rest.len()));
                batched.apply_many(now).unwrap();
                rest = later;
            }
            batched.apply_many(rest).unwrap();
            batched.advance(set.version(), set.last_change()).unwrap();
            assert_agrees(&set, &batched);
            prop_assert_eq!(batched.digest(), set.digest());
            prop_assert_eq!(batched.version(), set.version());
        }
    }
}
