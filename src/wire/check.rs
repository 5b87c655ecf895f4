//! The check API on the wire: a token's facts in, a check's answer out.

use recall_core::validate::validate_key;
use recall_core::{Kind, Match, Namespace, RevocationKey, Status, TokenFacts};

use super::WireError;
use super::keys::{kind_from_wire, kind_to_wire, scope_kind_from_wire, scope_kind_to_wire};
use crate::proto as pb;
use crate::subscriber::{Answer, Source, StalePolicy};

/// The most facts one `CheckBatch` may carry (the limit documented in `check.proto`).
pub const MAX_CHECK_BATCH: usize = 10_000;

/// A token's facts from the wire, borrowed from the message; `field` is its path for error
/// messages (`facts`, `facts[3]`).
///
/// Refuses a missing message, an empty `iss`, an optional field present but empty, and an
/// `api_key_sha256` that is not 64 lowercase hex characters (whose value is never echoed).
/// Values have no length limit here: one over 256 bytes simply matches no entry (check.proto).
pub fn facts_from_wire<'a>(
    field: &str,
    facts: Option<&'a pb::TokenFacts>,
) -> Result<TokenFacts<'a>, WireError> {
    let f = facts
        .ok_or_else(|| WireError::new(field, "missing; give the token's facts (at least `iss`)"))?;
    if f.iss.is_empty() {
        return Err(WireError::new(
            super::join(field, "iss"),
            "missing; give the token's issuer (its `iss` claim)",
        ));
    }
    let opt = |name: &str, v: &'a Option<String>| -> Result<Option<&'a str>, WireError> {
        match v.as_deref() {
            Some("") => Err(WireError::new(
                super::join(field, name),
                "present but empty; leave it unset or give a value",
            )),
            other => Ok(other),
        }
    };
    let api_key = opt("api_key_sha256", &f.api_key_sha256)?;
    if let Some(hash) = api_key {
        validate_key(&RevocationKey::new(Kind::ApiKey, f.iss.as_str(), hash))
            .map_err(|e| WireError::new(super::join(field, "api_key_sha256"), e.to_string()))?;
    }
    Ok(TokenFacts {
        iss: &f.iss,
        tenant: opt("tenant", &f.tenant)?,
        jti: opt("jti", &f.jti)?,
        sid: opt("sid", &f.sid)?,
        sub: opt("sub", &f.sub)?,
        client: opt("client", &f.client)?,
        kid: opt("kid", &f.kid)?,
        api_key,
        iat: iat_from_wire(field, f.iat)?,
    })
}

/// A token's facts for the wire (what a lite sidecar sends a node to confirm a hit).
pub fn facts_to_wire(f: &TokenFacts<'_>) -> pb::TokenFacts {
    let own = |v: Option<&str>| v.map(str::to_owned);
    pb::TokenFacts {
        iss: f.iss.to_owned(),
        tenant: own(f.tenant),
        jti: own(f.jti),
        sid: own(f.sid),
        sub: own(f.sub),
        client: own(f.client),
        kid: own(f.kid),
        api_key_sha256: own(f.api_key),
        iat: f.iat,
    }
}

/// An `iat` that is unix seconds; one that can only be milliseconds is refused, since it would
/// put the token after every not-before rule.
fn iat_from_wire(field: &str, iat: Option<i64>) -> Result<Option<i64>, WireError> {
    match iat {
        Some(s) if !recall_core::plausible_iat(s) => Err(WireError::new(
            super::join(field, "iat"),
            format!(
                "{s} is not unix seconds (it is after the year 2286: milliseconds?); give the \
                 token's `iat` claim in seconds"
            ),
        )),
        other => Ok(other),
    }
}

/// The facts of a whole batch, each named by its position; refuses a batch over
/// [`MAX_CHECK_BATCH`].
pub fn batch_from_wire(facts: &[pb::TokenFacts]) -> Result<Vec<TokenFacts<'_>>, WireError> {
    if facts.len() > MAX_CHECK_BATCH {
        return Err(WireError::new(
            "facts",
            format!(
                "{} items is over the limit of {MAX_CHECK_BATCH} per CheckBatch; split the batch",
                facts.len()
            ),
        ));
    }
    facts
        .iter()
        .enumerate()
        .map(|(i, f)| facts_from_wire("", Some(f)).map_err(|e| e.under(&format!("facts[{i}]"))))
        .collect()
}

/// The verdict a caller acts on: the filter's status with the staleness policy applied.
pub fn verdict_to_wire(answer: &Answer) -> pb::Verdict {
    let stale_closed = answer.stale && answer.policy == StalePolicy::FailClosed;
    match answer.status {
        Status::Revoked => pb::Verdict::Revoked,
        _ if stale_closed => pb::Verdict::Revoked,
        Status::PossiblyRevoked => pb::Verdict::PossiblyRevoked,
        Status::Allowed if answer.revoked => pb::Verdict::Revoked,
        Status::Allowed => pb::Verdict::Allowed,
    }
}

/// A staleness policy for the wire.
pub fn policy_to_wire(policy: StalePolicy) -> pb::StalePolicy {
    match policy {
        StalePolicy::FailClosed => pb::StalePolicy::FailClosed,
        StalePolicy::FailOpen => pb::StalePolicy::FailOpen,
    }
}

/// One match for the token `facts` describe: an entry names the namespace it matched under
/// (the token's issuer or its tenant).
pub fn match_to_wire(m: &Match, facts: &TokenFacts<'_>) -> pb::Match {
    let of = match *m {
        Match::Entry { kind, under, exact } => pb::r#match::Of::Entry(pb::EntryMatch {
            kind: kind_to_wire(kind) as i32,
            namespace: match under {
                Namespace::Issuer => facts.iss,
                Namespace::Tenant => facts.tenant.unwrap_or_default(),
            }
            .to_string(),
            exact,
        }),
        Match::Rule { scope, not_before } => pb::r#match::Of::Rule(pb::RuleMatch {
            scope: scope_kind_to_wire(scope) as i32,
            not_before_ms: not_before.as_millis(),
        }),
    };
    pb::Match { of: Some(of) }
}

/// The reply for the token `facts` describe. A subscriber that has never heard from a node
/// has no staleness to report: it sends 0 with `stale` set (and version 0 before any sync).
pub fn reply_to_wire(answer: &Answer, facts: &TokenFacts<'_>) -> pb::CheckReply {
    pb::CheckReply {
        verdict: verdict_to_wire(answer) as i32,
        matches: answer
            .matches
            .iter()
            .map(|m| match_to_wire(m, facts))
            .collect(),
        version: answer.version,
        staleness_ms: answer.staleness_ms.unwrap_or(0),
        stale: answer.stale,
        policy: policy_to_wire(answer.policy) as i32,
        source: source_to_wire(answer.source) as i32,
    }
}

/// Where a verdict comes from, for the wire.
pub fn source_to_wire(source: Source) -> pb::Source {
    match source {
        Source::Local => pb::Source::Local,
        Source::ConfirmedByCluster => pb::Source::Cluster,
        Source::ConfirmedCached => pb::Source::ClusterCached,
        Source::ClusterUnreachable => pb::Source::ClusterUnreachable,
    }
}

/// What a node's reply says of the token `facts` describe, as a verdict of exact matches.
/// Refuses a reply that is not one: an unknown verdict, a POSSIBLY_REVOKED or inexact match
/// (a node answers exactly), a REVOKED without a match, or an entry matched under a namespace
/// that is neither the token's issuer nor its tenant.
pub fn verdict_from_wire(
    reply: &pb::CheckReply,
    facts: &TokenFacts<'_>,
) -> Result<recall_core::Verdict, WireError> {
    let mut matches = Vec::with_capacity(reply.matches.len());
    for (i, m) in reply.matches.iter().enumerate() {
        let field = format!("matches[{i}]");
        let m = match &m.of {
            Some(pb::r#match::Of::Entry(e)) => {
                if !e.exact {
                    return Err(WireError::new(field, "an inexact match from a node"));
                }
                let under = if e.namespace == facts.iss {
                    Namespace::Issuer
                } else if Some(e.namespace.as_str()) == facts.tenant {
                    Namespace::Tenant
                } else {
                    return Err(WireError::new(
                        super::join(&field, "namespace"),
                        "neither the token's issuer nor its tenant",
                    ));
                };
                Match::Entry {
                    kind: kind_from_wire(&field, e.kind)?,
                    under,
                    exact: true,
                }
            }
            Some(pb::r#match::Of::Rule(r)) => Match::Rule {
                scope: scope_kind_from_wire(&field, r.scope)?,
                not_before: recall_core::Timestamp::from_millis(r.not_before_ms),
            },
            None => return Err(WireError::new(field, "empty")),
        };
        matches.push(m);
    }
    let consistent = match pb::Verdict::try_from(reply.verdict) {
        Ok(pb::Verdict::Allowed) => matches.is_empty(),
        Ok(pb::Verdict::Revoked) => !matches.is_empty(),
        _ => false,
    };
    if !consistent {
        return Err(WireError::new(
            "verdict",
            format!(
                "verdict {} with {} matches is not an exact answer",
                reply.verdict,
                matches.len()
            ),
        ));
    }
    Ok(recall_core::Verdict { matches })
}

#[cfg(test)]
mod tests {
    use recall_core::{ScopeKind, Timestamp};

    use super::*;

    fn wire_facts() -> pb::TokenFacts {
        pb::TokenFacts {
            iss: "https://login.example".into(),
            jti: Some("t-1".into()),
            iat: Some(1_700_000_000),
            ..Default::default()
        }
    }

    fn answer(status: Status, revoked: bool, stale: bool, policy: StalePolicy) -> Answer {
        Answer {
            revoked,
            status,
            matches: vec![],
            version: 7,
            stale,
            staleness_ms: Some(12),
            policy,
            source: Source::Local,
        }
    }

    #[test]
    fn facts_borrow_the_message() {
        let w = wire_facts();
        let f = facts_from_wire("facts", Some(&w)).unwrap();
        assert_eq!(f.iss, "https://login.example");
        assert_eq!(f.jti, Some("t-1"));
        assert_eq!(f.iat, Some(1_700_000_000));
        assert_eq!(f.sub, None);
    }

    #[test]
    fn millisecond_iat_is_refused() {
        let mut w = wire_facts();
        w.iat = Some(1_700_000_000_000);
        let err = facts_from_wire("facts", Some(&w)).unwrap_err();
        assert_eq!(err.field, "facts.iat");
        assert!(err.to_string().contains("milliseconds?"), "{err}");
    }

    #[test]
    fn missing_facts_and_issuer_name_the_field() {
        let err = facts_from_wire("facts", None).unwrap_err();
        assert_eq!(err.field, "facts");
        let mut w = wire_facts();
        w.iss.clear();
        let batch = vec![wire_facts(), wire_facts(), wire_facts(), w];
        let err = batch_from_wire(&batch).unwrap_err();
        assert!(
            err.to_string().starts_with("facts[3].iss: missing"),
            "{err}"
        );
    }

    #[test]
    fn empty_optional_field_is_refused() {
        let mut w = wire_facts();
        w.kid = Some(String::new());
        let err = facts_from_wire("facts", Some(&w)).unwrap_err();
        assert_eq!(err.field, "facts.kid");
    }

    #[test]
    fn raw_api_key_is_refused_without_echoing_it() {
        let mut w = wire_facts();
        w.api_key_sha256 = Some("sk_live_SECRET".into());
        let err = facts_from_wire("facts", Some(&w)).unwrap_err();
        assert_eq!(err.field, "facts.api_key_sha256");
        assert!(err.problem.contains("64 lowercase hex"), "{err}");
        assert!(!err.to_string().contains("SECRET"), "{err}");
        w.api_key_sha256 = Some("ab".repeat(32));
        assert!(facts_from_wire("facts", Some(&w)).is_ok());
    }

    #[test]
    fn batch_over_the_limit_names_it() {
        let batch = vec![wire_facts(); MAX_CHECK_BATCH + 1];
        let err = batch_from_wire(&batch).unwrap_err();
        assert!(err.to_string().contains("limit of 10000"), "{err}");
        assert_eq!(
            batch_from_wire(&batch[..MAX_CHECK_BATCH]).unwrap().len(),
            MAX_CHECK_BATCH
        );
    }

    #[test]
    fn verdicts_apply_the_policy() {
        use StalePolicy::{FailClosed, FailOpen};
        let cases = [
            (
                answer(Status::Allowed, false, false, FailClosed),
                pb::Verdict::Allowed,
            ),
            (
                answer(Status::Revoked, true, false, FailOpen),
                pb::Verdict::Revoked,
            ),
            (
                answer(Status::Allowed, true, true, FailClosed),
                pb::Verdict::Revoked,
            ),
            (
                answer(Status::Allowed, false, true, FailOpen),
                pb::Verdict::Allowed,
            ),
            (
                answer(Status::PossiblyRevoked, true, false, FailClosed),
                pb::Verdict::PossiblyRevoked,
            ),
            (
                answer(Status::PossiblyRevoked, true, true, FailClosed),
                pb::Verdict::Revoked,
            ),
        ];
        for (a, want) in cases {
            assert_eq!(verdict_to_wire(&a), want, "{a:?}");
        }
    }

    #[test]
    fn reply_carries_matches_version_and_staleness() {
        let mut a = answer(Status::Revoked, true, false, StalePolicy::FailClosed);
        a.matches = vec![
            Match::Entry {
                kind: Kind::Session,
                under: Namespace::Tenant,
                exact: true,
            },
            Match::Rule {
                scope: ScopeKind::Subject,
                not_before: Timestamp(5_000),
            },
        ];
        let facts = TokenFacts {
            iss: "iss",
            tenant: Some("acme"),
            ..TokenFacts::default()
        };
        let r = reply_to_wire(&a, &facts);
        assert_eq!(r.verdict, pb::Verdict::Revoked as i32);
        assert_eq!((r.version, r.staleness_ms, r.stale), (7, 12, false));
        assert_eq!(r.policy, pb::StalePolicy::FailClosed as i32);
        let entry = pb::r#match::Of::Entry(pb::EntryMatch {
            kind: pb::Kind::Session as i32,
            namespace: "acme".into(),
            exact: true,
        });
        let rule = pb::r#match::Of::Rule(pb::RuleMatch {
            scope: pb::ScopeKind::Subject as i32,
            not_before_ms: 5_000,
        });
        let of: Vec<_> = r.matches.into_iter().map(|m| m.of.unwrap()).collect();
        assert_eq!(of, [entry, rule]);
    }
}
