//! What every bearer-token face of the sidecar shares: the subscriber and the verifier, the
//! `Authorization` header read, and verified values made safe to pass on as headers.

use std::sync::Arc;

use crate::subscriber::Subscriber;
use crate::token::{Reason, Rejection, TokenVerdict, Verified, Verifier};

/// Checks bearer tokens: verification, then revocation, as one verdict.
pub struct Bearer {
    /// The revocation state.
    pub subscriber: Arc<Subscriber>,
    /// The issuers' policies and keys; `None` when the sidecar was given no issuers file.
    pub verifier: Option<Arc<Verifier>>,
    /// Whether an allowed request carries every verified claim on (`X-Recall-Claims`).
    pub pass_claims: bool,
    /// Checks counted by face and verdict.
    pub metrics: Arc<super::metrics::SidecarMetrics>,
}

/// Why there is no verdict to give.
pub const NO_ISSUERS: &str = "this sidecar verifies no issuer's tokens: start it with \
                              --issuers FILE (an [[issuer]] table per issuer)";

impl Bearer {
    /// The verdict on `token`, or `None` when no issuer is configured.
    pub async fn check(&self, token: &str) -> Option<TokenVerdict> {
        let verifier = self.verifier.as_ref()?;
        let verified = verifier.verify(token).await;
        Some(self.decide(verified).await)
    }

    /// The verdict on a verification result: a verified token is checked for revocation (a
    /// lite-mode hit confirmed with the cluster), and the verdict is counted.
    pub async fn decide(&self, verified: Result<Arc<Verified>, Rejection>) -> TokenVerdict {
        let v = match verified {
            Ok(v) => v,
            Err(r) => return self.counted(TokenVerdict::rejected(r)),
        };
        let answer = self.subscriber.check_confirmed(&v.facts()).await;
        self.counted(TokenVerdict::of(v, answer))
    }

    /// The verdict on a request refused before any token was read (no header, another scheme).
    pub fn refuse(&self, why: Rejection) -> TokenVerdict {
        self.counted(TokenVerdict::rejected(why))
    }

    /// `v`, counted in the metrics.
    pub fn counted(&self, v: TokenVerdict) -> TokenVerdict {
        self.metrics.token(v.verdict);
        v
    }
}

/// The token in an `Authorization` header value: `Bearer <token>`, the scheme in any case
/// (RFC 6750 section 2.1).
pub fn from_authorization(value: &[u8]) -> Result<&str, Rejection> {
    let refuse = |why: &str| Rejection::new(Reason::Malformed, why);
    let value = std::str::from_utf8(value)
        .map_err(|_| refuse("the Authorization header is not text"))?
        .trim();
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| refuse("the Authorization header is not `Bearer <token>`"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(refuse(
            "the Authorization header uses another scheme: send `Bearer <token>`",
        ));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(refuse("the Authorization header has an empty token"));
    }
    Ok(token)
}

/// `s` as a header value: visible ASCII and spaces stay, `%` and every other byte become `%XX`,
/// so a claim can never split or forge a header.
pub fn header_safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `s` inside an RFC 6750 quoted `error_description`: only %x20-21 / %x23-5B / %x5D-7E, so
/// quotes, backslashes and anything else become `'`, `/` or `?`; cut to 256 bytes.
pub fn quoted_safe(s: &str) -> String {
    s.chars()
        .take(256)
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            ' '..='~' => c,
            _ => '?',
        })
        .collect()
}

/// The `WWW-Authenticate` value for a refused token (RFC 6750 section 3).
pub fn challenge(error: &str, description: &str) -> String {
    format!(
        "Bearer realm=\"recall\", error=\"{error}\", error_description=\"{}\"",
        quoted_safe(description)
    )
}

/// The headers an allowed request carries on: who it is, as verified.
pub fn identity_headers(v: &TokenVerdict, pass_claims: bool) -> Vec<(&'static str, String)> {
    let mut out = vec![("x-recall-verdict", v.verdict.as_str().to_string())];
    for (name, value) in [
        ("x-recall-issuer", &v.issuer),
        ("x-recall-subject", &v.subject),
        ("x-recall-client", &v.client),
        ("x-recall-tenant", &v.tenant),
    ] {
        if let Some(value) = value {
            out.push((name, header_safe(value)));
        }
    }
    if pass_claims && let Some(verified) = &v.verified {
        use base64::Engine;
        let json = serde_json::to_vec(&verified.claims).unwrap_or_default();
        out.push((
            "x-recall-claims",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_in_any_case() {
        assert_eq!(from_authorization(b"Bearer abc").unwrap(), "abc");
        assert_eq!(from_authorization(b"bearer  abc ").unwrap(), "abc");
        assert!(from_authorization(b"Basic dXNlcg==").is_err());
        assert!(from_authorization(b"Bearer").is_err());
        assert!(from_authorization(b"Bearer ").is_err());
        assert!(from_authorization(&[0xff, 0x20, 0x41]).is_err());
    }

    #[test]
    fn values_cannot_break_headers() {
        assert_eq!(header_safe("alice"), "alice");
        assert_eq!(header_safe("a\r\nx-admin: 1"), "a%0D%0Ax-admin: 1");
        assert_eq!(header_safe("100%é"), "100%25%C3%A9");
        let c = challenge("invalid_token", "say \"hi\"\\\n");
        assert!(c.ends_with("error_description=\"say 'hi'/?\""), "{c}");
    }
}
