//! Validation is the gate before Raft: the state machine only ever applies what passes here, and
//! an operator who is refused reads the message. One test per error variant, each pinning the
//! variant and checking that its message names what is wrong and says what to do.

use recall_core::validate::{API_KEY_HASH_LEN, MAX_REASON_LEN};
use recall_core::{
    Command, Kind, Limits, MAX_VALUE_LEN, Meta, Revocation, RevocationKey, Rule, RuleScope,
    ScopeKind, Timestamp, ValidationError, validate,
};

const NOW: Timestamp = Timestamp::from_millis(1_700_000_000_000);

fn meta() -> Meta {
    Meta {
        at: NOW,
        actor: "ops@example".into(),
        on_behalf_of: String::new(),
        reason: "incident 42".into(),
    }
}

fn item(kind: Kind, value: &str) -> Revocation {
    Revocation {
        key: RevocationKey::new(kind, "https://issuer.example", value),
        expires_at: Some(NOW.plus_millis(3_600_000)),
    }
}

fn revoke(items: Vec<Revocation>) -> Command {
    Command::Revoke {
        meta: meta(),
        items,
    }
}

fn rule(kind: ScopeKind, value: &str, not_before: Timestamp) -> Command {
    Command::AddRule {
        meta: meta(),
        rule: Rule {
            scope: RuleScope::new(kind, "https://issuer.example", value),
            not_before,
            expires_at: None,
        },
    }
}

/// Checks `cmd` with the default limits and returns why it is refused.
fn refused(cmd: &Command) -> ValidationError {
    validate(cmd, NOW, &Limits::default()).expect_err("must be refused")
}

fn lift(keys: Vec<RevocationKey>, rules: Vec<RuleScope>) -> Command {
    Command::Lift {
        meta: meta(),
        keys,
        rules,
    }
}

/// Revokes `items` with the default limits; returns why item `index` is refused.
fn refused_item(items: Vec<Revocation>, index: usize) -> ValidationError {
    inner(refused(&revoke(items)), index)
}

/// Checks `cmd` with the default limits and asserts it passes.
fn passes(cmd: &Command) {
    assert_eq!(validate(cmd, NOW, &Limits::default()), Ok(()), "{cmd:?}");
}

/// Asserts the message of `err` contains every one of `parts`.
fn says(err: &ValidationError, parts: &[&str]) {
    let msg = err.to_string();
    for part in parts {
        assert!(msg.contains(part), "`{msg}` does not say `{part}`");
    }
}

/// Unwraps an `Item` error, asserting its index.
fn inner(err: ValidationError, want_index: usize) -> ValidationError {
    match err {
        ValidationError::Item { index, error } if index == want_index => *error,
        other => panic!("expected Item {{ index: {want_index} }}, got {other:?}"),
    }
}

/// A typo in a kind is refused with the list of kinds that exist; `jti` is accepted for `token`.
#[test]
fn unknown_kind_lists_the_known_ones() {
    let err = "jwt".parse::<Kind>().unwrap_err();
    assert_eq!(
        err,
        ValidationError::UnknownKind {
            given: "jwt".into()
        }
    );
    says(&err, &["`jwt`", "expected one of token, session, api_key"]);
    assert_eq!("jti".parse::<Kind>(), Ok(Kind::Token));
    for kind in Kind::ALL {
        assert_eq!(kind.name().parse::<Kind>(), Ok(kind));
    }
}

/// A typo in a rule scope is refused with the list of scopes that exist.
#[test]
fn unknown_scope_lists_the_known_ones() {
    let err = "realm".parse::<ScopeKind>().unwrap_err();
    assert_eq!(
        err,
        ValidationError::UnknownScope {
            given: "realm".into()
        }
    );
    says(
        &err,
        &["`realm`", "expected one of issuer, tenant, subject"],
    );
    for kind in ScopeKind::ALL {
        assert_eq!(kind.name().parse::<ScopeKind>(), Ok(kind));
    }
}

/// Every command names who asked for it: an empty actor is refused, naming the field.
#[test]
fn empty_actor_is_refused() {
    let mut cmd = revoke(vec![item(Kind::Token, "jti-1")]);
    if let Command::Revoke { meta, .. } = &mut cmd {
        meta.actor.clear();
    }
    let err = refused(&cmd);
    assert_eq!(err, ValidationError::Empty { field: "actor" });
    says(&err, &["`actor` is empty", "give a non-empty value"]);
}

/// Over-long text is refused with its length and the limit, so the operator knows how much to cut.
#[test]
fn too_long_reason_is_refused_with_length_and_limit() {
    let mut cmd = revoke(vec![item(Kind::Token, "jti-1")]);
    if let Command::Revoke { meta, .. } = &mut cmd {
        meta.reason = "r".repeat(MAX_REASON_LEN + 1);
    }
    let err = refused(&cmd);
    let (len, max) = (MAX_REASON_LEN + 1, MAX_REASON_LEN);
    assert_eq!(
        err,
        ValidationError::TooLong {
            field: "reason",
            len,
            max
        }
    );
    says(&err, &["`reason` is 1025 bytes", "of 1024", "shorten"]);
}

/// A raw API key never reaches the log: only its lowercase hex SHA-256 is accepted, and the
/// message says how to hash it. Uppercase hex of the right length is refused too.
#[test]
fn api_key_must_be_a_lowercase_sha256() {
    let err = refused_item(vec![item(Kind::ApiKey, "sk_live_abc123")], 0);
    assert_eq!(err, ValidationError::ApiKeyNotHash { len: 14 });
    says(&err, &["SHA-256", "never the raw key", "got 14 characters"]);
    says(&err, &["hash it", "sha256sum"]);

    let [upper, lower] = ["AB", "ab"].map(|s| s.repeat(API_KEY_HASH_LEN / 2));
    let err = refused_item(vec![item(Kind::ApiKey, &upper)], 0);
    let len = API_KEY_HASH_LEN;
    assert_eq!(err, ValidationError::ApiKeyNotHash { len });
    says(&err, &["got 64 characters that are not all 0-9a-f"]);
    passes(&revoke(vec![item(Kind::ApiKey, &lower)]));
}

/// A revoke or lift that names nothing is refused rather than logged as a no-op.
#[test]
fn empty_batches_are_refused() {
    let err = refused(&revoke(vec![]));
    assert_eq!(err, ValidationError::EmptyBatch { what: "revoke" });
    says(&err, &["nothing to revoke"]);
    let err = refused(&lift(vec![], vec![]));
    assert_eq!(err, ValidationError::EmptyBatch { what: "lift" });
    says(&err, &["nothing to lift"]);
}

/// A batch over the configured limit is refused with its size and the limit, and the message
/// points at `recall import`, which splits; a batch of exactly the limit passes, for revokes and
/// for lifts (keys and rules counted together), with a small limit and with the default one.
#[test]
fn batch_over_the_limit_is_refused_and_the_limit_itself_passes() {
    let max_batch = 3;
    let limits = Limits {
        max_batch,
        ..Limits::default()
    };
    let items = |n: usize| (0..n).map(|i| item(Kind::Token, &i.to_string())).collect();
    assert_eq!(validate(&revoke(items(3)), NOW, &limits), Ok(()));
    let err = validate(&revoke(items(4)), NOW, &limits).unwrap_err();
    assert_eq!(err, ValidationError::BatchTooLarge { len: 4, max: 3 });
    says(&err, &["4 items", "limit of 3", "split it"]);

    let key = |i: usize| RevocationKey::new(Kind::Token, "iss", i.to_string());
    let rules = || vec![RuleScope::new(ScopeKind::Issuer, "iss", "")];
    let keys = |n: usize| (0..n).map(key).collect();
    assert_eq!(validate(&lift(keys(2), rules()), NOW, &limits), Ok(()));
    let err = validate(&lift(keys(3), rules()), NOW, &limits);
    assert_eq!(err, Err(ValidationError::BatchTooLarge { len: 4, max: 3 }));

    let max = Limits::default().max_batch;
    passes(&revoke(items(max)));
    let err = refused(&revoke(items(max + 1)));
    assert_eq!(err, ValidationError::BatchTooLarge { len: max + 1, max });
}

/// A rule dated further ahead than the allowed skew would lock out tokens not issued yet; the
/// message gives how far ahead it is, the allowance, and tells the operator to use the current
/// time.
#[test]
fn rule_beyond_the_skew_is_refused() {
    let not_before = NOW.plus_millis(120_000);
    let err = refused(&rule(ScopeKind::Issuer, "", not_before));
    let (ahead_ms, max_skew_ms) = (120_000, 60_000);
    assert_eq!(
        err,
        ValidationError::RuleInFuture {
            not_before,
            now: NOW,
            ahead_ms,
            max_skew_ms
        }
    );
    says(&err, &["120000 ms after now", "skew of 60000 ms"]);
    says(&err, &["use the current time"]);
}

/// A subject, client or key rule without its value would be meaningless: it is refused, naming
/// the scope and the value it needs.
#[test]
fn scoped_rule_without_a_value_is_refused() {
    for kind in [ScopeKind::Subject, ScopeKind::Client, ScopeKind::Key] {
        let err = refused(&rule(kind, "", NOW));
        assert_eq!(err, ValidationError::ScopeValueMissing { kind });
        says(
            &err,
            &[&format!("`{kind}` rule needs a value"), "client id"],
        );
    }
}

/// An issuer or tenant rule covers a whole namespace; a value there is a mistake (perhaps a
/// subject rule was meant), so it is refused and the message says to drop it.
#[test]
fn namespace_rule_with_a_value_is_refused() {
    for kind in [ScopeKind::Issuer, ScopeKind::Tenant] {
        let err = refused(&rule(kind, "alice", NOW));
        assert_eq!(
            err,
            ValidationError::ScopeValueUnexpected {
                kind,
                value: "alice".into()
            }
        );
        says(&err, &[&format!("`{kind}` rule"), "drop `alice`"]);
    }
}

/// Revoking what expired longer ago than the prune grace is pointless and is refused; an expiry
/// exactly the grace ago counts as expired (a prune at `now` would drop it at once). Rules are
/// held to the same.
#[test]
fn revocation_expired_beyond_the_grace_is_refused() {
    let grace_ms = recall_core::validate::DEFAULT_EXPIRY_GRACE_MS;
    let mut stale = item(Kind::Token, "jti-1");
    let expires_at = NOW.plus_millis(-grace_ms);
    stale.expires_at = Some(expires_at);
    let err = refused_item(vec![stale], 0);
    let now = NOW;
    assert_eq!(
        err,
        ValidationError::AlreadyExpired {
            expires_at,
            now,
            grace_ms
        }
    );
    says(&err, &["expires_at 1699999700000ms", "already expired"]);
    says(
        &err,
        &["not after now (1700000000000ms)", "prune grace (300000 ms)"],
    );

    let mut cmd = rule(ScopeKind::Issuer, "", NOW);
    if let Command::AddRule { rule, .. } = &mut cmd {
        rule.expires_at = Some(NOW.plus_millis(-grace_ms - 1));
    }
    let err = refused(&cmd);
    assert!(matches!(err, ValidationError::AlreadyExpired { .. }));
}

/// A verifier may still accept a token whose `exp` passed less than its leeway ago, so its
/// revocation must still be accepted and hold: anything within the grace passes.
#[test]
fn revocation_expired_within_the_grace_is_accepted() {
    let grace_ms = recall_core::validate::DEFAULT_EXPIRY_GRACE_MS;
    let mut recent = item(Kind::Token, "jti-1");
    recent.expires_at = Some(NOW.plus_millis(-grace_ms + 1));
    passes(&revoke(vec![recent]));
    let strict = Limits {
        expiry_grace_ms: 0,
        ..Limits::default()
    };
    let mut now_expired = item(Kind::Token, "jti-2");
    now_expired.expires_at = Some(NOW);
    assert!(validate(&revoke(vec![now_expired]), NOW, &strict).is_err());
}

/// In a large batch the operator learns which item is wrong: its index from 0, followed by what
/// is wrong with it. In a lift, rules are numbered after the keys.
#[test]
fn item_errors_name_the_index() {
    let items = vec![item(Kind::Token, "ok"), item(Kind::Token, "")];
    let err = refused(&revoke(items));
    let msg = err.to_string();
    assert!(msg.starts_with("item 1: `value` is empty"), "{msg}");
    assert_eq!(inner(err, 1), ValidationError::Empty { field: "value" });

    let keys = ["a", "b"]
        .map(|v| RevocationKey::new(Kind::Token, "iss", v))
        .to_vec();
    let rules = vec![RuleScope::new(ScopeKind::Subject, "iss", "")];
    let err = refused(&lift(keys, rules));
    assert!(err.to_string().starts_with("item 2: "), "{err}");
    let kind = ScopeKind::Subject;
    assert_eq!(inner(err, 2), ValidationError::ScopeValueMissing { kind });
}

/// A well-formed revoke of every kind, a rule of every scope, a lift and a prune all pass.
#[test]
fn valid_commands_pass() {
    let hash = "0123456789abcdef".repeat(4);
    let value = |k| if k == Kind::ApiKey { &hash } else { "v" };
    passes(&revoke(Kind::ALL.map(|k| item(k, value(k))).to_vec()));
    for kind in ScopeKind::ALL {
        passes(&rule(kind, if kind.has_value() { "v" } else { "" }, NOW));
    }
    let rules = vec![RuleScope::new(ScopeKind::Tenant, "t", "")];
    passes(&lift(vec![], rules));
    passes(&Command::Prune { now: NOW });
}

/// Namespaces and values may be exactly MAX_VALUE_LEN bytes (counted in bytes, not characters);
/// one byte more is refused with the length and the limit.
#[test]
fn value_length_boundary_is_inclusive() {
    let mut at_limit = item(Kind::Token, &"v".repeat(MAX_VALUE_LEN));
    at_limit.key.namespace = "n".repeat(MAX_VALUE_LEN);
    passes(&revoke(vec![at_limit]));

    let err = refused_item(vec![item(Kind::Token, &"v".repeat(257))], 0);
    let (len, max) = (257, MAX_VALUE_LEN);
    assert_eq!(
        err,
        ValidationError::TooLong {
            field: "value",
            len,
            max
        }
    );
    says(&err, &["`value` is 257 bytes", "limit of 256"]);
    let mut long_ns = item(Kind::Token, "v");
    long_ns.key.namespace = "n".repeat(257);
    let err = refused_item(vec![long_ns], 0);
    let field = "namespace";
    assert_eq!(err, ValidationError::TooLong { field, len, max });

    // 128 two-byte characters are 256 bytes; one more character is 258 bytes.
    passes(&revoke(vec![item(Kind::Token, &"é".repeat(128))]));
    let err = refused_item(vec![item(Kind::Token, &"é".repeat(129))], 0);
    assert!(matches!(err, ValidationError::TooLong { len: 258, .. }));
}
