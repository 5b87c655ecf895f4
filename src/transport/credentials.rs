//! A party's TLS credentials: the cluster's CA bundle, its own certificate chain and key, all PEM
//! files named in its configuration. The files are checked for changes at most once a second
//! when a connection is made, and a changed set is loaded for new connections (rotation without
//! a restart; open connections keep the keys they were made with). A set that does not load, or
//! that names a different identity, is refused and the previous one stays in use.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use super::identity::{Identity, IdentityError};
use super::verify::{Expect, ServerVerifier};

/// How often, at most, the files are checked for changes.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// The three PEM files of a party.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA certificates that issue the cluster's identities (one or more, PEM).
    pub ca: PathBuf,
    /// This party's certificate, then any intermediates (PEM).
    pub cert: PathBuf,
    /// This party's private key (PKCS#8, PKCS#1 or SEC1 PEM).
    pub key: PathBuf,
}

impl TlsFiles {
    /// The files the development PKI (`recall pki init DIR`) writes for `stem`:
    /// `DIR/ca.pem`, `DIR/STEM.pem`, `DIR/STEM.key`.
    pub fn in_dir(dir: &Path, stem: &str) -> Self {
        Self {
            ca: dir.join("ca.pem"),
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}.key")),
        }
    }
}

/// Why credentials cannot be used: the file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file is missing or unreadable.
    #[error(
        "cannot read {what} {path}: {source}; make development certificates with \
         `recall pki init DIR`, or point the configuration at your PKI's files"
    )]
    Read {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file does not hold what it should.
    #[error("{what} {path}: {problem}")]
    Content {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The certificate names no usable identity.
    #[error("certificate {path}: {source}")]
    Identity {
        /// The certificate's path.
        path: PathBuf,
        /// Why.
        source: IdentityError,
    },
    /// The certificate belongs to another trust domain than the configured one.
    #[error(
        "certificate {path} names {identity}, outside the configured trust domain {trust_domain}"
    )]
    Domain {
        /// The certificate's path.
        path: PathBuf,
        /// What it names.
        identity: Identity,
        /// The configured domain.
        trust_domain: String,
    },
    /// rustls refused the combination (a key that does not match the certificate, say).
    #[error("{0}")]
    Rustls(String),
}

/// What one load of the files produced.
struct Loaded {
    identity: Identity,
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    grpc: Arc<ServerConfig>,
    http: Arc<ServerConfig>,
    not_after: SystemTime,
}

/// When the files were last seen, to notice a change.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp(Vec<Option<(SystemTime, u64)>>);

impl Stamp {
    fn of(files: &TlsFiles) -> Self {
        Self(
            [&files.ca, &files.cert, &files.key]
                .iter()
                .map(|p| {
                    std::fs::metadata(p)
                        .ok()
                        .and_then(|m| Some((m.modified().ok()?, m.len())))
                })
                .collect(),
        )
    }
}

struct Watch {
    checked: Instant,
    stamp: Stamp,
}

/// A party's credentials, reloaded when their files change.
pub struct Credentials {
    files: TlsFiles,
    trust_domain: String,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<Loaded>,
    /// `None` for credentials given in memory (nothing to reload).
    watch: Option<Mutex<Watch>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("identity", &self.current.load().identity.to_string())
            .field("files", &self.files)
            .finish()
    }
}

/// The PEM bytes of one load, with the paths their errors name.
struct Pems<'a> {
    files: &'a TlsFiles,
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl<'a> Pems<'a> {
    fn read(files: &'a TlsFiles) -> Result<Self, TlsError> {
        Ok(Self {
            ca: read("CA bundle", &files.ca)?,
            cert: read("certificate", &files.cert)?,
            key: read("private key", &files.key)?,
            files,
        })
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

fn content(what: &'static str, path: &Path, problem: impl Into<String>) -> TlsError {
    TlsError::Content {
        what,
        path: path.to_owned(),
        problem: problem.into(),
    }
}

fn certs(
    what: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| content(what, path, format!("not PEM certificates ({e})")))?;
    if certs.is_empty() {
        return Err(content(what, path, "holds no PEM certificate"));
    }
    Ok(certs)
}

fn not_after(der: &[u8]) -> SystemTime {
    x509_parser::parse_x509_certificate(der)
        .ok()
        .and_then(|(_, c)| u64::try_from(c.validity().not_after.timestamp()).ok())
        .map_or(SystemTime::UNIX_EPOCH, |s| {
            SystemTime::UNIX_EPOCH + Duration::from_secs(s)
        })
}

fn load(
    pems: Pems<'_>,
    trust_domain: &str,
    provider: &Arc<CryptoProvider>,
) -> Result<Loaded, TlsError> {
    let files = pems.files;
    let mut roots = RootCertStore::empty();
    for ca in certs("CA bundle", &files.ca, &pems.ca)? {
        roots.add(ca).map_err(|e| {
            content(
                "CA bundle",
                &files.ca,
                format!("not a CA certificate ({e})"),
            )
        })?;
    }
    let roots = Arc::new(roots);
    let chain = certs("certificate", &files.cert, &pems.cert)?;
    let key = PrivateKeyDer::from_pem_slice(&pems.key).map_err(|e| {
        content(
            "private key",
            &files.key,
            format!("no PEM private key ({e})"),
        )
    })?;
    let identity = Identity::from_certificate(&chain[0]).map_err(|source| TlsError::Identity {
        path: files.cert.clone(),
        source,
    })?;
    if identity.trust_domain != trust_domain {
        return Err(TlsError::Domain {
            path: files.cert.clone(),
            identity,
            trust_domain: trust_domain.into(),
        });
    }
    let server = |alpn: &[&[u8]]| -> Result<Arc<ServerConfig>, TlsError> {
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| TlsError::Rustls(format!("client verifier: {e}")))?;
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Rustls(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| {
                content(
                    "private key",
                    &files.key,
                    format!("does not fit certificate {} ({e})", files.cert.display()),
                )
            })?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    };
    Ok(Loaded {
        not_after: not_after(&chain[0]),
        grpc: server(&[b"h2"])?,
        http: server(&[b"h2", b"http/1.1"])?,
        identity,
        roots,
        chain,
        key,
    })
}

impl Credentials {
    /// Loads `files` for an identity of `trust_domain`.
    pub fn load(files: TlsFiles, trust_domain: &str) -> Result<Arc<Self>, TlsError> {
        let stamp = Stamp::of(&files);
        let pems = Pems::read(&files)?;
        let watch = Some(Mutex::new(Watch {
            checked: Instant::now(),
            stamp,
        }));
        Self::build(pems, trust_domain, watch)
    }

    /// Credentials from PEM text held in memory (a secret store, a test): never reloaded.
    pub fn from_pem(
        ca: &str,
        cert: &str,
        key: &str,
        trust_domain: &str,
    ) -> Result<Arc<Self>, TlsError> {
        let files = TlsFiles {
            ca: "(CA given in memory)".into(),
            cert: "(certificate given in memory)".into(),
            key: "(key given in memory)".into(),
        };
        let pems = Pems {
            files: &files,
            ca: ca.as_bytes().to_vec(),
            cert: cert.as_bytes().to_vec(),
            key: key.as_bytes().to_vec(),
        };
        Self::build(pems, trust_domain, None)
    }

    fn build(
        pems: Pems<'_>,
        trust_domain: &str,
        watch: Option<Mutex<Watch>>,
    ) -> Result<Arc<Self>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let files = pems.files.clone();
        let loaded = load(pems, trust_domain, &provider)?;
        if loaded.not_after < SystemTime::now() {
            tracing::warn!(cert = %files.cert.display(), "this certificate has expired: peers will refuse it");
        }
        Ok(Arc::new(Self {
            trust_domain: trust_domain.into(),
            provider,
            current: ArcSwap::from_pointee(loaded),
            watch,
            files,
        }))
    }

    /// The identity these credentials prove.
    pub fn identity(&self) -> Identity {
        self.current.load().identity.clone()
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// Loads the files again if they changed since the last check (at most once a second).
    fn fresh(&self) -> Arc<Loaded> {
        let Some(watch) = &self.watch else {
            return self.current.load_full();
        };
        let mut watch = watch.lock().expect("credentials watch lock");
        if watch.checked.elapsed() >= RELOAD_CHECK {
            watch.checked = Instant::now();
            let stamp = Stamp::of(&self.files);
            if stamp != watch.stamp {
                watch.stamp = stamp;
                drop(watch);
                self.reload();
            }
        }
        self.current.load_full()
    }

    /// Loads the files now; keeps the current credentials if the new ones are unusable.
    pub fn reload(&self) {
        if self.watch.is_none() {
            return;
        }
        let old = self.current.load().identity.clone();
        let loaded =
            Pems::read(&self.files).and_then(|p| load(p, &self.trust_domain, &self.provider));
        match loaded {
            Ok(new) if new.identity == old => {
                tracing::info!(identity = %old, cert = %self.files.cert.display(), "loaded rotated certificates");
                self.current.store(Arc::new(new));
            }
            Ok(new) => tracing::error!(
                identity = %old, new = %new.identity, cert = %self.files.cert.display(),
                "refusing rotated certificates that name another identity; keeping the current ones"
            ),
            Err(e) => {
                tracing::error!(error = %e, "cannot load rotated certificates; keeping the current ones")
            }
        }
    }

    /// The server configuration for a gRPC listener (ALPN h2), client certificates required.
    pub(super) fn grpc_server(&self) -> Arc<ServerConfig> {
        self.fresh().grpc.clone()
    }

    /// The server configuration for an HTTP listener (ALPN h2 and http/1.1).
    pub(super) fn http_server(&self) -> Arc<ServerConfig> {
        self.fresh().http.clone()
    }

    /// A client configuration that presents these credentials and expects `expect`.
    pub(super) fn client(&self, expect: Expect) -> Arc<ClientConfig> {
        let loaded = self.fresh();
        let verifier = ServerVerifier {
            roots: loaded.roots.clone(),
            provider: self.provider.clone(),
            trust_domain: self.trust_domain.clone(),
            expect,
        };
        let mut config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("ring supports TLS 1.3")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_auth_cert(loaded.chain.clone(), loaded.key.clone_key())
            .expect("the key was checked against the certificate when loaded");
        config.alpn_protocols = vec![b"h2".to_vec()];
        Arc::new(config)
    }
}
