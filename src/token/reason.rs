//! Why a bearer token is good or not: one code a proxy or service can branch on, and a sentence
//! for the person reading the log.

use serde::Serialize;

/// The verdict on a bearer token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Verified, and nothing revoked it.
    Allowed,
    /// Verified, and an entry or a rule revoked it (the matches say which).
    Revoked,
    /// Its `exp` has passed (beyond the leeway).
    Expired,
    /// Its `nbf`, or its `iat`, is in the future (beyond the leeway).
    NotYetValid,
    /// The signature does not verify with the key the token names.
    BadSignature,
    /// No key of the issuer's key set matches the token's `kid` (even after a refetch).
    UnknownKey,
    /// The token's `alg` is not allowed for its issuer, or does not fit the key it names.
    AlgorithmNotAllowed,
    /// No issuer is configured for the token's `iss`.
    WrongIssuer,
    /// The token's `aud` names none of the issuer's audiences.
    WrongAudience,
    /// `exp - iat` is over the issuer's maximum lifetime.
    LifetimeTooLong,
    /// Not a JWT this sidecar accepts: bad encoding, missing or ill-typed claims, too large,
    /// unknown critical headers.
    Malformed,
    /// Verified, but the revocation state is stale and the policy is fail-closed.
    Stale,
}

impl Reason {
    /// Every reason, for documentation and tests.
    pub const ALL: [Reason; 12] = [
        Reason::Allowed,
        Reason::Revoked,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::BadSignature,
        Reason::UnknownKey,
        Reason::AlgorithmNotAllowed,
        Reason::WrongIssuer,
        Reason::WrongAudience,
        Reason::LifetimeTooLong,
        Reason::Malformed,
        Reason::Stale,
    ];

    /// The code as it appears in JSON and headers.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Allowed => "allowed",
            Reason::Revoked => "revoked",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::BadSignature => "bad_signature",
            Reason::UnknownKey => "unknown_key",
            Reason::AlgorithmNotAllowed => "algorithm_not_allowed",
            Reason::WrongIssuer => "wrong_issuer",
            Reason::WrongAudience => "wrong_audience",
            Reason::LifetimeTooLong => "lifetime_too_long",
            Reason::Malformed => "malformed",
            Reason::Stale => "stale",
        }
    }

    /// Whether the request may go on.
    pub const fn allows(self) -> bool {
        matches!(self, Reason::Allowed)
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A token refused before the revocation check: the reason and what exactly was wrong. The
/// detail never contains the token or a secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Rejection {
    /// The verdict.
    pub reason: Reason,
    /// What was wrong, for a person.
    pub detail: String,
}

impl Rejection {
    /// A rejection for `reason`.
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}
