//! `recall mirror`: flags and environment into a [`MirrorConfig`], tracing set-up, then the
//! mirror runs until Ctrl-C or SIGTERM.

use std::time::Duration;

use super::server::{init_tracing, shutdown_signal};
use crate::mirror::{Mirror, MirrorConfig};
use crate::subscriber::SubscriberConfig;

/// Flags of `recall mirror`. Precedence: flag, then environment, then the default.
#[derive(Debug, clap::Args)]
pub struct MirrorArgs {
    /// The Redis to keep the set in, e.g. redis://127.0.0.1:6379/0 (redis://:PASSWORD@HOST:PORT/DB
    /// with a password).
    #[arg(long, env = "RECALL_MIRROR_REDIS")]
    redis: String,
    /// Nodes of the cluster to follow (`host:port`, comma-separated); any of them serves the
    /// stream, and the mirror moves to the next when one fails.
    #[arg(
        long,
        env = "RECALL_CLUSTER",
        default_value = "127.0.0.1:7070",
        value_delimiter = ','
    )]
    cluster: Vec<String>,
    /// The subscriber id (operators see it in `recall status`). Its certificate is
    /// PKI/subscriber-ID.pem unless --cert names one; with --cert, the default is the id the
    /// certificate names. Default: mirror.
    #[arg(long, env = "RECALL_MIRROR_ID")]
    id: Option<String>,
    /// The prefix of the mirror's keys and channel: PREFIX:rev:<fingerprint>, PREFIX:rules,
    /// PREFIX:mirror, PREFIX:changes.
    #[arg(long, env = "RECALL_MIRROR_PREFIX", default_value = "recall")]
    prefix: String,
    /// How long a key outlives its revocation's expiry; at least the leeway your readers give a
    /// token's `exp`; the default matches the cluster's default prune grace.
    #[arg(long, env = "RECALL_MIRROR_EXPIRY_GRACE", default_value = "5m", value_parser = humantime::parse_duration)]
    expiry_grace: Duration,
    /// How long to wait at start for Redis to answer before giving up (later outages are
    /// retried with backoff for as long as they last).
    #[arg(long, env = "RECALL_MIRROR_REDIS_WAIT", default_value = "10s", value_parser = humantime::parse_duration)]
    redis_wait: Duration,
    /// A stream silent this many milliseconds is dead (nodes send a heartbeat every 500 ms).
    #[arg(long, env = "RECALL_SILENCE_TIMEOUT_MS", default_value_t = 2_000)]
    silence_timeout_ms: u64,
    /// Log as JSON lines instead of readable text.
    #[arg(long, env = "RECALL_LOG_JSON")]
    log_json: bool,
    /// Certificates.
    #[command(flatten)]
    tls: super::TlsArgs,
}

impl MirrorArgs {
    fn resolve(self) -> anyhow::Result<MirrorConfig> {
        let stem = format!("subscriber-{}", self.id.as_deref().unwrap_or("mirror"));
        let security = self.tls.security(&stem)?;
        let mut subscriber = match (self.id, &self.tls.cert) {
            (Some(id), _) => SubscriberConfig::new(self.cluster, id, security),
            (None, Some(_)) => SubscriberConfig::for_identity(self.cluster, security)?,
            (None, None) => SubscriberConfig::new(self.cluster, "mirror", security),
        };
        subscriber.silence_timeout = Duration::from_millis(self.silence_timeout_ms);
        let mut config = MirrorConfig::new(subscriber, self.redis);
        config.prefix = self.prefix;
        config.expiry_grace = self.expiry_grace;
        config.redis_start_timeout = self.redis_wait;
        Ok(config)
    }
}

/// Runs `recall mirror`.
pub async fn run(args: MirrorArgs) -> anyhow::Result<()> {
    init_tracing(args.log_json);
    let config = args.resolve()?;
    let mirror = Mirror::start(config, crate::node::clock::system()).await?;
    mirror.run_until(shutdown_signal()).await;
    Ok(())
}
