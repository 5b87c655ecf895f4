//! Random operation sequences on the set for the property tests of its internals: revokes of
//! up to 40 keys from a pool of 300 (re-revokes extend expiries), rules, lifts, and prunes at
//! times that move back and forth.

use proptest::collection::vec;
use proptest::prelude::*;
use recall_core::{
    Command, Kind, Meta, Revocation, RevocationKey, Rule, RuleScope, ScopeKind, Timestamp,
};

pub const BASE: i64 = 1_700_000_000_000;
const KEYS: usize = 300;
const SCOPES: usize = 20;

#[derive(Clone, Debug)]
pub enum Op {
    /// Keys by index, each with an expiry in ms after `BASE` (`None`: until lifted).
    Revoke(Vec<(usize, Option<u16>)>),
    /// A rule scope by index, with an expiry.
    Rule(usize, Option<u16>),
    Lift(Vec<usize>, Vec<usize>),
    /// A prune at `BASE` plus this many ms.
    Prune(u16),
}

pub fn op() -> impl Strategy<Value = Op> {
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

pub fn command(op: &Op) -> Command {
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
