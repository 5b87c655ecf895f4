//! The query of `GET /v1/check` into a token's facts, borrowed from the decoded pairs. Every
//! refusal says what was wrong and what to do, and never echoes an API key.

use recall_core::validate::{MAX_VALUE_LEN, ValidationError, validate_key};
use recall_core::{Kind, RevocationKey, TokenFacts};

/// The parameters `/v1/check` takes, in the order they are reported.
pub const PARAMS: [&str; 9] = [
    "iss", "tenant", "jti", "sid", "sub", "client", "kid", "api_key", "iat",
];

/// The longest parameter name echoed back in an error.
const MAX_ECHO: usize = 64;

/// What is wrong with a check query.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// A parameter the check does not take (often a typo).
    #[error(
        "unknown parameter `{name}`: /v1/check takes iss, tenant, jti, sid, sub, client, kid, \
         api_key and iat"
    )]
    Unknown {
        /// The name given (cut to 64 bytes).
        name: String,
    },
    /// A parameter given twice.
    #[error("`{name}` is given more than once: give it once")]
    Repeated {
        /// The parameter.
        name: &'static str,
    },
    /// A parameter given with no value.
    #[error("`{name}` is empty: give a value, or leave the parameter out")]
    Empty {
        /// The parameter.
        name: &'static str,
    },
    /// A value longer than any revocation can name.
    #[error(
        "`{name}` is {len} bytes, over the limit of {max}: no revocation names a value that long; \
         pass the claim itself"
    )]
    TooLong {
        /// The parameter.
        name: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// No issuer.
    #[error(
        "missing `iss`: give the token's issuer, e.g. /v1/check?iss=https://login.example&jti=..."
    )]
    MissingIss,
    /// An `iat` that is not a whole number.
    #[error("`iat` is {given:?}, not an integer: give the token's `iat` claim in unix seconds")]
    BadIat {
        /// What was given.
        given: String,
    },
    /// An `iat` too large to be unix seconds.
    #[error(
        "`iat` is {given}, which is not unix seconds (it is after the year 2286: milliseconds?): \
         give the token's `iat` claim in seconds"
    )]
    IatNotSeconds {
        /// What was given.
        given: i64,
    },
    /// An `api_key` that is not a SHA-256 in lowercase hex (the value is never echoed).
    #[error("`api_key`: {0}")]
    ApiKey(ValidationError),
}

/// The facts named by a decoded query string.
pub fn parse(pairs: &[(String, String)]) -> Result<TokenFacts<'_>, QueryError> {
    let mut values: [Option<&str>; PARAMS.len()] = [None; PARAMS.len()];
    for (name, value) in pairs {
        let Some(i) = PARAMS.iter().position(|p| p == name) else {
            return Err(QueryError::Unknown {
                name: cut(name, MAX_ECHO),
            });
        };
        let name = PARAMS[i];
        if values[i].is_some() {
            return Err(QueryError::Repeated { name });
        }
        if value.is_empty() {
            return Err(QueryError::Empty { name });
        }
        if value.len() > MAX_VALUE_LEN {
            return Err(QueryError::TooLong {
                name,
                len: value.len(),
                max: MAX_VALUE_LEN,
            });
        }
        values[i] = Some(value);
    }
    let [iss, tenant, jti, sid, sub, client, kid, api_key, iat] = values;
    let iss = iss.ok_or(QueryError::MissingIss)?;
    let iat = iat
        .map(|s| {
            s.parse::<i64>().map_err(|_| QueryError::BadIat {
                given: s.to_string(),
            })
        })
        .transpose()?;
    if let Some(given) = iat.filter(|s| !recall_core::plausible_iat(*s)) {
        return Err(QueryError::IatNotSeconds { given });
    }
    if let Some(hash) = api_key {
        validate_key(&RevocationKey::new(Kind::ApiKey, iss, hash)).map_err(QueryError::ApiKey)?;
    }
    Ok(TokenFacts {
        iss,
        tenant,
        jti,
        sid,
        sub,
        client,
        kid,
        api_key,
        iat,
    })
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn cut(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn err(q: &[(&str, &str)]) -> QueryError {
        parse(&pairs(q)).unwrap_err()
    }

    #[test]
    fn every_fact_is_read() {
        let hash = "0f".repeat(32);
        let q = pairs(&[
            ("iss", "i"),
            ("tenant", "t"),
            ("jti", "j"),
            ("sid", "s"),
            ("sub", "u"),
            ("client", "c"),
            ("kid", "k"),
            ("api_key", &hash),
            ("iat", "-5"),
        ]);
        let f = parse(&q).unwrap();
        let want = TokenFacts {
            iss: "i",
            tenant: Some("t"),
            jti: Some("j"),
            sid: Some("s"),
            sub: Some("u"),
            client: Some("c"),
            kid: Some("k"),
            api_key: Some(&hash),
            iat: Some(-5),
        };
        assert_eq!(f, want);
    }

    #[test]
    fn missing_issuer() {
        assert_eq!(err(&[("jti", "j")]), QueryError::MissingIss);
    }

    #[test]
    fn iat_not_an_integer() {
        let e = err(&[("iss", "i"), ("iat", "1.5")]);
        assert!(e.to_string().contains("not an integer"), "{e}");
    }

    #[test]
    fn millisecond_iat_is_refused() {
        let e = err(&[("iss", "i"), ("iat", "1700000000000")]);
        assert_eq!(
            e,
            QueryError::IatNotSeconds {
                given: 1_700_000_000_000
            }
        );
        assert!(e.to_string().contains("milliseconds?"), "{e}");
    }

    #[test]
    fn unknown_parameter_is_named_and_cut() {
        let e = err(&[("iss", "i"), ("jit", "j")]);
        assert!(e.to_string().starts_with("unknown parameter `jit`"), "{e}");
        let long = "x".repeat(500);
        let e = err(&[(long.as_str(), "j")]);
        assert!(e.to_string().len() < 200, "{e}");
    }

    #[test]
    fn empty_long_and_repeated_values() {
        assert_eq!(
            err(&[("iss", "i"), ("sub", "")]),
            QueryError::Empty { name: "sub" }
        );
        let long = "v".repeat(257);
        assert!(matches!(
            err(&[("iss", "i"), ("jti", &long)]),
            QueryError::TooLong {
                name: "jti",
                len: 257,
                ..
            }
        ));
        assert_eq!(
            err(&[("iss", "i"), ("jti", "a"), ("jti", "b")]),
            QueryError::Repeated { name: "jti" }
        );
    }

    #[test]
    fn raw_api_key_is_refused_without_echoing_it() {
        let e = err(&[("iss", "i"), ("api_key", "sk_live_SECRET")]);
        assert!(e.to_string().contains("64 lowercase hex"), "{e}");
        assert!(!e.to_string().contains("SECRET"), "{e}");
        let upper = "AB".repeat(32);
        assert!(matches!(
            err(&[("iss", "i"), ("api_key", &upper)]),
            QueryError::ApiKey(_)
        ));
    }
}
