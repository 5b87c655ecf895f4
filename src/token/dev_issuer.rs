//! A development issuer, so `recall dev` can be tried with real tokens: an ES256 signing key, the
//! JWKS that publishes it and an issuers file naming it, made once in a folder; and tokens
//! minted with that key (`recall token mint`). Never for production: the private key sits on
//! disk beside the JWKS.

use std::path::{Path, PathBuf};

use anyhow::Context;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value};

use super::policy::IssuerPolicy;

/// The development issuer's `iss`.
pub const DEV_ISSUER: &str = "https://login.example";
/// The audience its tokens carry, and the sidecar of `recall dev` accepts.
pub const DEV_AUDIENCE: &str = "dev-api";
/// The `kid` of its key.
pub const DEV_KID: &str = "dev-1";
/// The tenant claim its policy reads.
pub const DEV_TENANT_CLAIM: &str = "tid";

/// The files of a development issuer in one folder.
pub struct DevIssuer {
    dir: PathBuf,
}

impl DevIssuer {
    /// The issuer kept in `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    fn key_file(&self) -> PathBuf {
        self.dir.join("signing-key.pem")
    }

    /// The JWKS file.
    pub fn jwks_file(&self) -> PathBuf {
        self.dir.join("jwks.json")
    }

    /// The issuers file naming it (what `recall sidecar --issuers` takes).
    pub fn issuers_file(&self) -> PathBuf {
        self.dir.join("issuers.toml")
    }

    /// Makes the key, the JWKS and the issuers file unless they exist; `true` if it made them.
    pub fn ensure(&self) -> anyhow::Result<bool> {
        if self.key_file().exists() && self.jwks_file().exists() && self.issuers_file().exists() {
            return Ok(false);
        }
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let pem = kp.serialize_pem();
        let encoding = EncodingKey::from_ec_pem(pem.as_bytes())?;
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256)?;
        jwk.common.key_id = Some(DEV_KID.into());
        crate::transport::pki::write_private(&self.key_file(), &pem)
            .with_context(|| format!("cannot write {}", self.key_file().display()))?;
        let jwks = serde_json::to_string_pretty(&JwkSet { keys: vec![jwk] })?;
        std::fs::write(self.jwks_file(), jwks)?;
        let toml = format!(
            "# The development issuer of `recall dev` (never for production).\n\
             [[issuer]]\nissuer = \"{DEV_ISSUER}\"\naudiences = [\"{DEV_AUDIENCE}\"]\n\
             jwks_file = \"jwks.json\"\ntenant_claim = \"{DEV_TENANT_CLAIM}\"\n"
        );
        std::fs::write(self.issuers_file(), toml)?;
        Ok(true)
    }

    /// The policy the sidecar of `recall dev` verifies with.
    pub fn policy(&self) -> IssuerPolicy {
        let mut p = IssuerPolicy::new(DEV_ISSUER, DEV_AUDIENCE, self.jwks_file());
        p.tenant_claim = Some(DEV_TENANT_CLAIM.into());
        p
    }

    /// A token with `claims` (`iss`, `aud` and `kid` are set here), signed with the key.
    pub fn mint(&self, mut claims: Map<String, Value>) -> anyhow::Result<String> {
        let pem = std::fs::read(self.key_file()).with_context(|| {
            format!(
                "no development issuer in {} (run `recall dev` once, it makes one)",
                self.dir.display()
            )
        })?;
        let key = EncodingKey::from_ec_pem(&pem)?;
        claims.insert("iss".into(), DEV_ISSUER.into());
        claims
            .entry("aud")
            .or_insert_with(|| Value::from(DEV_AUDIENCE));
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(DEV_KID.into());
        Ok(jsonwebtoken::encode(&header, &claims, &key)?)
    }
}
