//! `recall sidecar`: flags and environment into a [`SidecarConfig`], tracing set-up, the
//! listeners bound, then one call to run the sidecar until Ctrl-C or SIGTERM.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use super::server::{init_tracing, shutdown_signal};
use crate::sidecar::SidecarConfig;
use crate::subscriber::{StalePolicy, SubscriberConfig};

/// What the sidecar's filter keeps.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ModeArg {
    /// Exact fingerprints: every answer is certain (about 8 bytes an entry).
    Full,
    /// Bloom filters only (about 2 bytes an entry): a hit answers `possibly_revoked`.
    Lite,
}

/// What a stale answer does.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum PolicyArg {
    /// Deny: a stale answer says revoked.
    FailClosed,
    /// Allow what the local filter allows, flagged stale (before the first sync it still denies).
    FailOpen,
}

/// Flags of `recall sidecar`. Precedence: flag, then environment, then the default.
#[derive(Debug, clap::Args)]
pub struct SidecarArgs {
    /// Nodes of the cluster to follow (`host:port`, comma-separated); any of them serves the
    /// stream, and the sidecar moves to the next when one fails.
    #[arg(
        long,
        env = "RECALL_CLUSTER",
        default_value = "127.0.0.1:7070",
        value_delimiter = ','
    )]
    cluster: Vec<String>,
    /// Follow the stream from these instead (`host:port`, comma-separated): relays (`recall
    /// relay`) or nodes, tried in turn. Lite-mode confirmations and sightings still go to
    /// --cluster. Default: the --cluster nodes.
    #[arg(long, env = "RECALL_UPSTREAM", value_delimiter = ',')]
    upstream: Vec<String>,
    /// The subscriber id, unique in the fleet (operators see it in `recall status`). Its
    /// certificate is PKI/subscriber-ID.pem unless --cert names one; with --cert, the default
    /// is the id the certificate names. Default: dev-sidecar.
    #[arg(long, env = "RECALL_SIDECAR_ID")]
    id: Option<String>,
    /// Where the HTTP check API listens.
    #[arg(long, env = "RECALL_SIDECAR_HTTP", default_value = crate::sidecar::config::DEFAULT_HTTP_LISTEN)]
    http: String,
    /// Where the gRPC check API (`recall.v1.Check`) listens, e.g. 127.0.0.1:7081. Default: none.
    #[arg(long, env = "RECALL_SIDECAR_GRPC")]
    grpc: Option<String>,
    /// Where the sidecar persists its state for warm restarts.
    #[arg(
        long,
        env = "RECALL_SIDECAR_DATA_DIR",
        default_value = "./recall-data/sidecar"
    )]
    data_dir: PathBuf,
    /// full: exact answers; lite: Bloom filters only (about 1.7 bytes an entry instead of 10),
    /// each hit confirmed with a node of the cluster (`possibly_revoked` if none answers).
    #[arg(long, env = "RECALL_SIDECAR_MODE", value_enum, default_value = "full")]
    mode: ModeArg,
    /// Lite mode: how many milliseconds confirming one hit may take, every node tried included
    /// (10..60000); past it the answer stays `possibly_revoked` (a refusal).
    #[arg(long, env = "RECALL_CONFIRM_TIMEOUT_MS", default_value_t = 500)]
    confirm_timeout_ms: u64,
    /// Lite mode: how many confirmations are cached (0..1000000), each only until the sidecar
    /// applies a change past the version it was given at.
    #[arg(long, env = "RECALL_CONFIRM_CACHE", default_value_t = 1024)]
    confirm_cache: usize,
    /// Past this many milliseconds without a node vouching for the state (a heartbeat from a node
    /// in touch with its leader), answers are marked stale and the policy decides them.
    #[arg(long, env = "RECALL_STALENESS_BOUND_MS", default_value_t = 10_000)]
    staleness_bound_ms: u64,
    /// What a stale answer does: fail-closed refuses every token, fail-open keeps the local
    /// answer (flagged stale) once the sidecar has synced; before that it refuses too.
    #[arg(
        long,
        env = "RECALL_STALE_POLICY",
        value_enum,
        default_value = "fail-closed"
    )]
    policy: PolicyArg,
    /// A stream silent this many milliseconds is dead (nodes send a heartbeat every 500 ms):
    /// the sidecar drops it and connects to the next node.
    #[arg(long, env = "RECALL_SILENCE_TIMEOUT_MS", default_value_t = 2_000)]
    silence_timeout_ms: u64,
    /// The service whose denials this sidecar counts as sightings of revoked credentials
    /// (`recall sightings` shows it). Default: the subscriber id.
    #[arg(long, env = "RECALL_SERVICE", default_value = "")]
    service: String,
    /// How often, in milliseconds, the sightings are reported to the cluster (at least 100;
    /// 0 counts and reports none).
    #[arg(long, env = "RECALL_SIGHTINGS_INTERVAL_MS", default_value_t = 5_000)]
    sightings_interval_ms: u64,
    /// The most distinct revoked credentials counted between two reports (1..1000000); past
    /// it, denials of others are counted as dropped.
    #[arg(long, env = "RECALL_SIGHTINGS_MAX", default_value_t = 10_000)]
    sightings_max: usize,
    /// Checkpoints: whose signatures count, and how soon they must cover a change.
    #[command(flatten)]
    checkpoints: super::checkpoints::CheckpointArgs,
    /// Log as JSON lines instead of readable text.
    #[arg(long, env = "RECALL_LOG_JSON")]
    log_json: bool,
    /// Serve the check APIs over TLS with the sidecar's own certificate (clients must then
    /// present a certificate of the same CA). Default: plaintext, for loopback.
    #[arg(long, env = "RECALL_CHECK_TLS")]
    check_tls: bool,
    /// The issuers whose bearer tokens the sidecar verifies (`/v1/auth`, `POST /v1/token`,
    /// Envoy ext_authz): a TOML file with an `[[issuer]]` table each (issuer, audiences,
    /// jwks_file or jwks_url, algorithms, leeway_s, max_lifetime_s, tenant_claim...).
    #[arg(long, env = "RECALL_ISSUERS")]
    issuers: Option<PathBuf>,
    /// Pass every verified claim of an allowed request on, as `X-Recall-Claims` (base64url
    /// JSON), besides the issuer, subject, client and tenant headers.
    #[arg(long, env = "RECALL_PASS_CLAIMS")]
    pass_claims: bool,
    /// Certificates.
    #[command(flatten)]
    tls: super::TlsArgs,
}

impl SidecarArgs {
    fn resolve(self) -> anyhow::Result<SidecarConfig> {
        let stem = format!("subscriber-{}", self.id.as_deref().unwrap_or("dev-sidecar"));
        let security = self.tls.security(&stem)?;
        let mut subscriber = match self.id {
            Some(id) => SubscriberConfig::new(self.cluster, id, security.clone()),
            None => SubscriberConfig::for_identity(self.cluster, security.clone())?,
        };
        subscriber.upstream = self.upstream;
        subscriber.mode = match self.mode {
            ModeArg::Full => recall_filter::Mode::Full,
            ModeArg::Lite => recall_filter::Mode::Lite,
        };
        if !(10..=60_000).contains(&self.confirm_timeout_ms) {
            anyhow::bail!(
                "--confirm-timeout-ms {} is out of range: give 10 to 60000 milliseconds",
                self.confirm_timeout_ms
            );
        }
        if self.confirm_cache > 1_000_000 {
            anyhow::bail!(
                "--confirm-cache {} is over 1000000 entries: give a smaller cache",
                self.confirm_cache
            );
        }
        subscriber.confirm = crate::subscriber::confirm::ConfirmConfig {
            timeout: Duration::from_millis(self.confirm_timeout_ms),
            cache_entries: self.confirm_cache,
        };
        if self.sightings_max > 1_000_000 {
            anyhow::bail!(
                "--sightings-max {} is over 1000000: give a smaller table",
                self.sightings_max
            );
        }
        subscriber.sightings = crate::subscriber::sightings::SightingsConfig {
            service: self.service,
            interval: Duration::from_millis(self.sightings_interval_ms),
            max: self.sightings_max,
        };
        subscriber.sightings.validate().map_err(|e| {
            anyhow::anyhow!("--service/--sightings-interval-ms/--sightings-max: {e}")
        })?;
        self.checkpoints.apply(&mut subscriber)?;
        subscriber.data_dir = Some(self.data_dir);
        subscriber.staleness_bound = Duration::from_millis(self.staleness_bound_ms);
        subscriber.silence_timeout = Duration::from_millis(self.silence_timeout_ms);
        subscriber.policy = match self.policy {
            PolicyArg::FailClosed => StalePolicy::FailClosed,
            PolicyArg::FailOpen => StalePolicy::FailOpen,
        };
        let issuers = match &self.issuers {
            Some(path) => crate::token::IssuersFile::load(path).context("--issuers")?,
            None => vec![],
        };
        Ok(SidecarConfig {
            subscriber,
            http_listen: self.http,
            grpc_listen: self.grpc,
            check_tls: self.check_tls.then_some(security),
            issuers,
            pass_claims: self.pass_claims,
            http_timeouts: crate::transport::HttpTimeouts::default(),
        })
    }
}

/// Runs `recall sidecar`.
pub async fn run(args: SidecarArgs) -> anyhow::Result<()> {
    let json = args.log_json;
    init_tracing(json);
    let config = args.resolve()?;
    config.validate()?;
    let http = tokio::net::TcpListener::bind(&config.http_listen)
        .await
        .with_context(|| format!("cannot listen on {} (--http)", config.http_listen))?;
    let grpc = match &config.grpc_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (--grpc)"))?,
        ),
        None => None,
    };
    crate::sidecar::run(config, http, grpc, shutdown_signal()).await
}
