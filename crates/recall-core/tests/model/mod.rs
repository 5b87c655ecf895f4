//! Generators and a reference model for the property tests: small pools of keys and rule scopes,
//! histories of valid commands with a monotonic clock, token facts drawn from the same pools, and
//! a plain map-based model of what the set must hold.

use std::collections::BTreeMap;

use proptest::collection::vec;
use proptest::prelude::*;
use recall_core::{
    Command, Kind, Limits, Match, Meta, Namespace, Revocation, RevocationKey, Rule, RuleScope,
    ScopeKind, Timestamp, TokenFacts, issued_before, validate,
};

/// The leader's clock at the start of every history, in unix milliseconds.
pub const BASE: i64 = 1_700_000_000_000;
const NAMESPACES: [&str; 2] = ["https://a.example", "https://b.example"];
const TENANTS: [&str; 2] = ["acme", "globex"];
/// Entries are revoked under issuers and under tenants.
const KEY_NAMESPACES: [&str; 4] = ["https://a.example", "https://b.example", "acme", "globex"];
const VALUES: [&str; 3] = ["v0", "v1", "v2"];
/// API key values must be lowercase hex SHA-256s to be valid.
const API_KEYS: [&str; 3] = [
    "0000000000000000000000000000000000000000000000000000000000000000",
    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    "9999999999999999999999999999999999999999999999999999999999999999",
];

fn value(kind: Kind, i: usize) -> &'static str {
    if kind == Kind::ApiKey {
        API_KEYS[i]
    } else {
        VALUES[i]
    }
}

/// How many keys the pool holds.
pub const fn keys() -> usize {
    Kind::ALL.len() * KEY_NAMESPACES.len() * VALUES.len()
}

/// Key `i` of the pool.
pub fn key(i: usize) -> RevocationKey {
    let kind = Kind::ALL[i % Kind::ALL.len()];
    let ns = KEY_NAMESPACES[(i / Kind::ALL.len()) % KEY_NAMESPACES.len()];
    RevocationKey::new(
        kind,
        ns,
        value(kind, i / (Kind::ALL.len() * KEY_NAMESPACES.len())),
    )
}

/// Every rule scope of the pool: issuers, tenants, and two values per valued scope and issuer.
pub fn scopes() -> Vec<RuleScope> {
    let mut all = Vec::new();
    for ns in NAMESPACES {
        all.push(RuleScope::new(ScopeKind::Issuer, ns, ""));
        for kind in [ScopeKind::Subject, ScopeKind::Client, ScopeKind::Key] {
            all.extend(VALUES[..2].iter().map(|v| RuleScope::new(kind, ns, *v)));
        }
    }
    all.extend(TENANTS.map(|t| RuleScope::new(ScopeKind::Tenant, t, "")));
    all
}

/// Clock ticks and expiries move in whole steps of this many milliseconds, so that an expiry
/// often falls exactly on a later prune's time (the `expires_at == now` boundary).
const STEP_MS: i64 = 100;

/// One abstract command; times are offsets from the clock when it is proposed.
#[derive(Clone, Debug)]
enum Op {
    /// Keys by pool index, each with an optional expiry `1..` steps after now.
    Revoke(Vec<(usize, Option<u16>)>),
    /// A scope by pool index, `not_before` as an offset from now in ms, an optional expiry
    /// `1..` steps after now.
    Rule(usize, i32, Option<u16>),
    /// Keys and scopes by pool index (never both empty).
    Lift(Vec<usize>, Vec<usize>),
    /// A prune at the current time.
    Prune,
}

/// An abstract command and how many steps the clock moves before it is proposed.
#[derive(Clone, Debug)]
pub struct Step {
    tick: u16,
    op: Op,
}

fn op() -> impl Strategy<Value = Op> {
    let expiry = prop::option::weighted(0.7, 1u16..50);
    let scope = 0..scopes().len();
    prop_oneof![
        4 => vec((0..keys(), expiry), 1..6).prop_map(Op::Revoke),
        2 => (scope.clone(), -60_000i32..=1_000, prop::option::of(1u16..80))
            .prop_map(|(s, nb, e)| Op::Rule(s, nb, e)),
        2 => (vec(0..keys(), 0..4), vec(scope, 0..2)).prop_map(|(mut k, r)| {
            if k.is_empty() && r.is_empty() {
                k.push(0);
            }
            Op::Lift(k, r)
        }),
        1 => Just(Op::Prune),
    ]
}

/// Histories of up to 40 commands.
pub fn steps() -> impl Strategy<Value = Vec<Step>> {
    vec(
        (0u16..20, op()).prop_map(|(tick, op)| Step { tick, op }),
        0..40,
    )
}

fn meta(now: Timestamp) -> Meta {
    Meta {
        at: now,
        actor: "prop".into(),
        on_behalf_of: String::new(),
        reason: String::new(),
    }
}

fn after(now: Timestamp, steps: Option<u16>) -> Option<Timestamp> {
    steps.map(|n| now.plus_millis(i64::from(n) * STEP_MS))
}

/// A revoke of pool keys at `now`.
pub fn revoke(now: Timestamp, items: &[(usize, Option<u16>)]) -> Command {
    let items = items
        .iter()
        .map(|(i, e)| Revocation {
            key: key(*i),
            expires_at: after(now, *e),
        })
        .collect();
    Command::Revoke {
        meta: meta(now),
        items,
    }
}

/// The concrete commands of a history at versions 1, 2, 3...; each passes validation.
pub fn build(steps: &[Step]) -> Vec<(u64, Command)> {
    let mut now = Timestamp(BASE);
    let mut out = Vec::with_capacity(steps.len());
    for (step, version) in steps.iter().zip(1u64..) {
        now = now.plus_millis(i64::from(step.tick) * STEP_MS);
        let cmd = match &step.op {
            Op::Revoke(items) => revoke(now, items),
            Op::Rule(s, nb, e) => Command::AddRule {
                meta: meta(now),
                rule: Rule {
                    scope: scopes()[*s].clone(),
                    not_before: now.plus_millis(i64::from(*nb)),
                    expires_at: after(now, *e),
                },
            },
            Op::Lift(k, r) => Command::Lift {
                meta: meta(now),
                keys: k.iter().map(|i| key(*i)).collect(),
                rules: r.iter().map(|i| scopes()[*i].clone()).collect(),
            },
            Op::Prune => Command::Prune { now },
        };
        assert_eq!(validate(&cmd, now, &Limits::default()), Ok(()), "{cmd:?}");
        out.push((version, cmd));
    }
    out
}

/// The kinds of a token's claims, in the order `Token::claims` holds them.
const CLAIMS: [Kind; 6] = [
    Kind::Token,
    Kind::Session,
    Kind::Subject,
    Kind::Client,
    Kind::Key,
    Kind::ApiKey,
];

/// A token's claims, by pool index; `iat` as seconds after `BASE`.
#[derive(Clone, Debug)]
pub struct Token {
    iss: usize,
    tenant: Option<usize>,
    /// jti, sid, sub, client, kid and API key, as in `CLAIMS`.
    claims: [Option<usize>; 6],
    iat: Option<i64>,
}

/// Tokens whose claims come from the pools, issued around the histories' times.
pub fn token() -> impl Strategy<Value = Token> {
    let claim = || prop::option::of(0..VALUES.len());
    (
        0..NAMESPACES.len(),
        prop::option::of(0..TENANTS.len()),
        [claim(), claim(), claim(), claim(), claim(), claim()],
        prop::option::weighted(0.9, -70i64..=90),
    )
        .prop_map(|(iss, tenant, claims, iat)| Token {
            iss,
            tenant,
            claims,
            iat,
        })
}

/// The facts of `t`, the keys its claims name and the rule scopes that could cover it.
#[allow(clippy::type_complexity)]
fn token_facts(
    t: &Token,
) -> (
    TokenFacts<'static>,
    Vec<(RevocationKey, Namespace)>,
    Vec<RuleScope>,
) {
    let iss = NAMESPACES[t.iss];
    let claims: [Option<&'static str>; 6] =
        std::array::from_fn(|i| t.claims[i].map(|v| value(CLAIMS[i], v)));
    let [jti, sid, sub, client, kid, api_key] = claims;
    let facts = TokenFacts {
        iss,
        tenant: t.tenant.map(|i| TENANTS[i]),
        jti,
        sid,
        sub,
        client,
        kid,
        api_key,
        iat: t.iat.map(|s| BASE / 1000 + s),
    };
    let mut keys = Vec::new();
    for (k, v) in CLAIMS.into_iter().zip(claims) {
        let Some(v) = v else { continue };
        keys.push((RevocationKey::new(k, iss, v), Namespace::Issuer));
        if let Some(t) = facts.tenant {
            keys.push((RevocationKey::new(k, t, v), Namespace::Tenant));
        }
    }
    let mut rules = vec![RuleScope::new(ScopeKind::Issuer, iss, "")];
    rules.extend(
        facts
            .tenant
            .map(|t| RuleScope::new(ScopeKind::Tenant, t, "")),
    );
    for (kind, v) in [
        (ScopeKind::Subject, sub),
        (ScopeKind::Client, client),
        (ScopeKind::Key, kid),
    ] {
        rules.extend(v.map(|v| RuleScope::new(kind, iss, v)));
    }
    (facts, keys, rules)
}

/// `None` never expires, so it is later than any time.
fn later(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    Some(a?.max(b?))
}

/// The reference model: what the set must hold, written as plainly as possible.
#[derive(Default)]
pub struct Model {
    /// Each revoked key: its expiry, the version and the time it was first revoked.
    pub entries: BTreeMap<RevocationKey, (Option<Timestamp>, u64, Timestamp)>,
    /// Each rule: its time and expiry.
    pub rules: BTreeMap<RuleScope, (Timestamp, Option<Timestamp>)>,
}

impl Model {
    /// The facts of `t` and everything that must match when they are checked: each revoked key
    /// a claim names, and each rule in scope that the token's `iat` falls before.
    pub fn check(&self, t: &Token) -> (TokenFacts<'static>, Vec<Match>) {
        let (facts, keys, scopes) = token_facts(t);
        let mut want: Vec<Match> = keys
            .into_iter()
            .filter(|(k, _)| self.entries.contains_key(k))
            .map(|(k, under)| Match::Entry {
                kind: k.kind,
                under,
                exact: true,
            })
            .collect();
        for scope in scopes {
            if let Some((not_before, _)) = self.rules.get(&scope)
                && issued_before(facts.iat, *not_before)
            {
                let not_before = *not_before;
                want.push(Match::Rule {
                    scope: scope.kind,
                    not_before,
                });
            }
        }
        (facts, want)
    }

    /// Applies `cmd` as the command at `version`.
    pub fn apply(&mut self, version: u64, cmd: &Command) {
        match cmd {
            Command::Revoke { meta, items } => {
                for item in items {
                    self.entries
                        .entry(item.key.clone())
                        .and_modify(|(e, _, _)| *e = later(*e, item.expires_at))
                        .or_insert((item.expires_at, version, meta.at));
                }
            }
            Command::AddRule { rule, .. } => match self.rules.get_mut(&rule.scope) {
                Some((nb, e)) if *nb >= rule.not_before => *e = later(*e, rule.expires_at),
                _ => {
                    self.rules
                        .insert(rule.scope.clone(), (rule.not_before, rule.expires_at));
                }
            },
            Command::Lift { keys, rules, .. } => {
                for k in keys {
                    self.entries.remove(k);
                }
                for s in rules {
                    self.rules.remove(s);
                }
            }
            Command::Prune { now } => {
                let live = |e: &Option<Timestamp>| e.is_none_or(|e| e > *now);
                self.entries.retain(|_, (e, _, _)| live(e));
                self.rules.retain(|_, (_, e)| live(e));
            }
        }
    }
}
