//! Not-before rules: "every token in this scope issued before T is revoked". These tests pin
//! which tokens a rule covers, that several rules combine as a union (no precedence to get
//! wrong), how a later rule replaces an earlier one, and the clock-skew allowance.

use recall_core::{
    Applied, Command, Digest, FingerprintSeed, Kind, Limits, Match, Meta, Namespace, Revocation,
    RevocationKey, RevocationSet, Rule, RuleScope, ScopeKind, Status, Timestamp, TokenFacts,
    ValidationError, Verdict, validate,
};

const ISS: &str = "https://sso.example/realms/main";
const OTHER_ISS: &str = "https://other.example";
/// A whole second, in unix seconds.
const T: i64 = 1_700_000_000;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_secs(secs)
}

fn meta() -> Meta {
    Meta {
        at: at(T),
        actor: "ops".into(),
        on_behalf_of: String::new(),
        reason: String::new(),
    }
}

/// A set whose next command gets the next version.
struct Authority {
    set: RevocationSet,
}

impl Authority {
    fn new() -> Self {
        let set = RevocationSet::new(FingerprintSeed(9));
        Self { set }
    }

    fn apply(&mut self, cmd: Command) -> Applied {
        let version = self.set.version() + 1;
        self.set.apply(version, &cmd).expect("in order")
    }

    fn rule(&mut self, kind: ScopeKind, ns: &str, value: &str, nb: Timestamp) -> Applied {
        let scope = RuleScope::new(kind, ns, value);
        self.apply(Command::AddRule {
            meta: meta(),
            rule: rule(scope, nb, None),
        })
    }

    fn check(&self, facts: &TokenFacts<'_>) -> Verdict {
        self.set.fingerprinter().check_token(facts, &self.set)
    }

    fn status(&self, facts: &TokenFacts<'_>) -> Status {
        self.check(facts).status()
    }

    fn not_before(&self, scope: &RuleScope) -> Option<Timestamp> {
        self.set.rule(scope).map(|r| r.rule.not_before)
    }
}

fn rule(scope: RuleScope, not_before: Timestamp, expires_at: Option<Timestamp>) -> Rule {
    Rule {
        scope,
        not_before,
        expires_at,
    }
}

fn token<'a>(iss: &'a str, iat: Option<i64>) -> TokenFacts<'a> {
    TokenFacts {
        iss,
        jti: Some("jti-1"),
        sub: Some("alice"),
        iat,
        ..TokenFacts::default()
    }
}

fn rule_match(scope: ScopeKind, secs: i64) -> Match {
    Match::Rule {
        scope,
        not_before: at(secs),
    }
}

/// The Keycloak CVE-2026-18218 case: a realm-wide not-before (older) and a client not-before
/// (newer). A token issued to that client between the two must be revoked by the client rule,
/// whichever rule was set first; a token older than both is reported under both rules.
#[test]
fn newer_client_rule_is_honoured_despite_an_older_issuer_rule() {
    let (realm_nb, client_nb) = (T, T + 3_600);
    for client_first in [false, true] {
        let mut a = Authority::new();
        if client_first {
            a.rule(ScopeKind::Client, ISS, "app", at(client_nb));
        }
        a.rule(ScopeKind::Issuer, ISS, "", at(realm_nb));
        if !client_first {
            a.rule(ScopeKind::Client, ISS, "app", at(client_nb));
        }
        let mut t = token(ISS, Some(T + 60));
        t.client = Some("app");
        let client_rule = rule_match(ScopeKind::Client, client_nb);
        assert_eq!(a.check(&t).matches, vec![client_rule]);

        t.iat = Some(T - 60);
        let v = a.check(&t);
        assert_eq!((v.status(), v.matches.len()), (Status::Revoked, 2), "{v:?}");
        assert!(v.matches.contains(&rule_match(ScopeKind::Issuer, realm_nb)));
        assert!(v.matches.contains(&client_rule));

        t.iat = Some(client_nb + 1);
        assert_eq!(a.status(&t), Status::Allowed);
        t.iat = Some(T + 60);
        t.client = Some("cli");
        assert_eq!(a.status(&t), Status::Allowed);
    }
}

/// `iat` has whole-second precision and a rule covers tokens issued strictly before its time
/// (`iat * 1000 < not_before`): a token with `iat == T` is NOT covered by a rule at exactly T,
/// one a second older is. A rule time even 1 ms into a second covers tokens of that second,
/// because their `iat` cannot prove they were issued after it (fail closed).
#[test]
fn a_token_issued_exactly_at_the_rule_time_is_not_covered() {
    let mut a = Authority::new();
    a.rule(ScopeKind::Issuer, ISS, "", Timestamp::from_millis(T * 1000));
    assert_eq!(a.status(&token(ISS, Some(T))), Status::Allowed);
    assert_eq!(a.status(&token(ISS, Some(T - 1))), Status::Revoked);

    for into_the_second in [1, 999] {
        let mut b = Authority::new();
        let not_before = Timestamp::from_millis(T * 1000 + into_the_second);
        b.rule(ScopeKind::Issuer, ISS, "", not_before);
        assert_eq!(b.status(&token(ISS, Some(T))), Status::Revoked);
        assert_eq!(b.status(&token(ISS, Some(T + 1))), Status::Allowed);
    }
}

/// A token without `iat` cannot prove it was issued after a rule, so every rule in its scope
/// covers it (fail closed), however old the rule.
#[test]
fn a_token_without_iat_is_covered() {
    let mut a = Authority::new();
    a.rule(ScopeKind::Subject, ISS, "alice", at(0));
    let mut t = token(ISS, None);
    assert_eq!(a.check(&t).matches, vec![rule_match(ScopeKind::Subject, 0)]);
    t.sub = Some("bob");
    assert_eq!(a.status(&t), Status::Allowed);
}

/// "Log alice out everywhere" covers alice's tokens of that issuer only: not bob's, not another
/// issuer's alice, and not a token with no subject.
#[test]
fn a_subject_rule_covers_that_subject_of_that_issuer_only() {
    let mut a = Authority::new();
    a.rule(ScopeKind::Subject, ISS, "alice", at(T));
    let old = Some(T - 10);
    let mut t = token(ISS, old);
    assert_eq!(a.check(&t).matches, vec![rule_match(ScopeKind::Subject, T)]);
    assert_eq!(a.status(&token(OTHER_ISS, old)), Status::Allowed);
    t.sub = Some("bob");
    assert_eq!(a.status(&t), Status::Allowed);
    t.sub = None;
    assert_eq!(a.status(&t), Status::Allowed);
}

/// A tenant rule covers every token carrying that tenant, whatever its issuer, and nothing else.
#[test]
fn a_tenant_rule_covers_the_tenant_across_issuers() {
    let mut a = Authority::new();
    a.rule(ScopeKind::Tenant, "acme", "", at(T));
    for iss in [ISS, OTHER_ISS] {
        let mut t = token(iss, Some(T - 1));
        assert_eq!(a.status(&t), Status::Allowed, "no tenant claim");
        t.tenant = Some("acme");
        assert_eq!(a.check(&t).matches, vec![rule_match(ScopeKind::Tenant, T)]);
        t.tenant = Some("globex");
        assert_eq!(a.status(&t), Status::Allowed);
    }
    // The tenant's name used as an issuer is a different scope.
    assert_eq!(a.status(&token("acme", Some(T - 1))), Status::Allowed);
}

/// After a signing key leaks, a key rule covers every token that issuer signed with it earlier,
/// and none signed with another key or by another issuer.
#[test]
fn a_key_rule_covers_tokens_signed_with_that_kid() {
    let mut a = Authority::new();
    a.rule(ScopeKind::Key, ISS, "kid-1", at(T));
    let mut t = token(ISS, Some(T - 1));
    t.kid = Some("kid-1");
    assert_eq!(a.check(&t).matches, vec![rule_match(ScopeKind::Key, T)]);
    t.iss = OTHER_ISS;
    assert_eq!(a.status(&t), Status::Allowed);
    t.iss = ISS;
    t.kid = Some("kid-2");
    assert_eq!(a.status(&t), Status::Allowed);
}

/// A rule for one issuer never touches another issuer's tokens, even with identical claims.
#[test]
fn a_rule_for_another_issuer_does_not_match() {
    let mut a = Authority::new();
    a.rule(ScopeKind::Issuer, OTHER_ISS, "", at(T));
    a.rule(ScopeKind::Client, OTHER_ISS, "app", at(T));
    let mut t = token(ISS, Some(T - 100));
    t.client = Some("app");
    assert_eq!(a.check(&t), Verdict::default());
}

/// At most one rule holds per scope: a later time replaces the earlier (subscribers get the new
/// time, and the digest changes to count only it); an earlier or equal time changes nothing and
/// produces no delta.
#[test]
fn a_later_rule_supersedes_and_an_earlier_one_changes_nothing() {
    let scope = RuleScope::new(ScopeKind::Subject, ISS, "alice");
    let mut a = Authority::new();
    a.rule(ScopeKind::Subject, ISS, "alice", at(T));
    let first = a.set.digest();
    let applied = a.rule(ScopeKind::Subject, ISS, "alice", at(T + 100));
    assert_eq!(applied.added, 1);
    let delta = applied.delta.expect("a moved rule is a change");
    assert_eq!(delta.rules_set.len(), 1);
    assert_eq!(delta.rules_set[0].not_before, at(T + 100));
    assert_eq!(
        (a.not_before(&scope), a.set.rule_count()),
        (Some(at(T + 100)), 1)
    );
    assert_eq!(a.status(&token(ISS, Some(T + 50))), Status::Revoked);

    let digest = a.set.digest();
    assert_ne!(
        digest, first,
        "a subscriber that missed the move must see a digest mismatch"
    );
    let mut only_later = Authority::new();
    only_later.rule(ScopeKind::Subject, ISS, "alice", at(T + 100));
    assert_eq!(
        only_later.set.digest(),
        digest,
        "the superseded rule still counts"
    );

    for earlier_or_same in [T + 50, T + 100] {
        let applied = a.rule(ScopeKind::Subject, ISS, "alice", at(earlier_or_same));
        assert_eq!((applied.already_present, applied.delta), (1, None));
        assert_eq!(a.not_before(&scope), Some(at(T + 100)));
        assert_eq!(a.set.digest(), digest);
    }
}

/// Rules and entries combine: a token whose jti is revoked and which a rule also covers is
/// reported under both, so an operator sees every reason.
#[test]
fn entries_and_rules_are_reported_together() {
    let mut a = Authority::new();
    a.rule(ScopeKind::Issuer, ISS, "", at(T));
    let key = RevocationKey::new(Kind::Token, ISS, "jti-1");
    let items = vec![Revocation {
        key,
        expires_at: None,
    }];
    a.apply(Command::Revoke {
        meta: meta(),
        items,
    });
    let v = a.check(&token(ISS, Some(T - 1)));
    assert_eq!(v.matches.len(), 2, "{v:?}");
    assert!(v.matches.contains(&Match::Entry {
        kind: Kind::Token,
        under: Namespace::Issuer,
        exact: true
    }));
    assert!(v.matches.contains(&rule_match(ScopeKind::Issuer, T)));
}

/// Lifting a rule lets its tokens through again and restores the digest of a set that never had
/// it; pruning drops a rule once its `expires_at` has passed and keeps one without expiry.
#[test]
fn lifted_and_expired_rules_stop_matching() {
    let mut a = Authority::new();
    a.rule(ScopeKind::Issuer, ISS, "", at(T));
    let rules = vec![RuleScope::new(ScopeKind::Issuer, ISS, "")];
    let lifted = a.apply(Command::Lift {
        meta: meta(),
        keys: vec![],
        rules,
    });
    assert_eq!(lifted.removed, 1);
    assert_eq!(a.status(&token(ISS, Some(T - 1))), Status::Allowed);
    assert_eq!(a.set.digest(), Digest::default());

    let acme = RuleScope::new(ScopeKind::Tenant, "acme", "");
    let expiring = rule(acme, at(T), Some(at(T + 10)));
    a.apply(Command::AddRule {
        meta: meta(),
        rule: expiring,
    });
    a.rule(ScopeKind::Issuer, ISS, "", at(T));
    a.apply(Command::Prune { now: at(T + 9) });
    assert_eq!(a.set.rule_count(), 2);
    let pruned = a.apply(Command::Prune { now: at(T + 10) });
    assert_eq!((pruned.removed, a.set.rule_count()), (1, 1));
    let mut t = token(OTHER_ISS, Some(T - 1));
    t.tenant = Some("acme");
    assert_eq!(a.status(&t), Status::Allowed);
}

/// A rule may be dated up to `max_skew_ms` ahead of the leader's clock (clocks that run slightly
/// fast); one millisecond more is refused as `RuleInFuture`, since it would revoke tokens that
/// have not been issued yet.
#[test]
fn rules_within_the_clock_skew_are_accepted_and_beyond_it_refused() {
    let now = at(T);
    let cmd = |nb: Timestamp| Command::AddRule {
        meta: meta(),
        rule: rule(RuleScope::new(ScopeKind::Issuer, ISS, ""), nb, None),
    };
    for max_skew_ms in [Limits::default().max_skew_ms, 0, 5_000] {
        let limits = Limits {
            max_skew_ms,
            ..Limits::default()
        };
        assert_eq!(validate(&cmd(now), now, &limits), Ok(()));
        let at_limit = now.plus_millis(max_skew_ms);
        assert_eq!(validate(&cmd(at_limit), now, &limits), Ok(()));
        let beyond = now.plus_millis(max_skew_ms + 1);
        let ahead_ms = max_skew_ms + 1;
        let refused = ValidationError::RuleInFuture {
            not_before: beyond,
            now,
            ahead_ms,
            max_skew_ms,
        };
        assert_eq!(validate(&cmd(beyond), now, &limits), Err(refused));
    }
}
