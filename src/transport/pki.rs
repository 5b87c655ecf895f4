//! A development PKI (rcgen): one CA and the certificates of a small cluster, written as PEM
//! files that [`TlsFiles::in_dir`] finds. `recall pki init DIR` writes one; `recall dev` makes
//! one in `./recall-data/pki` on first start. Production clusters use their own PKI (SPIRE,
//! cert-manager, Vault): recall only needs a CA bundle and, per party, a certificate whose URI
//! SAN is its SPIFFE ID.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use super::credentials::TlsFiles;
use super::identity::Identity;

/// Why the PKI could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// Credentials made from issued certificates did not load.
    #[error("{0}")]
    Credentials(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_owned(),
        source,
    }
}

/// When a certificate is valid.
#[derive(Clone, Copy, Debug)]
pub struct Validity {
    /// The start.
    pub not_before: OffsetDateTime,
    /// The end.
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// From an hour ago (clock skew) to `days` from now.
    pub fn days(days: i64) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            not_before: now - Duration::hours(1),
            not_after: now + Duration::days(days),
        }
    }

    /// A certificate that expired yesterday (for tests of refusal).
    pub fn expired() -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            not_before: now - Duration::days(30),
            not_after: now - Duration::days(1),
        }
    }
}

/// A certificate and its private key, PEM.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
}

impl Issued {
    /// Writes `DIR/STEM.pem` and `DIR/STEM.key` (mode 0600); `ca_pem` goes to `DIR/ca.pem`
    /// unless it is there already.
    pub fn write(&self, dir: &Path, stem: &str, ca_pem: &str) -> Result<TlsFiles, PkiError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let files = TlsFiles::in_dir(dir, stem);
        if !files.ca.exists() {
            write(&files.ca, ca_pem, false)?;
        }
        write(&files.cert, &self.cert_pem, false)?;
        write(&files.key, &self.key_pem, true)?;
        Ok(files)
    }
}

/// Writes a secret (mode 0600) through a temporary file and a rename.
pub fn write_private(path: &Path, text: &str) -> Result<(), PkiError> {
    write(path, text, true)
}

/// Writes through a temporary file and a rename, so a reader never sees half a file (a
/// certificate rotated under a running node must not be read mid-write).
fn write(path: &Path, text: &str, secret: bool) -> Result<(), PkiError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(io(&tmp))?;
    }
    #[cfg(not(unix))]
    let _ = secret;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// A certificate authority for one trust domain.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: String,
    trust_domain: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// A new CA for `trust_domain`, valid ten years.
    pub fn generate(trust_domain: &str) -> Result<Self, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(
            DnType::CommonName,
            format!("recall development CA ({trust_domain})"),
        );
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let v = Validity::days(3650);
        params.not_before = v.not_before;
        params.not_after = v.not_after;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
            trust_domain: trust_domain.into(),
        })
    }

    /// The CA written by [`Ca::write`] in `dir`.
    pub fn load(dir: &Path, trust_domain: &str) -> Result<Self, PkiError> {
        let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
        let cert_pem = std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
        let key_pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
        let key = KeyPair::from_pem(&key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)?;
        Ok(Self {
            issuer,
            cert_pem,
            key_pem,
            trust_domain: trust_domain.into(),
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// Writes `DIR/ca.pem` and `DIR/ca.key` (mode 0600).
    pub fn write(&self, dir: &Path) -> Result<(), PkiError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        write(&dir.join("ca.pem"), &self.cert_pem, false)?;
        write(&dir.join("ca.key"), &self.key_pem, true)
    }

    /// A certificate for `identity` (its URI SAN), good for both TLS client and server.
    pub fn issue(&self, identity: &Identity, validity: Validity) -> Result<Issued, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, identity.to_string());
        params.subject_alt_names = vec![SanType::URI(identity.to_string().try_into()?)];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Mutual TLS credentials for `identity`, held in memory (tests, embedded use).
    pub fn security(&self, identity: &Identity) -> Result<super::Security, PkiError> {
        let issued = self.issue(identity, Validity::days(30))?;
        let creds = super::Credentials::from_pem(
            &self.cert_pem,
            &issued.cert_pem,
            &issued.key_pem,
            &self.trust_domain,
        )
        .map_err(|e| PkiError::Credentials(e.to_string()))?;
        Ok(super::Security::Tls(creds))
    }

    /// Issues a year-long certificate for `identity` and writes it in `dir` under its stem.
    pub fn issue_into(&self, dir: &Path, identity: &Identity) -> Result<TlsFiles, PkiError> {
        self.issue(identity, Validity::days(365))?
            .write(dir, &identity.file_stem(), &self.cert_pem)
    }
}

/// What a development PKI holds.
#[derive(Clone, Debug)]
pub struct DevPki {
    /// The trust domain.
    pub trust_domain: String,
    /// Node ids to issue for (1..=N).
    pub nodes: u64,
    /// Operator names (the first admin of a new cluster is `admin`).
    pub operators: Vec<String>,
    /// Subscriber ids.
    pub subscribers: Vec<String>,
}

impl Default for DevPki {
    fn default() -> Self {
        Self {
            trust_domain: super::DEV_TRUST_DOMAIN.into(),
            nodes: 3,
            operators: vec!["admin".into()],
            subscribers: vec!["dev-sidecar".into()],
        }
    }
}

/// Writes a new CA and every certificate `pki` names into `dir`; returns the identities.
pub fn init(dir: &Path, pki: &DevPki) -> Result<Vec<Identity>, PkiError> {
    let ca = Ca::generate(&pki.trust_domain)?;
    ca.write(dir)?;
    let d = pki.trust_domain.as_str();
    let ids: Vec<Identity> = (1..=pki.nodes)
        .map(|n| Identity::node(d, n))
        .chain(pki.operators.iter().map(|o| Identity::operator(d, o)))
        .chain(pki.subscribers.iter().map(|s| Identity::subscriber(d, s)))
        .collect();
    for id in &ids {
        ca.issue_into(dir, id)?;
    }
    Ok(ids)
}

/// Makes the development PKI in `dir` unless a CA is already there; true when it made one.
pub fn ensure(dir: &Path, pki: &DevPki) -> Result<bool, PkiError> {
    if dir.join("ca.pem").exists() {
        return Ok(false);
    }
    init(dir, pki)?;
    Ok(true)
}
