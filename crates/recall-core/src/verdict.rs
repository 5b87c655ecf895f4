//! Verdicts: is this token (or key) revoked, and by what? One evaluation serves the authority's
//! exact set and the subscribers' filters alike; each supplies a [`Lookup`]. Every entry and rule
//! that applies is reported (a union; there is no precedence to get wrong).

use serde::{Deserialize, Serialize};

use crate::{Fingerprint, Fingerprinter, Kind, ScopeKind, Timestamp, rule::issued_before};

/// What a lookup knows of a fingerprint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    /// Certainly not revoked.
    Absent,
    /// Certainly revoked.
    Present,
    /// A Bloom hit without the exact set behind it: possibly revoked, confirm with the cluster.
    Possible,
}

/// Where a check looks fingerprints up.
pub trait Lookup {
    /// What is known of an entry fingerprint.
    fn entry(&self, fp: Fingerprint) -> Presence;
    /// The `not_before` of the rule with this scope fingerprint, if any.
    fn rule(&self, scope: Fingerprint) -> Option<Timestamp>;
    /// Whether any rule is held at all (lets a check skip rule lookups).
    fn has_rules(&self) -> bool;
}

/// The facts of one token a service wants checked. Absent claims are `None`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenFacts<'a> {
    /// The issuer (`iss`): the namespace of every other fact.
    pub iss: &'a str,
    /// The tenant, for tenant-scoped rules.
    pub tenant: Option<&'a str>,
    /// The token id (`jti`).
    pub jti: Option<&'a str>,
    /// The session id (`sid`).
    pub sid: Option<&'a str>,
    /// The subject (`sub`).
    pub sub: Option<&'a str>,
    /// The client (`azp` or `client_id`).
    pub client: Option<&'a str>,
    /// The signing key id (`kid`).
    pub kid: Option<&'a str>,
    /// The lowercase hex SHA-256 of an API key presented with the request.
    pub api_key: Option<&'a str>,
    /// Issued-at, unix seconds. Without it, every rule in scope applies (fail closed).
    pub iat: Option<i64>,
}

/// Which of a token's namespaces an entry matched under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Namespace {
    /// The token's issuer (`iss`).
    Issuer,
    /// The token's tenant.
    Tenant,
}

/// The latest `iat` taken as seconds: 10^10 s is the year 2286, while a time in milliseconds
/// has been past 10^12 since 2001. A larger `iat` is a unit mistake, and accepting it would put
/// the token after every not-before rule.
pub const MAX_IAT_SECONDS: i64 = 10_000_000_000;

/// Whether `iat` (unix seconds) is plausible: before [`MAX_IAT_SECONDS`]. An `iat` in
/// milliseconds is not, and must be refused rather than compared with rules.
pub const fn plausible_iat(iat: i64) -> bool {
    iat < MAX_IAT_SECONDS
}

/// One reason a token is (or may be) revoked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Match {
    /// A revoked entry of this kind matched one of the token's facts.
    Entry {
        /// Which fact matched.
        kind: Kind,
        /// The namespace it matched under: the issuer, or the tenant.
        under: Namespace,
        /// `false` for a lite-mode Bloom hit that needs confirming.
        exact: bool,
    },
    /// A not-before rule covers the token.
    Rule {
        /// The rule's scope.
        scope: ScopeKind,
        /// The rule's time.
        not_before: Timestamp,
    },
}

/// The answer to a check.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// Everything that matched; empty means allowed.
    pub matches: Vec<Match>,
}

/// The short form of a verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Nothing matched.
    Allowed,
    /// Something matched exactly.
    Revoked,
    /// Only lite-mode Bloom hits matched: confirm with the cluster.
    PossiblyRevoked,
}

impl Verdict {
    /// Whether something certainly matched.
    pub fn is_revoked(&self) -> bool {
        self.matches
            .iter()
            .any(|m| !matches!(m, Match::Entry { exact: false, .. }))
    }

    /// The short form.
    pub fn status(&self) -> Status {
        if self.is_revoked() {
            Status::Revoked
        } else if self.matches.is_empty() {
            Status::Allowed
        } else {
            Status::PossiblyRevoked
        }
    }
}

impl Fingerprinter {
    /// Checks one key.
    pub fn check_key(&self, kind: Kind, namespace: &str, value: &str, at: &impl Lookup) -> Verdict {
        let mut v = Verdict::default();
        entry(
            &mut v,
            at,
            kind,
            Namespace::Issuer,
            self.of(kind, namespace, value),
        );
        v
    }

    /// Checks every fact of a token against the entries (under its issuer and, if it has one,
    /// its tenant) and the rules.
    pub fn check_token(&self, facts: &TokenFacts<'_>, at: &impl Lookup) -> Verdict {
        let mut v = Verdict::default();
        // The issuer is the namespace of every fact: hash it once.
        let iss = self.namespace(facts.iss);
        let tenant_ns = facts
            .tenant
            .filter(|t| *t != facts.iss)
            .map(|t| self.namespace(t));
        let entries = [
            (Kind::Token, facts.jti),
            (Kind::Session, facts.sid),
            (Kind::Subject, facts.sub),
            (Kind::Client, facts.client),
            (Kind::Key, facts.kid),
            (Kind::ApiKey, facts.api_key),
        ];
        for (kind, value) in entries {
            if let Some(value) = value {
                entry(&mut v, at, kind, Namespace::Issuer, iss.of(kind, value));
                if let Some(t) = &tenant_ns {
                    entry(&mut v, at, kind, Namespace::Tenant, t.of(kind, value));
                }
            }
        }
        if at.has_rules() {
            let tenant = facts
                .tenant
                .map(|t| self.scope_of(ScopeKind::Tenant, t, ""));
            let scopes = [
                (ScopeKind::Issuer, Some(iss.scope_of(ScopeKind::Issuer, ""))),
                (ScopeKind::Tenant, tenant),
                (
                    ScopeKind::Subject,
                    facts.sub.map(|s| iss.scope_of(ScopeKind::Subject, s)),
                ),
                (
                    ScopeKind::Client,
                    facts.client.map(|c| iss.scope_of(ScopeKind::Client, c)),
                ),
                (
                    ScopeKind::Key,
                    facts.kid.map(|k| iss.scope_of(ScopeKind::Key, k)),
                ),
            ];
            for (scope, fp) in scopes {
                if let Some(not_before) = fp.and_then(|fp| at.rule(fp))
                    && issued_before(facts.iat, not_before)
                {
                    v.matches.push(Match::Rule { scope, not_before });
                }
            }
        }
        v
    }
}

fn entry(v: &mut Verdict, at: &impl Lookup, kind: Kind, under: Namespace, fp: Fingerprint) {
    let exact = match at.entry(fp) {
        Presence::Absent => return,
        Presence::Present => true,
        Presence::Possible => false,
    };
    v.matches.push(Match::Entry { kind, under, exact });
}
