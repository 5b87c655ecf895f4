//! `recall pki`: a development CA and the certificates of a small cluster (rcgen). Production
//! clusters use their own PKI; recall needs a CA bundle and, per party, a certificate whose URI
//! SAN is its SPIFFE ID.

use std::path::PathBuf;

use anyhow::{Context, bail};

use crate::transport::pki::{self, Ca, DevPki};
use crate::transport::{DEV_TRUST_DOMAIN, Identity};

/// Certificate commands.
#[derive(Debug, clap::Subcommand)]
pub enum PkiCmd {
    /// Create a CA and certificates for nodes 1..N, operators and subscribers in DIR.
    Init {
        /// Where to write (refused if a CA is already there).
        dir: PathBuf,
        /// The trust domain of the identities.
        #[arg(long, default_value = DEV_TRUST_DOMAIN)]
        trust_domain: String,
        /// How many node certificates (node-1 .. node-N).
        #[arg(long, default_value_t = 3)]
        nodes: u64,
        /// Operator names (the first admin of a new cluster is `admin`).
        #[arg(long, value_delimiter = ',', default_value = "admin")]
        operators: Vec<String>,
        /// Subscriber ids.
        #[arg(long, value_delimiter = ',', default_value = "dev-sidecar")]
        subscribers: Vec<String>,
    },
    /// Issue one more certificate from the CA in DIR, for a SPIFFE ID
    /// (spiffe://DOMAIN/node/ID, .../operator/NAME or .../subscriber/ID).
    Issue {
        /// The directory holding ca.pem and ca.key.
        dir: PathBuf,
        /// The identity.
        identity: String,
        /// Days of validity.
        #[arg(long, default_value_t = 365)]
        days: i64,
    },
}

/// Runs `recall pki ...`.
pub fn run(cmd: PkiCmd) -> anyhow::Result<()> {
    match cmd {
        PkiCmd::Init {
            dir,
            trust_domain,
            nodes,
            operators,
            subscribers,
        } => {
            if dir.join("ca.pem").exists() {
                bail!(
                    "{} already holds a CA (ca.pem); issue more certificates with `recall pki \
                     issue`, or choose another directory",
                    dir.display()
                );
            }
            let ids = pki::init(
                &dir,
                &DevPki {
                    trust_domain,
                    nodes,
                    operators,
                    subscribers,
                },
            )?;
            println!(
                "wrote a development CA and {} certificates to {}:",
                ids.len(),
                dir.display()
            );
            for id in ids {
                println!("  {}.pem  {id}", id.file_stem());
            }
        }
        PkiCmd::Issue {
            dir,
            identity,
            days,
        } => {
            let id = Identity::parse(&identity)?;
            let ca = Ca::load(&dir, &id.trust_domain)
                .with_context(|| format!("loading the CA in {}", dir.display()))?;
            let files = ca.issue(&id, pki::Validity::days(days))?.write(
                &dir,
                &id.file_stem(),
                ca.cert_pem(),
            )?;
            println!(
                "wrote {} and {} for {id}",
                files.cert.display(),
                files.key.display()
            );
        }
    }
    Ok(())
}
