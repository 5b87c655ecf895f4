//! A Security Event Token (RFC 8417) taken apart and verified against its transmitter: the
//! `secevent+jwt` type, the exact `iss`, an asymmetric signature by a key of the transmitter's
//! JWKS (`none`, HMAC and a key of the wrong type never pass), the `aud`, a `jti`, an `iat`
//! within the transmitter's window, and exactly one event. Each refusal carries the RFC 8935
//! error code the transmitter is told.

use std::collections::HashMap;

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use super::config::{SsfConfig, TransmitterConfig, read_token};
use crate::token::claims;
use crate::token::jwks::KeyStore;
use crate::token::{Reason, Rejection};

/// The longest `jti` accepted, in bytes.
pub const MAX_JTI_BYTES: usize = 256;

/// The error codes of RFC 8935 section 2.4 (and RFC 8936's `setErrs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// Not a SET, or its event payload does not conform to the event's definition.
    InvalidRequest,
    /// The signing key is unknown or unacceptable, or the signature does not verify.
    InvalidKey,
    /// No transmitter is configured for the `iss`.
    InvalidIssuer,
    /// The `aud` is not this receiver's.
    InvalidAudience,
    /// The push did not carry the transmitter's authorization.
    AuthenticationFailed,
    /// The transmitter may not act on what the event names.
    AccessDenied,
}

impl ErrorCode {
    /// The code as the RFC spells it.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidKey => "invalid_key",
            ErrorCode::InvalidIssuer => "invalid_issuer",
            ErrorCode::InvalidAudience => "invalid_audience",
            ErrorCode::AuthenticationFailed => "authentication_failed",
            ErrorCode::AccessDenied => "access_denied",
        }
    }
}

/// Why a SET is refused: a code for the transmitter and a sentence for the person reading it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} ({})", .description, .code.as_str())]
pub struct SetError {
    /// The RFC 8935 code.
    pub code: ErrorCode,
    /// What was wrong.
    pub description: String,
}

impl SetError {
    /// A refusal with `code`.
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
        }
    }
}

fn invalid(description: impl Into<String>) -> SetError {
    SetError::new(ErrorCode::InvalidRequest, description)
}

impl From<Rejection> for SetError {
    fn from(r: Rejection) -> Self {
        let code = match r.reason {
            Reason::AlgorithmNotAllowed | Reason::BadSignature | Reason::UnknownKey => {
                ErrorCode::InvalidKey
            }
            Reason::WrongIssuer => ErrorCode::InvalidIssuer,
            Reason::WrongAudience => ErrorCode::InvalidAudience,
            _ => ErrorCode::InvalidRequest,
        };
        SetError::new(code, r.detail)
    }
}

/// A verified SET.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedSet {
    /// `iss`: the transmitter.
    pub iss: String,
    /// `jti`.
    pub jti: String,
    /// `iat`, unix seconds.
    pub iat: i64,
    /// The event type (the one member of `events`).
    pub event: String,
    /// The event's payload.
    pub payload: Map<String, Value>,
    /// The subject: the top-level `sub_id` (SSF 1.0), else the payload's `subject` (earlier
    /// drafts).
    pub subject: Option<Map<String, Value>>,
}

/// How a SET arrived.
#[derive(Clone, Copy, Debug)]
pub enum Delivery<'a> {
    /// Pushed to us, with the request's `Authorization` header if it had one.
    Push {
        /// The header's value.
        authorization: Option<&'a str>,
    },
    /// Fetched by our poller from the transmitter's endpoint.
    Poll,
}

/// One configured transmitter, ready to verify.
pub struct Transmitter {
    /// What the file says.
    pub config: TransmitterConfig,
    algorithms: Vec<Algorithm>,
    keys: KeyStore,
    push_token: Option<String>,
}

/// Every configured transmitter, by `iss`.
pub struct Transmitters {
    by_issuer: HashMap<String, Transmitter>,
    audience: String,
    max_bytes: usize,
}

impl Transmitters {
    /// Loads each transmitter's keys and starts keeping them fresh.
    pub async fn start(config: &SsfConfig) -> anyhow::Result<Self> {
        let mut by_issuer = HashMap::new();
        for t in &config.transmitters {
            let policy = t.key_policy(&config.audience);
            let push_token = match &t.push_token_file {
                Some(path) => Some(read_token(
                    &format!("transmitter {:?}: push_token_file", t.issuer),
                    path,
                )?),
                None => None,
            };
            by_issuer.insert(
                t.issuer.clone(),
                Transmitter {
                    config: t.clone(),
                    algorithms: policy.checked_algorithms()?,
                    keys: KeyStore::start(&policy).await?,
                    push_token,
                },
            );
        }
        Ok(Self {
            by_issuer,
            audience: config.audience.clone(),
            max_bytes: config.max_set_bytes,
        })
    }

    /// The transmitter of `iss`.
    pub fn get(&self, iss: &str) -> Option<&Transmitter> {
        self.by_issuer.get(iss)
    }

    /// Verifies `set` delivered by `delivery` at `now` (unix seconds); a SET naming an unknown
    /// `kid` of a URL source makes the keys be fetched again (rate-limited) and is checked once
    /// more.
    pub async fn verify(
        &self,
        set: &str,
        delivery: Delivery<'_>,
        now: i64,
    ) -> Result<(VerifiedSet, &Transmitter), SetError> {
        let parsed = claims::parse(set, self.max_bytes)?;
        match parsed
            .typ
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("secevent+jwt" | "application/secevent+jwt") => {}
            other => {
                return Err(invalid(format!(
                    "the header's `typ` is {}, not `secevent+jwt`: a SET must say it is one (so \
                     that no other signed JWT, such as an access token, passes for one)",
                    other.map_or("missing".to_string(), |t| format!("{t:?}"))
                )));
            }
        }
        let iss = claims::string(&parsed.claims, "iss")?
            .ok_or_else(|| SetError::new(ErrorCode::InvalidIssuer, "the SET has no `iss`"))?;
        let t = self.by_issuer.get(iss).ok_or_else(|| {
            let shown: String = iss.chars().take(128).collect();
            SetError::new(
                ErrorCode::InvalidIssuer,
                format!("no transmitter {shown:?} is configured"),
            )
        })?;
        if let Delivery::Push { authorization } = delivery {
            t.authorize(authorization)?;
        }
        if !t.algorithms.contains(&parsed.alg) {
            return Err(SetError::new(
                ErrorCode::InvalidKey,
                format!("{:?} is not allowed for this transmitter", parsed.alg),
            ));
        }
        let check = |p: &claims::Parsed<'_>| -> Result<bool, Rejection> {
            let (ok, _) = t.keys.with_key(p.alg, p.kid.as_deref(), |key| {
                jsonwebtoken::crypto::verify(p.signature, p.message.as_bytes(), &key.key, p.alg)
            })?;
            Ok(ok.unwrap_or(false))
        };
        let good = match check(&parsed) {
            Err(r) if r.reason == Reason::UnknownKey && t.keys.refetch().await => check(&parsed)?,
            other => other?,
        };
        if !good {
            return Err(SetError::new(
                ErrorCode::InvalidKey,
                "the signature does not verify with the transmitter's key",
            ));
        }
        let v = self.claims(t, parsed.claims, now)?;
        Ok((v, t))
    }

    /// The claim checks of a SET whose signature verified.
    fn claims(
        &self,
        t: &Transmitter,
        mut c: Map<String, Value>,
        now: i64,
    ) -> Result<VerifiedSet, SetError> {
        let cfg = &t.config;
        let leeway = cfg.leeway_s as i64;
        if !claims::audience_matches(&c, std::slice::from_ref(&self.audience))? {
            return Err(SetError::new(
                ErrorCode::InvalidAudience,
                format!("the SET's `aud` does not name {:?}", self.audience),
            ));
        }
        let jti = claims::string(&c, "jti")?
            .ok_or_else(|| invalid("the SET has no `jti`"))?
            .to_string();
        if jti.is_empty() || jti.len() > MAX_JTI_BYTES {
            return Err(invalid(format!(
                "the `jti` must hold 1 to {MAX_JTI_BYTES} bytes"
            )));
        }
        let iat = claims::seconds(&c, "iat")?.ok_or_else(|| invalid("the SET has no `iat`"))?;
        if iat > now + leeway {
            return Err(invalid(format!(
                "the SET says it was issued {}s in the future (leeway {leeway}s)",
                iat - now
            )));
        }
        if iat < now - cfg.max_age_s as i64 {
            return Err(invalid(format!(
                "the SET was issued {}s ago, over this transmitter's max_age_s ({}s): a replay, \
                 or a delivery too late to be told from one",
                now - iat,
                cfg.max_age_s
            )));
        }
        if let Some(exp) = claims::seconds(&c, "exp")?
            && exp + leeway <= now
        {
            return Err(invalid(format!("the SET expired {}s ago", now - exp)));
        }
        let events = match c.remove("events") {
            Some(Value::Object(events)) => events,
            Some(_) => return Err(invalid("the `events` claim is not a JSON object")),
            None => return Err(invalid("the SET has no `events` claim")),
        };
        if events.len() != 1 {
            return Err(invalid(format!(
                "the SET holds {} events; SSF 1.0 allows exactly one per SET",
                events.len()
            )));
        }
        let (event, payload) = events.into_iter().next().expect("one event");
        let Value::Object(mut payload) = payload else {
            return Err(invalid(format!(
                "the payload of {event} is not a JSON object"
            )));
        };
        let subject = match c.remove("sub_id").or_else(|| payload.remove("subject")) {
            None | Some(Value::Null) => None,
            Some(Value::Object(s)) => Some(s),
            Some(_) => return Err(invalid("the subject (`sub_id`) is not a JSON object")),
        };
        Ok(VerifiedSet {
            iss: cfg.issuer.clone(),
            jti,
            iat,
            event,
            payload,
            subject,
        })
    }
}

impl Transmitter {
    /// Checks a push's `Authorization` header against the configured token, if any.
    fn authorize(&self, header: Option<&str>) -> Result<(), SetError> {
        let Some(expected) = &self.push_token else {
            return Ok(());
        };
        let given = header
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim);
        match given {
            Some(g) if bool::from(g.as_bytes().ct_eq(expected.as_bytes())) => Ok(()),
            Some(_) => Err(SetError::new(
                ErrorCode::AuthenticationFailed,
                "the Authorization header's bearer token is not this transmitter's",
            )),
            None => Err(SetError::new(
                ErrorCode::AuthenticationFailed,
                "this transmitter's pushes must carry `Authorization: Bearer <token>` (its \
                 push_token_file)",
            )),
        }
    }
}
