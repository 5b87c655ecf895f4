//! Where a command finds its certificates: explicit files (`--ca`, `--cert`, `--key`), or a
//! development PKI directory (`--pki`, default `./recall-data/pki`, as `recall dev` and
//! `recall pki init` make it) where each identity's files are named by its stem.

use std::path::PathBuf;

use anyhow::Context;

use crate::transport::{DEV_TRUST_DOMAIN, Security, TlsFiles};

/// The TLS flags every command shares.
#[derive(Debug, Clone, clap::Args)]
pub struct TlsArgs {
    /// A development PKI directory (`recall pki init DIR`): the CA and this party's certificate
    /// are looked up there by identity unless --ca, --cert and --key name them.
    #[arg(long, env = "RECALL_PKI", default_value = "recall-data/pki")]
    pub pki: PathBuf,
    /// The CA bundle (PEM) that issues the cluster's identities. Default: PKI/ca.pem.
    #[arg(long, env = "RECALL_CA")]
    pub ca: Option<PathBuf>,
    /// This party's certificate (PEM; its URI SAN is its SPIFFE ID). Default: PKI/STEM.pem.
    #[arg(long, env = "RECALL_CERT")]
    pub cert: Option<PathBuf>,
    /// This party's private key (PEM). Default: PKI/STEM.key.
    #[arg(long, env = "RECALL_KEY")]
    pub key: Option<PathBuf>,
    /// The SPIFFE trust domain of the cluster's identities.
    #[arg(long, env = "RECALL_TRUST_DOMAIN", default_value = DEV_TRUST_DOMAIN)]
    pub trust_domain: String,
}

impl TlsArgs {
    /// The files for the identity whose development-PKI stem is `stem` (`node-1`,
    /// `operator-admin`, `subscriber-ID`), with explicit files taking precedence.
    pub fn files(&self, stem: &str) -> TlsFiles {
        let d = TlsFiles::in_dir(&self.pki, stem);
        TlsFiles {
            ca: self.ca.clone().unwrap_or(d.ca),
            cert: self.cert.clone().unwrap_or(d.cert),
            key: self.key.clone().unwrap_or(d.key),
        }
    }

    /// Loads the credentials of `stem`; the error says how to make them.
    pub fn security(&self, stem: &str) -> anyhow::Result<Security> {
        let files = self.files(stem);
        Security::tls(files.clone(), &self.trust_domain).with_context(|| {
            format!(
                "recall needs mutual TLS certificates (tried {}); for a development cluster run \
                 `recall pki init {}` (or `recall dev`, which makes them), or give --ca, --cert \
                 and --key",
                files.cert.display(),
                self.pki.display()
            )
        })
    }
}
