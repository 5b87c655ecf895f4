//! Real signing keys generated in the test (RSA 2048, ECDSA P-256, Ed25519), tokens signed with
//! them, and the JWKS documents that publish them.

use std::sync::{Arc, OnceLock};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use recall::node::clock::Clock;
use recall_core::Timestamp;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use serde_json::{Value, json};

/// The time every verifier in these tests reads (unix seconds).
pub const NOW: i64 = 1_800_000_000;
/// The issuer of the tokens.
pub const ISS: &str = "https://idp.example";
/// The audience the service accepts.
pub const AUD: &str = "orders-api";

/// A clock stopped at [`NOW`].
pub fn clock() -> Clock {
    Arc::new(|| Timestamp::from_millis(NOW * 1000))
}

/// A private key, its algorithm and `kid`, and the public JWK.
pub struct SigningKey {
    pub alg: Algorithm,
    pub kid: String,
    pub encoding: EncodingKey,
    pub jwk: Jwk,
    /// The public key in PEM (for the "public key as HMAC secret" attack).
    pub public_pem: Option<String>,
}

impl SigningKey {
    fn new(alg: Algorithm, kid: &str, encoding: EncodingKey, public_pem: Option<String>) -> Self {
        let mut jwk = Jwk::from_encoding_key(&encoding, alg).expect("a JWK of the key");
        jwk.common.key_id = Some(kid.to_string());
        Self::with_jwk(alg, kid, encoding, jwk, public_pem)
    }

    fn with_jwk(
        alg: Algorithm,
        kid: &str,
        encoding: EncodingKey,
        jwk: Jwk,
        public_pem: Option<String>,
    ) -> Self {
        Self {
            alg,
            kid: kid.to_string(),
            encoding,
            jwk,
            public_pem,
        }
    }

    /// A fresh ECDSA P-256 key.
    pub fn es256(kid: &str) -> Self {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let enc = EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes()).unwrap();
        Self::new(Algorithm::ES256, kid, enc, Some(kp.public_key_pem()))
    }

    /// A fresh Ed25519 key.
    pub fn eddsa(kid: &str) -> Self {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        use base64::Engine;
        let enc = EncodingKey::from_ed_pem(kp.serialize_pem().as_bytes()).unwrap();
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(kp.public_key_raw());
        let jwk =
            serde_json::from_value(json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid}))
                .unwrap();
        Self::with_jwk(Algorithm::EdDSA, kid, enc, jwk, Some(kp.public_key_pem()))
    }

    /// An RSA 2048 key (generated once per test binary: it takes a while).
    pub fn rs256(kid: &str) -> Self {
        static PEMS: OnceLock<(String, String)> = OnceLock::new();
        let (private, public) = PEMS.get_or_init(|| {
            use rsa::Generate;
            use rsa::pkcs8::EncodePublicKey;
            let key = rsa::PrivateKey::generate();
            let private = key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
            let public = key
                .to_public_key()
                .to_public_key_pem(LineEnding::LF)
                .unwrap();
            (private, public)
        });
        let enc = EncodingKey::from_rsa_pem(private.as_bytes()).unwrap();
        Self::new(Algorithm::RS256, kid, enc, Some(public.clone()))
    }

    /// `claims` signed with this key, its `alg` and `kid` in the header.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// A JWKS document publishing `keys`.
pub fn jwks(keys: &[&SigningKey]) -> String {
    serde_json::to_string(&JwkSet {
        keys: keys.iter().map(|k| k.jwk.clone()).collect(),
    })
    .unwrap()
}

/// Good claims: issued a minute ago, valid for ten more, for [`AUD`].
pub fn claims(jti: &str) -> Value {
    json!({
        "iss": ISS,
        "aud": AUD,
        "sub": "alice",
        "jti": jti,
        "sid": "s-1",
        "azp": "web-app",
        "tid": "acme",
        "iat": NOW - 60,
        "exp": NOW + 600,
    })
}

/// `claims` with `changes` applied (a `null` removes the claim).
pub fn with(mut claims: Value, changes: Value) -> Value {
    let obj = claims.as_object_mut().unwrap();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            obj.remove(k);
        } else {
            obj.insert(k.clone(), v.clone());
        }
    }
    claims
}

/// The wall clock in unix seconds (a running sidecar reads the system clock).
pub fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// [`claims`] issued a minute before the wall clock's now.
pub fn live_claims(jti: &str) -> Value {
    let now = now_s();
    with(claims(jti), json!({"iat": now - 60, "exp": now + 600}))
}

/// A token with a hand-written header and payload and `signature` (base64url), for what no
/// honest signer produces.
pub fn forged(header: &Value, payload: &Value, signature: &[u8]) -> String {
    use base64::Engine;
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.{}",
        e.encode(header.to_string()),
        e.encode(payload.to_string()),
        e.encode(signature)
    )
}
