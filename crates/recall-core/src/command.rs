//! Commands: the only way the revocation set changes. Each is validated before it is proposed
//! and then applied identically by every replica; the time inside a command was stamped by the
//! leader, so applying never reads a clock.

use serde::{Deserialize, Serialize};

use crate::{RevocationKey, Rule, RuleScope, Timestamp};

/// Who did something, when, and why: recorded in the audit chain and kept with each entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Meta {
    /// When the leader accepted the command.
    pub at: Timestamp,
    /// Who asked for it: the authenticated identity of the caller (a SPIFFE ID).
    pub actor: String,
    /// Whom the caller said it acted for (free text from the client; may be empty).
    pub on_behalf_of: String,
    /// Why (free text; may be empty).
    pub reason: String,
}

/// One value to revoke and how long the revocation matters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Revocation {
    /// What is revoked.
    pub key: RevocationKey,
    /// When what it names can no longer be valid anyway (a token's `exp`); `None` until lifted.
    pub expires_at: Option<Timestamp>,
}

/// A change to the revocation set.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Command {
    /// Revoke a batch of keys. Revoking what is already revoked is a no-op (its expiry is
    /// extended to the later of the two).
    Revoke {
        /// Who, when, why.
        meta: Meta,
        /// The keys to revoke.
        items: Vec<Revocation>,
    },
    /// Add a not-before rule (or move an existing rule's time later).
    AddRule {
        /// Who, when, why.
        meta: Meta,
        /// The rule.
        rule: Rule,
    },
    /// Undo revocations and rules. Lifting what is not revoked is a no-op.
    Lift {
        /// Who, when, why.
        meta: Meta,
        /// Revoked keys to lift.
        keys: Vec<RevocationKey>,
        /// Rules to lift, by scope.
        rules: Vec<RuleScope>,
    },
    /// Drop every entry and rule whose `expires_at` is at or before `now`.
    Prune {
        /// The cutoff: the leader's time when it proposed the prune minus the prune grace, so
        /// every replica drops exactly the same entries.
        now: Timestamp,
    },
}

impl Command {
    /// Who asked for the command, when and why; a prune is the system's own.
    pub fn meta(&self) -> Option<&Meta> {
        match self {
            Command::Revoke { meta, .. }
            | Command::AddRule { meta, .. }
            | Command::Lift { meta, .. } => Some(meta),
            Command::Prune { .. } => None,
        }
    }

    /// A one-line human summary for audit listings.
    pub fn summary(&self) -> String {
        match self {
            Command::Revoke { items, .. } => match items.as_slice() {
                [one] => format!("revoke {}", one.key),
                many => format!("revoke {} keys", many.len()),
            },
            Command::AddRule { rule, .. } => {
                format!("rule {} not before {}", rule.scope, rule.not_before)
            }
            Command::Lift { keys, rules, .. } => match (keys.as_slice(), rules.as_slice()) {
                ([k], []) => format!("lift {k}"),
                ([], [r]) => format!("lift rule {r}"),
                (k, r) => format!("lift {} keys and {} rules", k.len(), r.len()),
            },
            Command::Prune { now } => format!("prune expired before {now}"),
        }
    }
}
