//! An issuer's keys: a JWKS document read into keys that each know which algorithms they may
//! verify, so a token cannot pick a key of another type (algorithm confusion) or curve.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

use super::reason::{Reason, Rejection};

/// The smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// One verification key.
#[derive(Clone)]
pub struct Key {
    /// Its `kid`, if the set gives one.
    pub kid: Option<String>,
    /// The family it belongs to (RSA, EC, Ed, or HMAC for a configured secret).
    pub family: AlgorithmFamily,
    /// The one algorithm it is declared for (`alg` in the JWK), if declared.
    pub alg: Option<Algorithm>,
    /// Its curve, for EC and Ed keys.
    pub curve: Option<EllipticCurve>,
    /// The key itself.
    pub key: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("family", &self.family)
            .field("alg", &self.alg)
            .field("curve", &self.curve)
            .finish_non_exhaustive()
    }
}

impl Key {
    /// An HMAC key from a configured secret.
    pub fn hmac(secret: &[u8]) -> Self {
        Self {
            kid: None,
            family: AlgorithmFamily::Hmac,
            alg: None,
            curve: None,
            key: DecodingKey::from_secret(secret).expect("any byte string is an HMAC key"),
        }
    }

    /// Whether this key may verify `alg`; if not, why.
    pub fn fits(&self, alg: Algorithm) -> Result<(), String> {
        let kid = self.kid.as_deref().unwrap_or("(no kid)");
        if self.family != alg.family() {
            return Err(format!(
                "key {kid} is a {:?} key and the token says {alg:?}: a key is only used with \
                 its own type",
                self.family
            ));
        }
        if let Some(declared) = self.alg
            && declared != alg
        {
            return Err(format!(
                "key {kid} is declared for {declared:?}, the token says {alg:?}"
            ));
        }
        let curve = match alg {
            Algorithm::ES256 => Some(EllipticCurve::P256),
            Algorithm::ES384 => Some(EllipticCurve::P384),
            Algorithm::EdDSA => Some(EllipticCurve::Ed25519),
            _ => None,
        };
        if curve.is_some() && self.curve != curve {
            return Err(format!(
                "key {kid} is on curve {:?}, {alg:?} needs {:?}",
                self.curve, curve
            ));
        }
        Ok(())
    }
}

/// The keys of one issuer.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    /// The usable keys.
    pub keys: Vec<Key>,
}

impl KeySet {
    /// Reads a JWKS document. Keys that cannot verify signatures (`use` other than `sig`,
    /// symmetric `oct` keys, unsupported curves, RSA under 2048 bits) are left out, each with a
    /// note; a document that is not a JWKS is an error.
    pub fn from_jwks(json: &[u8]) -> anyhow::Result<(Self, Vec<String>)> {
        let set: JwkSet = serde_json::from_slice(json).map_err(|e| {
            anyhow::anyhow!("not a JWKS document ({e}); expected {{\"keys\": [...]}}")
        })?;
        let mut keys = Vec::new();
        let mut skipped = Vec::new();
        for jwk in &set.keys {
            match key_of(jwk) {
                Ok(k) => keys.push(k),
                Err(why) => skipped.push(format!(
                    "key {}: {why}",
                    jwk.common.key_id.as_deref().unwrap_or("(no kid)")
                )),
            }
        }
        Ok((Self { keys }, skipped))
    }

    /// The key to verify a token signed with `alg` and naming `kid`.
    ///
    /// With a `kid`, only keys of that id are candidates; without one, the set must hold exactly
    /// one key that fits `alg`. A candidate of the wrong type or curve is refused as
    /// `algorithm_not_allowed`, never tried.
    pub fn select(&self, alg: Algorithm, kid: Option<&str>) -> Result<&Key, Rejection> {
        if alg.family() == AlgorithmFamily::Hmac {
            return self
                .keys
                .iter()
                .find(|k| k.family == AlgorithmFamily::Hmac)
                .ok_or_else(|| {
                    Rejection::new(Reason::AlgorithmNotAllowed, "no HMAC secret is configured")
                });
        }
        match kid {
            Some(kid) => {
                let mut named = self
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .peekable();
                if named.peek().is_none() {
                    return Err(Rejection::new(
                        Reason::UnknownKey,
                        format!("no key {kid:?} in the issuer's key set"),
                    ));
                }
                let mut why = String::new();
                for k in named {
                    match k.fits(alg) {
                        Ok(()) => return Ok(k),
                        Err(w) => why = w,
                    }
                }
                Err(Rejection::new(Reason::AlgorithmNotAllowed, why))
            }
            None => {
                let fit: Vec<&Key> = self
                    .keys
                    .iter()
                    .filter(|k| k.family != AlgorithmFamily::Hmac && k.fits(alg).is_ok())
                    .collect();
                match fit[..] {
                    [one] => Ok(one),
                    [] => Err(Rejection::new(
                        Reason::UnknownKey,
                        format!("the token has no `kid` and no key of the set fits {alg:?}"),
                    )),
                    _ => Err(Rejection::new(
                        Reason::UnknownKey,
                        format!(
                            "the token has no `kid` and {} keys fit {alg:?}: the issuer must \
                             name its key",
                            fit.len()
                        ),
                    )),
                }
            }
        }
    }
}

/// One JWK as a verification key, or why it cannot be one.
fn key_of(jwk: &Jwk) -> Result<Key, String> {
    if let Some(u) = &jwk.common.public_key_use
        && *u != PublicKeyUse::Signature
    {
        return Err(format!("`use` is {u:?}, not sig"));
    }
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(a) => Some(
            Algorithm::try_from(a).map_err(|_| format!("`alg` {a} is not a signing algorithm"))?,
        ),
    };
    let (family, curve) = match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => {
            let n = URL_SAFE_NO_PAD
                .decode(&p.n)
                .map_err(|_| "`n` is not base64url".to_string())?;
            let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
            if bits < MIN_RSA_BITS {
                return Err(format!(
                    "an RSA key of about {bits} bits is under {MIN_RSA_BITS}"
                ));
            }
            (AlgorithmFamily::Rsa, None)
        }
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 | EllipticCurve::P384 => {
                (AlgorithmFamily::Ec, Some(p.curve.clone()))
            }
            ref c => return Err(format!("curve {c:?} is not supported")),
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => (AlgorithmFamily::Ed, Some(EllipticCurve::Ed25519)),
            ref c => return Err(format!("curve {c:?} is not supported")),
        },
        AlgorithmParameters::OctetKey(_) => {
            return Err("a symmetric key in a JWKS is never used (give hmac_secret_file)".into());
        }
        _ => return Err("unknown key type".into()),
    };
    if let Some(a) = alg
        && a.family() != family
    {
        return Err(format!("`alg` {a:?} does not fit a {family:?} key"));
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("unusable: {e}"))?;
    Ok(Key {
        kid: jwk.common.key_id.clone(),
        family,
        alg,
        curve,
        key,
    })
}
