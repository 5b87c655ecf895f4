//! Validation: every command is checked before it is proposed, so the state machine only ever
//! applies well-formed commands. Each error says what was wrong and what to do instead.

use thiserror::Error;

use crate::{Command, Kind, Meta, Revocation, RevocationKey, Rule, RuleScope, Timestamp};

/// The longest namespace or value, in bytes.
pub const MAX_VALUE_LEN: usize = 256;
/// The longest actor (an authenticated SPIFFE ID), in bytes.
pub const MAX_ACTOR_LEN: usize = 512;
/// The longest "on behalf of" note, in bytes.
pub const MAX_ON_BEHALF_LEN: usize = 256;
/// The longest reason, in bytes.
pub const MAX_REASON_LEN: usize = 1024;
/// The length of a lowercase hex SHA-256, the only accepted form of an `api_key` value.
pub const API_KEY_HASH_LEN: usize = 64;

/// The configurable limits a command is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The most items one revoke or lift may carry.
    pub max_batch: usize,
    /// How far in the future (milliseconds) a rule's `not_before` may lie, to absorb clocks that
    /// run slightly ahead of the leader's. Beyond it a rule would lock out tokens not yet issued.
    pub max_skew_ms: i64,
    /// The prune grace (milliseconds): verifiers accept a token until its `exp` plus their
    /// leeway, so a revocation holds until `expires_at` plus this grace, and one whose expiry
    /// passed less than the grace ago is still accepted.
    pub expiry_grace_ms: i64,
}

/// The default prune grace: five minutes, above the 30 to 300 s leeway verifiers commonly allow.
pub const DEFAULT_EXPIRY_GRACE_MS: i64 = 300_000;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_batch: 100_000,
            max_skew_ms: 60_000,
            expiry_grace_ms: DEFAULT_EXPIRY_GRACE_MS,
        }
    }
}

/// What is wrong with a command.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ValidationError {
    /// A kind name that recall does not know.
    #[error(
        "unknown kind `{given}`: expected one of token, session, api_key, subject, client, key"
    )]
    UnknownKind {
        /// What was given.
        given: String,
    },
    /// A rule scope name that recall does not know.
    #[error("unknown rule scope `{given}`: expected one of issuer, tenant, subject, client, key")]
    UnknownScope {
        /// What was given.
        given: String,
    },
    /// A required field is empty.
    #[error("`{field}` is empty: give a non-empty value")]
    Empty {
        /// The field.
        field: &'static str,
    },
    /// A field is longer than allowed.
    #[error("`{field}` is {len} bytes, over the limit of {max}: shorten it")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An `api_key` value that is not a SHA-256 in lowercase hex.
    #[error(
        "api_key values must be the SHA-256 of the key as 64 lowercase hex characters, never the \
         raw key (got {len} characters{}): hash it, e.g. `printf %s \"$KEY\" | sha256sum`",
        if *.len == API_KEY_HASH_LEN { " that are not all 0-9a-f" } else { "" }
    )]
    ApiKeyNotHash {
        /// The length of what was given.
        len: usize,
    },
    /// A batch with nothing in it.
    #[error("nothing to {what}: the batch is empty")]
    EmptyBatch {
        /// The operation.
        what: &'static str,
    },
    /// A batch over the configured limit.
    #[error("a batch of {len} items is over the limit of {max}: split it (`recall import` does)")]
    BatchTooLarge {
        /// Items given.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A rule whose time lies further in the future than the allowed clock skew.
    #[error(
        "rule not_before {not_before} is {ahead_ms} ms after now ({now}), beyond the allowed skew \
         of {max_skew_ms} ms: it would revoke tokens not issued yet; use the current time"
    )]
    RuleInFuture {
        /// The rule's time.
        not_before: Timestamp,
        /// The leader's time.
        now: Timestamp,
        /// How far ahead it is.
        ahead_ms: i64,
        /// The allowance.
        max_skew_ms: i64,
    },
    /// A subject, client or key rule without the value it scopes.
    #[error("a `{kind}` rule needs a value (the subject, client id or kid it covers)")]
    ScopeValueMissing {
        /// The scope kind.
        kind: crate::ScopeKind,
    },
    /// An issuer or tenant rule given a value.
    #[error("an `{kind}` rule covers a whole namespace and takes no value; drop `{value}`")]
    ScopeValueUnexpected {
        /// The scope kind.
        kind: crate::ScopeKind,
        /// The value given.
        value: String,
    },
    /// An `expires_at` that passed longer ago than the prune grace: no verifier accepts what it
    /// names any more.
    #[error(
        "expires_at {expires_at} is not after now ({now}) minus the prune grace ({grace_ms} ms): \
         it has already expired beyond any verifier's leeway, nothing to revoke"
    )]
    AlreadyExpired {
        /// The expiry given.
        expires_at: Timestamp,
        /// The leader's time.
        now: Timestamp,
        /// The prune grace.
        grace_ms: i64,
    },
    /// One item of a batch is invalid.
    #[error("item {index}: {error}")]
    Item {
        /// Its position in the batch, from 0.
        index: usize,
        /// What is wrong with it.
        error: Box<ValidationError>,
    },
}

fn text(field: &'static str, s: &str, max: usize, required: bool) -> Result<(), ValidationError> {
    if required && s.is_empty() {
        return Err(ValidationError::Empty { field });
    }
    if s.len() > max {
        return Err(ValidationError::TooLong {
            field,
            len: s.len(),
            max,
        });
    }
    Ok(())
}

/// Checks a revocation key on its own.
pub fn validate_key(key: &RevocationKey) -> Result<(), ValidationError> {
    text("namespace", &key.namespace, MAX_VALUE_LEN, true)?;
    text("value", &key.value, MAX_VALUE_LEN, true)?;
    if key.kind == Kind::ApiKey
        && (key.value.len() != API_KEY_HASH_LEN
            || !key
                .value
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    {
        return Err(ValidationError::ApiKeyNotHash {
            len: key.value.chars().count(),
        });
    }
    Ok(())
}

/// Checks a rule scope on its own.
pub fn validate_scope(scope: &RuleScope) -> Result<(), ValidationError> {
    text("namespace", &scope.namespace, MAX_VALUE_LEN, true)?;
    text("value", &scope.value, MAX_VALUE_LEN, false)?;
    match (scope.kind.has_value(), scope.value.is_empty()) {
        (true, true) => Err(ValidationError::ScopeValueMissing { kind: scope.kind }),
        (false, false) => Err(ValidationError::ScopeValueUnexpected {
            kind: scope.kind,
            value: scope.value.clone(),
        }),
        _ => Ok(()),
    }
}

fn validate_meta(meta: &Meta) -> Result<(), ValidationError> {
    text("actor", &meta.actor, MAX_ACTOR_LEN, true)?;
    text("on_behalf_of", &meta.on_behalf_of, MAX_ON_BEHALF_LEN, false)?;
    text("reason", &meta.reason, MAX_REASON_LEN, false)
}

fn not_expired(
    expires_at: Option<Timestamp>,
    now: Timestamp,
    limits: &Limits,
) -> Result<(), ValidationError> {
    let grace_ms = limits.expiry_grace_ms;
    match expires_at {
        Some(expires_at) if expires_at <= now.plus_millis(-grace_ms) => {
            Err(ValidationError::AlreadyExpired {
                expires_at,
                now,
                grace_ms,
            })
        }
        _ => Ok(()),
    }
}

/// Checks one revocation against the time `now` and the prune grace.
pub fn validate_revocation(
    item: &Revocation,
    now: Timestamp,
    limits: &Limits,
) -> Result<(), ValidationError> {
    validate_key(&item.key)?;
    not_expired(item.expires_at, now, limits)
}

/// Checks a rule against the time `now` and the allowed skew.
pub fn validate_rule(rule: &Rule, now: Timestamp, limits: &Limits) -> Result<(), ValidationError> {
    validate_scope(&rule.scope)?;
    let ahead_ms = rule.not_before.0.saturating_sub(now.0);
    if ahead_ms > limits.max_skew_ms {
        return Err(ValidationError::RuleInFuture {
            not_before: rule.not_before,
            now,
            ahead_ms,
            max_skew_ms: limits.max_skew_ms,
        });
    }
    not_expired(rule.expires_at, now, limits)
}

fn batch<T>(
    what: &'static str,
    items: &[T],
    limits: &Limits,
    check: impl Fn(&T) -> Result<(), ValidationError>,
) -> Result<(), ValidationError> {
    if items.len() > limits.max_batch {
        return Err(ValidationError::BatchTooLarge {
            len: items.len(),
            max: limits.max_batch,
        });
    }
    items.iter().enumerate().try_for_each(|(index, item)| {
        check(item).map_err(|e| ValidationError::Item {
            index,
            error: Box::new(e),
        })
    })?;
    if items.is_empty() {
        Err(ValidationError::EmptyBatch { what })
    } else {
        Ok(())
    }
}

/// Checks a whole command as the leader is about to propose it at time `now`.
pub fn validate(cmd: &Command, now: Timestamp, limits: &Limits) -> Result<(), ValidationError> {
    match cmd {
        Command::Revoke { meta, items } => {
            validate_meta(meta)?;
            batch("revoke", items, limits, |i| {
                validate_revocation(i, now, limits)
            })
        }
        Command::AddRule { meta, rule } => {
            validate_meta(meta)?;
            validate_rule(rule, now, limits)
        }
        Command::Lift { meta, keys, rules } => {
            validate_meta(meta)?;
            if keys.is_empty() && rules.is_empty() {
                return Err(ValidationError::EmptyBatch { what: "lift" });
            }
            if keys.len() + rules.len() > limits.max_batch {
                return Err(ValidationError::BatchTooLarge {
                    len: keys.len() + rules.len(),
                    max: limits.max_batch,
                });
            }
            if !keys.is_empty() {
                batch("lift", keys, limits, validate_key)?;
            }
            rules.iter().enumerate().try_for_each(|(i, s)| {
                validate_scope(s).map_err(|e| ValidationError::Item {
                    index: keys.len() + i,
                    error: Box::new(e),
                })
            })
        }
        Command::Prune { .. } => Ok(()),
    }
}
