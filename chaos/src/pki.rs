//! The certificates of a run: every link into a node is mutual TLS, so a run makes one
//! development PKI in its data directory: a CA, a certificate for each node (`node-1` to
//! `node-3`), one for the harness's operator (`admin`, the first admin of a new cluster) and one
//! per sidecar id. Every `recall` process the harness starts is pointed at it (`--pki DIR`), and
//! the harness's own clients (writer, observers, checks) dial nodes as the operator through
//! [`Pki::dialer`]. The proxies between them see only TLS records.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use recall::transport::pki::{Ca, DevPki};
use recall::transport::{DEV_TRUST_DOMAIN, Dialer, Identity, Security, TlsFiles};

/// The trust domain of a run's identities.
pub const TRUST_DOMAIN: &str = DEV_TRUST_DOMAIN;

/// The operator the harness acts as: the cluster's first admin by default.
pub const OPERATOR: &str = "admin";

/// How long the harness's clients wait for a connection (TCP and the TLS handshake).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A run's PKI: where its files are, and the harness's dialler.
#[derive(Clone)]
pub struct Pki {
    dir: PathBuf,
    dialer: Dialer,
}

impl Pki {
    /// The PKI in `dir` for `nodes` nodes, the operator and `subscribers`: made there on first
    /// use; later calls keep its CA and issue only the certificates still missing.
    pub fn ensure(dir: &Path, nodes: u64, subscribers: &[String]) -> anyhow::Result<Self> {
        let wanted: Vec<Identity> = (1..=nodes)
            .map(|n| Identity::node(TRUST_DOMAIN, n))
            .chain(std::iter::once(Identity::operator(TRUST_DOMAIN, OPERATOR)))
            .chain(
                subscribers
                    .iter()
                    .map(|s| Identity::subscriber(TRUST_DOMAIN, s)),
            )
            .collect();
        for id in &wanted {
            // A name the transport would not accept fails here, not in a child's log.
            Identity::parse(&id.to_string())
                .with_context(|| format!("{id} is not a valid identity"))?;
        }
        if dir.join("ca.pem").exists() {
            let ca = Ca::load(dir, TRUST_DOMAIN)
                .with_context(|| format!("loading the run's CA in {}", dir.display()))?;
            for id in &wanted {
                if !TlsFiles::in_dir(dir, &id.file_stem()).cert.exists() {
                    ca.issue_into(dir, id)
                        .with_context(|| format!("issuing a certificate for {id}"))?;
                }
            }
        } else {
            let pki = DevPki {
                trust_domain: TRUST_DOMAIN.into(),
                nodes,
                operators: vec![OPERATOR.into()],
                subscribers: subscribers.to_vec(),
            };
            recall::transport::pki::init(dir, &pki)
                .with_context(|| format!("making the run's PKI in {}", dir.display()))?;
        }
        let operator = Identity::operator(TRUST_DOMAIN, OPERATOR);
        let security = Security::tls(TlsFiles::in_dir(dir, &operator.file_stem()), TRUST_DOMAIN)
            .with_context(|| format!("loading the credentials of {operator}"))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            dialer: Dialer::new(security).with_connect_timeout(CONNECT_TIMEOUT),
        })
    }

    /// Where the files are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The flags that point a `recall` process at this PKI (its own certificate is found there
    /// by its identity).
    pub fn args(&self) -> [String; 2] {
        [
            format!("--pki={}", self.dir.display()),
            format!("--trust-domain={TRUST_DOMAIN}"),
        ]
    }

    /// The dialler of the harness's own clients: the operator's credentials.
    pub fn dialer(&self) -> &Dialer {
        &self.dialer
    }
}
