//! Random commands over a small pool of keys and scopes, so that revocations repeat, lifts
//! find something, rules move and prunes drop entries.

use rand::Rng;
use rand::rngs::StdRng;
use recall_core::{
    Command, Kind, Meta, Revocation, RevocationKey, Rule, RuleScope, ScopeKind, Timestamp,
};

fn key(rng: &mut StdRng) -> RevocationKey {
    let kind = [Kind::Token, Kind::Session, Kind::Subject][rng.random_range(0..3)];
    RevocationKey::new(
        kind,
        "https://issuer.test",
        format!("k{}", rng.random_range(0..24)),
    )
}

fn scope(rng: &mut StdRng) -> RuleScope {
    RuleScope::new(
        ScopeKind::Subject,
        "https://issuer.test",
        format!("s{}", rng.random_range(0..4)),
    )
}

fn meta(now: u64) -> Meta {
    Meta {
        at: Timestamp::from_millis(now as i64),
        actor: "spiffe://recall.test/operator/sim".into(),
        on_behalf_of: String::new(),
        reason: "simulation".into(),
    }
}

/// A command the leader might commit at `now` (sim ticks).
pub fn random(rng: &mut StdRng, now: u64) -> Command {
    let expiry = |rng: &mut StdRng| {
        rng.random_bool(0.8)
            .then(|| Timestamp::from_millis((now + rng.random_range(1..400)) as i64))
    };
    match rng.random_range(0..10) {
        0..=4 => Command::Revoke {
            meta: meta(now),
            items: (0..rng.random_range(1..12))
                .map(|_| Revocation {
                    key: key(rng),
                    expires_at: expiry(rng),
                })
                .collect(),
        },
        5 | 6 => Command::Lift {
            meta: meta(now),
            keys: (0..rng.random_range(1..4)).map(|_| key(rng)).collect(),
            rules: if rng.random_bool(0.3) {
                vec![scope(rng)]
            } else {
                vec![]
            },
        },
        7 | 8 => Command::AddRule {
            meta: meta(now),
            rule: Rule {
                scope: scope(rng),
                not_before: Timestamp::from_millis((now + rng.random_range(0..50)) as i64),
                expires_at: expiry(rng),
            },
        },
        _ => Command::Prune {
            now: Timestamp::from_millis(now as i64),
        },
    }
}

pub fn name(cmd: &Command) -> String {
    match cmd {
        Command::Revoke { items, .. } => format!("revoke {}", items.len()),
        Command::Lift { keys, rules, .. } => format!("lift {}+{}", keys.len(), rules.len()),
        Command::AddRule { rule, .. } => format!("rule {}", rule.scope.value),
        Command::Prune { now } => format!("prune {}", now.as_millis()),
    }
}
