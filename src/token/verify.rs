//! The verifier: a bearer token in, its verified facts out, or the reason it is refused.
//!
//! In order: the size limit; the token taken apart (`alg` never `none`, no `crit`); the issuer's
//! policy chosen by the exact `iss`; the algorithm on its allowlist; the key chosen by `kid`
//! and checked to fit the algorithm; the signature; then the claims: `aud` exactly, `exp`
//! required, `nbf` and `iat` not in the future, `exp - iat` within the lifetime, the required
//! claims present. Time checks read an injected clock, and allow the issuer's leeway.

use std::collections::HashMap;
use std::sync::Arc;

use jsonwebtoken::Algorithm;
use recall_core::TokenFacts;
use serde_json::{Map, Value};

use super::cache::VerifiedCache;
use super::claims::{self, Parsed};
use super::jwks::KeyStore;
use super::policy::IssuerPolicy;
use super::reason::{Reason, Rejection};
use crate::node::clock::Clock;

/// What a verified token says, as the revocation check and the proxy need it.
#[derive(Clone, Debug, PartialEq)]
pub struct Verified {
    /// `iss`.
    pub iss: String,
    /// `sub`.
    pub sub: Option<String>,
    /// `jti`.
    pub jti: Option<String>,
    /// `sid`.
    pub sid: Option<String>,
    /// `azp`, else `client_id`.
    pub client: Option<String>,
    /// The `kid` header.
    pub kid: Option<String>,
    /// The tenant, from the issuer's `tenant_claim`.
    pub tenant: Option<String>,
    /// `iat`, unix seconds.
    pub iat: Option<i64>,
    /// `exp`, unix seconds.
    pub exp: i64,
    /// Every claim, for a proxy that passes them on.
    pub claims: Map<String, Value>,
}

impl Verified {
    /// The facts of claims verified elsewhere (for example by a proxy's JWT filter), with the
    /// tenant read from `tenant_claim`. Refuses claims without `iss`, ill-typed claims and an
    /// `iat` that is not seconds.
    pub fn from_claims(
        claims: Map<String, Value>,
        tenant_claim: Option<&str>,
    ) -> Result<Self, Rejection> {
        let s = |name: &str| claims::string(&claims, name).map(|v| v.map(str::to_string));
        let iss = s("iss")?.ok_or_else(|| {
            Rejection::new(Reason::Malformed, "the verified payload has no `iss` claim")
        })?;
        Ok(Self {
            iss,
            sub: s("sub")?,
            jti: s("jti")?,
            sid: s("sid")?,
            client: match s("azp")? {
                Some(azp) => Some(azp),
                None => s("client_id")?,
            },
            kid: None,
            tenant: match tenant_claim {
                Some(name) => s(name)?,
                None => None,
            },
            iat: claims::seconds(&claims, "iat")?,
            exp: claims::seconds(&claims, "exp")?.unwrap_or(0),
            claims,
        })
    }

    /// The facts to check for revocation.
    pub fn facts(&self) -> TokenFacts<'_> {
        TokenFacts {
            iss: &self.iss,
            tenant: self.tenant.as_deref(),
            jti: self.jti.as_deref(),
            sid: self.sid.as_deref(),
            sub: self.sub.as_deref(),
            client: self.client.as_deref(),
            kid: self.kid.as_deref(),
            api_key: None,
            iat: self.iat,
        }
    }
}

/// One configured issuer: its policy, allowed algorithms and keys.
struct Issuer {
    policy: IssuerPolicy,
    algorithms: Vec<Algorithm>,
    keys: KeyStore,
}

/// How many verifications are remembered (about 1 KiB each).
pub const CACHE_CAPACITY: usize = 16 * 1024;

/// Verifies bearer tokens of the configured issuers.
pub struct Verifier {
    issuers: HashMap<String, Issuer>,
    clock: Clock,
    max_token_bytes: usize,
    cache: VerifiedCache,
}

impl Verifier {
    /// Checks every policy, loads each issuer's keys and starts keeping them fresh; remembers
    /// up to [`CACHE_CAPACITY`] verifications.
    pub async fn start(policies: Vec<IssuerPolicy>, clock: Clock) -> anyhow::Result<Arc<Self>> {
        Self::start_with_cache(policies, clock, CACHE_CAPACITY).await
    }

    /// As [`Verifier::start`], remembering up to `cache_capacity` verifications (0: none, every
    /// token is verified in full).
    pub async fn start_with_cache(
        policies: Vec<IssuerPolicy>,
        clock: Clock,
        cache_capacity: usize,
    ) -> anyhow::Result<Arc<Self>> {
        let mut issuers = HashMap::new();
        for policy in policies {
            policy.validate()?;
            if issuers.contains_key(&policy.issuer) {
                anyhow::bail!(
                    "issuer {:?} is configured twice: merge its [[issuer]] tables",
                    policy.issuer
                );
            }
            let algorithms = policy.checked_algorithms()?;
            let keys = KeyStore::start(&policy).await?;
            issuers.insert(
                policy.issuer.clone(),
                Issuer {
                    policy,
                    algorithms,
                    keys,
                },
            );
        }
        let max_token_bytes = issuers
            .values()
            .map(|i| i.policy.max_token_bytes)
            .max()
            .unwrap_or(0);
        Ok(Arc::new(Self {
            issuers,
            clock,
            max_token_bytes,
            cache: VerifiedCache::new(cache_capacity),
        }))
    }

    /// The issuers configured.
    pub fn issuers(&self) -> impl Iterator<Item = &str> {
        self.issuers.keys().map(String::as_str)
    }

    /// The claim that names the tenant of `iss`'s tokens, if its policy has one.
    pub fn tenant_claim(&self, iss: &str) -> Option<&str> {
        self.issuers.get(iss)?.policy.tenant_claim.as_deref()
    }

    /// Verifies `token`; a token naming an unknown `kid` of a URL source makes the keys be
    /// fetched again (at most once per `jwks_min_refresh_s`) and is checked once more.
    pub async fn verify(&self, token: &str) -> Result<Arc<Verified>, Rejection> {
        match self.verify_now(token) {
            Err(r) if r.reason == Reason::UnknownKey => {
                let refetched = match self.issuer_of(token) {
                    Some(issuer) => issuer.keys.refetch().await,
                    None => false,
                };
                if refetched {
                    self.verify_now(token)
                } else {
                    Err(r)
                }
            }
            other => other,
        }
    }

    /// Verifies `token` with the keys at hand, never waiting. A token verified before, with
    /// keys still current, and not expired since, is not checked again.
    pub fn verify_now(&self, token: &str) -> Result<Arc<Verified>, Rejection> {
        let now = (self.clock)().as_millis().div_euclid(1000);
        let generation = |iss: &str| self.issuers.get(iss)?.keys.generation();
        if let Some(v) = self.cache.get(token, now, generation) {
            return Ok(v);
        }
        let (verified, generation, until) = self.verify_uncached(token, now)?;
        let verified = Arc::new(verified);
        self.cache
            .insert(token, verified.clone(), generation, until);
        Ok(verified)
    }

    /// The whole verification, every time; also the key set generation used and the last
    /// second the answer holds.
    fn verify_uncached(&self, token: &str, now: i64) -> Result<(Verified, u64, i64), Rejection> {
        let parsed = claims::parse(token, self.max_token_bytes)?;
        let iss = claims::string(&parsed.claims, "iss")?
            .ok_or_else(|| Rejection::new(Reason::WrongIssuer, "the token has no `iss` claim"))?;
        let issuer = self.issuers.get(iss).ok_or_else(|| {
            let shown: String = iss.chars().take(128).collect();
            Rejection::new(
                Reason::WrongIssuer,
                format!("no issuer {shown:?} is configured"),
            )
        })?;
        let (verified, generation) = issuer.verify(token, parsed, now)?;
        let until = verified.exp + issuer.policy.leeway_s as i64 - 1;
        Ok((verified, generation, until))
    }

    fn issuer_of(&self, token: &str) -> Option<&Issuer> {
        let parsed = claims::parse(token, self.max_token_bytes).ok()?;
        let iss = claims::string(&parsed.claims, "iss").ok()??;
        self.issuers.get(iss)
    }
}

impl Issuer {
    fn verify(
        &self,
        token: &str,
        parsed: Parsed<'_>,
        now: i64,
    ) -> Result<(Verified, u64), Rejection> {
        let p = &self.policy;
        if token.len() > p.max_token_bytes {
            return Err(Rejection::new(
                Reason::Malformed,
                format!(
                    "the token is {} bytes, over this issuer's limit of {}",
                    token.len(),
                    p.max_token_bytes
                ),
            ));
        }
        if !self.algorithms.contains(&parsed.alg) {
            return Err(Rejection::new(
                Reason::AlgorithmNotAllowed,
                format!("{:?} is not allowed for this issuer", parsed.alg),
            ));
        }
        let (verified, generation) =
            self.keys
                .with_key(parsed.alg, parsed.kid.as_deref(), |key| {
                    jsonwebtoken::crypto::verify(
                        parsed.signature,
                        parsed.message.as_bytes(),
                        &key.key,
                        parsed.alg,
                    )
                })?;
        match verified {
            Ok(true) => {}
            Ok(false) => {
                return Err(Rejection::new(
                    Reason::BadSignature,
                    "the signature does not verify",
                ));
            }
            Err(e) => {
                return Err(Rejection::new(
                    Reason::BadSignature,
                    format!("the signature cannot be checked: {e}"),
                ));
            }
        }
        self.claims(parsed, now).map(|v| (v, generation))
    }

    /// The claim checks, on a token whose signature verified.
    fn claims(&self, parsed: Parsed<'_>, now: i64) -> Result<Verified, Rejection> {
        let p = &self.policy;
        let c = &parsed.claims;
        let leeway = p.leeway_s as i64;
        if !claims::audience_matches(c, &p.audiences)? {
            return Err(Rejection::new(
                Reason::WrongAudience,
                format!("the token's `aud` names none of {}", p.audiences.join(", ")),
            ));
        }
        let exp = claims::seconds(c, "exp")?
            .ok_or_else(|| Rejection::new(Reason::Malformed, "the token has no `exp` claim"))?;
        if exp + leeway <= now {
            return Err(Rejection::new(
                Reason::Expired,
                format!("it expired {}s ago", now - exp),
            ));
        }
        if let Some(nbf) = claims::seconds(c, "nbf")?
            && nbf > now + leeway
        {
            return Err(Rejection::new(
                Reason::NotYetValid,
                format!("it is not valid before {nbf} ({}s from now)", nbf - now),
            ));
        }
        let iat = claims::seconds(c, "iat")?;
        match iat {
            Some(iat) if iat > now + leeway => {
                return Err(Rejection::new(
                    Reason::NotYetValid,
                    format!("it says it was issued {}s in the future", iat - now),
                ));
            }
            None if p.require_iat => {
                return Err(Rejection::new(
                    Reason::Malformed,
                    "the token has no `iat` claim, which this issuer requires",
                ));
            }
            _ => {}
        }
        let lifetime = exp - iat.unwrap_or(now);
        if lifetime > p.max_lifetime_s as i64 {
            return Err(Rejection::new(
                Reason::LifetimeTooLong,
                format!(
                    "it lives {lifetime}s, over this issuer's maximum of {}s",
                    p.max_lifetime_s
                ),
            ));
        }
        for name in &p.required_claims {
            if matches!(c.get(name), None | Some(Value::Null)) {
                return Err(Rejection::new(
                    Reason::Malformed,
                    format!("the required claim `{name}` is missing"),
                ));
            }
        }
        let mut v = Verified::from_claims(parsed.claims, p.tenant_claim.as_deref())?;
        v.kid = parsed.kid;
        v.exp = exp;
        Ok(v)
    }
}
