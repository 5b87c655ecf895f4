//! One verdict for a bearer token: verification and the revocation check together, with the
//! reason and a sentence that says why.

use recall_core::{Match, Namespace, Status, TokenFacts};
use serde::Serialize;
use std::sync::Arc;

use super::reason::{Reason, Rejection};
use super::verify::Verified;
use crate::subscriber::{Answer, Source, StalePolicy};

/// The answer for one bearer token.
#[derive(Clone, Debug, Serialize)]
pub struct TokenVerdict {
    /// The verdict.
    pub verdict: Reason,
    /// Why, for a person (never the token itself).
    pub description: String,
    /// What revoked it, when it is `revoked`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<Match>,
    /// The version of the revocation state that answered (0 when the token was refused before
    /// the revocation check).
    pub version: u64,
    /// Whether that state is past its staleness bound.
    pub stale: bool,
    /// Where the revocation answer comes from: the local filter, or (a lite-mode hit) the
    /// cluster; `local` when the token was refused before the revocation check.
    pub source: Source,
    /// The verified issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The verified subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The verified client (`azp` or `client_id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The verified tenant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The verified token (for a proxy that passes its claims on; not in the JSON answer).
    #[serde(skip)]
    pub verified: Option<Arc<Verified>>,
}

impl TokenVerdict {
    /// A token refused before the revocation check.
    pub fn rejected(r: Rejection) -> Self {
        Self {
            verdict: r.reason,
            description: r.detail,
            matches: vec![],
            version: 0,
            stale: false,
            source: Source::Local,
            issuer: None,
            subject: None,
            client: None,
            tenant: None,
            verified: None,
        }
    }

    /// The verdict on a verification result, checking a verified token with `check`.
    pub fn decide(
        verified: Result<Arc<Verified>, Rejection>,
        check: impl FnOnce(&TokenFacts<'_>) -> Answer,
    ) -> Self {
        let v = match verified {
            Ok(v) => v,
            Err(r) => return Self::rejected(r),
        };
        let answer = check(&v.facts());
        Self::of(v, answer)
    }

    /// The verdict on a verified token whose revocation check answered `answer`.
    pub fn of(v: Arc<Verified>, answer: Answer) -> Self {
        let facts = v.facts();
        let (verdict, description) = if answer.status != Status::Allowed {
            (
                Reason::Revoked,
                describe_matches(&answer.matches, &facts, answer.source),
            )
        } else if answer.revoked {
            (Reason::Stale, describe_stale(&answer))
        } else if answer.stale {
            (
                Reason::Allowed,
                format!("verified and not revoked, but {}", describe_stale(&answer)),
            )
        } else {
            let how = match answer.source {
                Source::ConfirmedByCluster | Source::ConfirmedCached => {
                    " (a lite-mode filter hit the cluster confirmed was not revoked)"
                }
                _ => "",
            };
            (Reason::Allowed, format!("verified and not revoked{how}"))
        };
        Self {
            verdict,
            description,
            matches: answer.matches,
            version: answer.version,
            stale: answer.stale,
            source: answer.source,
            issuer: Some(v.iss.clone()),
            subject: v.sub.clone(),
            client: v.client.clone(),
            tenant: v.tenant.clone(),
            verified: Some(v.clone()),
        }
    }
}

fn describe_stale(answer: &Answer) -> String {
    let age = match answer.staleness_ms {
        Some(ms) => format!("last heard from the cluster {ms} ms ago"),
        None => "has never synchronised with the cluster".to_string(),
    };
    let policy = match answer.policy {
        StalePolicy::FailClosed => "fail-closed",
        StalePolicy::FailOpen => "fail-open",
    };
    format!("the revocation state is stale: it {age} (policy {policy})")
}

fn describe_matches(matches: &[Match], facts: &TokenFacts<'_>, source: Source) -> String {
    let parts: Vec<String> = matches
        .iter()
        .map(|m| match *m {
            Match::Entry { kind, under, exact } => {
                let ns = match under {
                    Namespace::Issuer => format!("issuer {}", facts.iss),
                    Namespace::Tenant => format!("tenant {}", facts.tenant.unwrap_or_default()),
                };
                let certainty = match (exact, source) {
                    (true, Source::ConfirmedByCluster | Source::ConfirmedCached) => {
                        " (a lite-mode filter hit, confirmed by the cluster)"
                    }
                    (true, _) => "",
                    (false, Source::ClusterUnreachable) => {
                        " (possibly: a lite-mode filter hit no node of the cluster could confirm)"
                    }
                    (false, _) => " (possibly: a lite-mode filter hit)",
                };
                format!("its {kind} is revoked under {ns}{certainty}")
            }
            Match::Rule { scope, not_before } => format!(
                "a {scope} rule revokes tokens issued before {} ms",
                not_before.as_millis()
            ),
        })
        .collect();
    format!("revoked: {}", parts.join("; "))
}
