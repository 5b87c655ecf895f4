//! `recall relay`: flags and environment into a [`RelayConfig`], then the relay runs until
//! Ctrl-C or SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::server::{init_tracing, shutdown_signal};
use crate::relay::{Relay, RelayConfig};
use crate::subscriber::SubscriberConfig;

/// Flags of `recall relay`. Precedence: flag, then environment, then the default.
#[derive(Debug, clap::Args)]
pub struct RelayArgs {
    /// Where to follow the stream from (`host:port`, comma-separated): the cluster's nodes or
    /// other relays, tried in turn.
    #[arg(
        long,
        env = "RECALL_UPSTREAM",
        default_value = "127.0.0.1:7070",
        value_delimiter = ','
    )]
    upstream: Vec<String>,
    /// Where subscribers (sidecars, other relays) connect, over mutual TLS.
    #[arg(long, env = "RECALL_RELAY_LISTEN", default_value = "127.0.0.1:7090")]
    listen: String,
    /// Where /healthz, /readyz, /v1/status and /metrics are served (plaintext: keep it on
    /// loopback or behind the host's firewall). Default: none.
    #[arg(long, env = "RECALL_RELAY_HTTP")]
    http: Option<String>,
    /// The relay id (its certificate is PKI/relay-ID.pem unless --cert names one; with --cert
    /// the default is the id the certificate names). Default: dev-relay.
    #[arg(long, env = "RECALL_RELAY_ID")]
    id: Option<String>,
    /// Where the relay persists its state for warm restarts.
    #[arg(
        long,
        env = "RECALL_RELAY_DATA_DIR",
        default_value = "./recall-data/relay"
    )]
    data_dir: PathBuf,
    /// Past this many milliseconds without its upstream vouching for its state, the relay ends
    /// its streams so its subscribers move to a relay or node in touch.
    #[arg(long, env = "RECALL_STALENESS_BOUND_MS", default_value_t = 10_000)]
    staleness_bound_ms: u64,
    /// The most subscribers it serves directly (1..1000000).
    #[arg(long, env = "RECALL_RELAY_MAX_SUBSCRIBERS", default_value_t = 10_000)]
    max_subscribers: usize,
    /// Checkpoints: whose signatures count, and how soon they must cover a change.
    #[command(flatten)]
    checkpoints: super::checkpoints::CheckpointArgs,
    /// Log as JSON lines instead of readable text.
    #[arg(long, env = "RECALL_LOG_JSON")]
    log_json: bool,
    /// Certificates.
    #[command(flatten)]
    tls: super::TlsArgs,
}

impl RelayArgs {
    fn resolve(self) -> anyhow::Result<RelayConfig> {
        let stem = format!("relay-{}", self.id.as_deref().unwrap_or("dev-relay"));
        let security = self.tls.security(&stem)?;
        let mut sub = match self.id {
            Some(id) => SubscriberConfig::new(self.upstream, id, security),
            None => SubscriberConfig::for_identity(self.upstream, security)?,
        };
        sub.data_dir = Some(self.data_dir);
        sub.staleness_bound = Duration::from_millis(self.staleness_bound_ms);
        self.checkpoints.apply(&mut sub)?;
        if !(1..=1_000_000).contains(&self.max_subscribers) {
            anyhow::bail!(
                "--max-subscribers {} is out of range: give 1 to 1000000",
                self.max_subscribers
            );
        }
        let mut config = RelayConfig::new(sub);
        config.streams.max_subscribers = self.max_subscribers;
        Ok(config)
    }
}

/// Runs `recall relay`.
pub async fn run(args: RelayArgs) -> anyhow::Result<()> {
    init_tracing(args.log_json);
    let (listen, http) = (args.listen.clone(), args.http.clone());
    let config = args.resolve()?;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (--listen)"))?;
    let http = match &http {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (--http)"))?,
        ),
        None => None,
    };
    let relay = Arc::new(Relay::start(config, listener).await?);
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let served = http.map(|l| {
        tokio::spawn(crate::relay::http::serve(relay.clone(), l, async move {
            let _ = stopped.wait_for(|s| *s).await;
        }))
    });
    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop.send(true);
    if let Some(h) = served {
        h.await.context("the HTTP task failed")??;
    }
    match Arc::try_unwrap(relay) {
        Ok(relay) => relay.shutdown().await,
        Err(_) => tracing::warn!("the relay is still in use; leaving without persisting"),
    }
    Ok(())
}
