//! A compact JWS taken apart, once: the header and the claims decoded and typed, the signing
//! input and signature kept for the signature check. Nothing here trusts the token: it is how
//! the verifier learns which issuer's policy and which key to check it with.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::reason::{Reason, Rejection};

/// A token taken apart, not yet verified.
#[derive(Debug)]
pub struct Parsed<'t> {
    /// The `alg` header, one the crate knows (never `none`).
    pub alg: Algorithm,
    /// The `kid` header.
    pub kid: Option<String>,
    /// The `typ` header (`JWT`, `at+jwt`, `secevent+jwt`...).
    pub typ: Option<String>,
    /// The claims.
    pub claims: Map<String, Value>,
    /// `header.payload`: what the signature covers.
    pub message: &'t str,
    /// The signature, base64url.
    pub signature: &'t str,
}

fn malformed(detail: impl Into<String>) -> Rejection {
    Rejection::new(Reason::Malformed, detail)
}

/// Takes a compact JWS apart. Refuses what is not one, an `alg` that is `none` or unknown, and
/// any `crit` header (no extension is understood, so none may be required).
pub fn parse(token: &str, max_bytes: usize) -> Result<Parsed<'_>, Rejection> {
    if token.len() > max_bytes {
        return Err(malformed(format!(
            "the token is {} bytes, over the limit of {max_bytes}",
            token.len()
        )));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed(
            "not a JWT: expected three base64url parts separated by dots (an encrypted JWE \
             has five and is not accepted)",
        ));
    };
    let message = &token[..header.len() + 1 + payload.len()];
    let header = object("header", header)?;
    let alg = match header.get("alg") {
        Some(Value::String(a)) => a.as_str(),
        _ => return Err(malformed("the header has no `alg` string")),
    };
    let alg: Algorithm = alg.parse().map_err(|_| {
        let shown: String = alg.chars().take(16).collect();
        Rejection::new(
            Reason::AlgorithmNotAllowed,
            if shown.eq_ignore_ascii_case("none") {
                "`alg: none` (an unsigned token) is never accepted".to_string()
            } else {
                format!("unknown algorithm {shown:?}")
            },
        )
    })?;
    if header.contains_key("crit") {
        return Err(malformed(
            "the header has `crit`: no critical extension is understood, so the token is refused",
        ));
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(malformed("the header's `kid` is not a string")),
    };
    let typ = match header.get("typ") {
        None => None,
        Some(Value::String(t)) => Some(t.clone()),
        Some(_) => return Err(malformed("the header's `typ` is not a string")),
    };
    let claims = object("payload", payload)?;
    if signature.is_empty() {
        return Err(malformed("the token has no signature"));
    }
    Ok(Parsed {
        alg,
        kid,
        typ,
        claims,
        message,
        signature,
    })
}

/// A base64url part decoded into a JSON object.
fn object(what: &str, part: &str) -> Result<Map<String, Value>, Rejection> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| malformed(format!("the {what} is not base64url without padding")))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(malformed(format!("the {what} is not a JSON object"))),
        Err(_) => Err(malformed(format!("the {what} is not valid JSON"))),
    }
}

/// A string claim, `None` when absent; any other type is refused.
pub fn string<'c>(
    claims: &'c Map<String, Value>,
    name: &str,
) -> Result<Option<&'c str>, Rejection> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(malformed(format!("the `{name}` claim is not a string"))),
    }
}

/// A NumericDate claim (RFC 7519: seconds, possibly fractional) as whole seconds, `None` when
/// absent. A time that can only be in milliseconds is refused: it would outlive every rule.
pub fn seconds(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, Rejection> {
    let v = match claims.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite())
                .map(|f| f.floor() as i64)
        }),
        Some(_) => None,
    };
    match v {
        Some(s) if recall_core::plausible_iat(s) => Ok(Some(s)),
        Some(s) => Err(malformed(format!(
            "`{name}` = {s} is not in seconds (it is after the year 2286: milliseconds?)"
        ))),
        None => Err(malformed(format!(
            "the `{name}` claim is not a number of seconds"
        ))),
    }
}

/// Whether the `aud` claim (a string or an array of strings) names one of `audiences`.
pub fn audience_matches(
    claims: &Map<String, Value>,
    audiences: &[String],
) -> Result<bool, Rejection> {
    let named = |a: &str| audiences.iter().any(|x| x == a);
    match claims.get("aud") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::String(a)) => Ok(named(a)),
        Some(Value::Array(items)) => {
            let mut any = false;
            for item in items {
                match item {
                    Value::String(a) => any |= named(a),
                    _ => {
                        return Err(malformed(
                            "the `aud` claim holds a value that is not a string",
                        ));
                    }
                }
            }
            Ok(any)
        }
        Some(_) => Err(malformed(
            "the `aud` claim is neither a string nor an array of strings",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(v: &str) -> String {
        URL_SAFE_NO_PAD.encode(v)
    }

    fn token(header: &str, payload: &str) -> String {
        format!("{}.{}.c2ln", b64(header), b64(payload))
    }

    fn reason(t: &str) -> Reason {
        parse(t, 8192).unwrap_err().reason
    }

    #[test]
    fn a_token_is_taken_apart() {
        let t = token(r#"{"alg":"ES256","kid":"k1"}"#, r#"{"iss":"i","exp":5}"#);
        let p = parse(&t, 8192).unwrap();
        assert_eq!((p.alg, p.kid.as_deref()), (Algorithm::ES256, Some("k1")));
        assert_eq!(p.signature, "c2ln");
        assert_eq!(p.message, &t[..t.rfind('.').unwrap()]);
        assert_eq!(string(&p.claims, "iss").unwrap(), Some("i"));
        assert_eq!(seconds(&p.claims, "exp").unwrap(), Some(5));
    }

    #[test]
    fn alg_none_and_unknown_are_not_allowed() {
        let e = parse(&token(r#"{"alg":"none"}"#, "{}"), 8192).unwrap_err();
        assert_eq!(e.reason, Reason::AlgorithmNotAllowed);
        assert!(e.detail.contains("never accepted"), "{e}");
        assert_eq!(
            reason(&token(r#"{"alg":"NONE"}"#, "{}")),
            Reason::AlgorithmNotAllowed
        );
        assert_eq!(
            reason(&token(r#"{"alg":"XS1"}"#, "{}")),
            Reason::AlgorithmNotAllowed
        );
    }

    #[test]
    fn shapes_that_are_not_a_jws_are_malformed() {
        for t in [
            "abc".to_string(),
            "a.b.c.d.e".into(),
            token(r#"{"alg":"ES256","crit":["exp"]}"#, "{}"),
            token(r#"{"alg":"ES256"}"#, "[1]"),
            format!("{}.{}.", b64(r#"{"alg":"ES256"}"#), b64("{}")),
            format!("{}=.{}.c2ln", b64(r#"{"alg":"ES256"}"#), b64("{}")),
        ] {
            assert_eq!(reason(&t), Reason::Malformed, "{t}");
        }
        let big = token(
            r#"{"alg":"ES256"}"#,
            &format!(r#"{{"x":"{}"}}"#, "y".repeat(9000)),
        );
        assert!(
            parse(&big, 8192)
                .unwrap_err()
                .detail
                .contains("over the limit")
        );
    }

    #[test]
    fn numeric_dates_and_audiences() {
        let claims: Map<String, Value> = serde_json::from_str(
            r#"{"a":1.9,"b":"5","ms":1700000000000,"aud":["x","y"],"bad":[1]}"#,
        )
        .unwrap();
        assert_eq!(seconds(&claims, "a").unwrap(), Some(1));
        assert_eq!(seconds(&claims, "none").unwrap(), None);
        assert!(seconds(&claims, "b").is_err());
        let e = seconds(&claims, "ms").unwrap_err();
        assert!(e.detail.contains("milliseconds?"), "{e}");
        assert!(audience_matches(&claims, &["y".into()]).unwrap());
        assert!(!audience_matches(&claims, &["z".into()]).unwrap());
    }
}
