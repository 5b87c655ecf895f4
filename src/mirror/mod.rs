//! The Redis mirror (`recall mirror --redis URL`): a subscriber that keeps the authoritative set
//! in Redis for readers that only speak Redis. One key per revoked fingerprint (expiring with
//! its revocation, plus a grace), the rules in a hash, a PUBLISH per change, and the applied
//! version written in the same MULTI/EXEC as the changes, so a restarted mirror resumes exactly
//! from the version Redis holds, and a Redis that lost its data is refilled from a snapshot.
//!
//! - [`layout`]: the key names and change messages readers rely on (docs/mirror.md);
//! - [`state`]: what the mirror knows of the set, and each delta checked into changes (no I/O);
//! - [`redis_sink`]: the transactions, the refill and reading the state back;
//! - [`follow`]: the stream from the cluster into Redis, with reconnects on either side.
//!
//! It never acks a version before Redis holds it, and never writes a change it cannot place
//! after the version Redis holds: on any doubt it starts over from what Redis says.

pub mod follow;
pub mod layout;
pub mod redis_sink;
pub mod state;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use recall_core::Timestamp;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use layout::Layout;
pub use redis_sink::{RedisSink, SinkError};

use crate::node::clock::Clock;
use crate::subscriber::SubscriberConfig;

/// How the mirror follows the cluster and where it writes.
#[derive(Clone, Debug)]
pub struct MirrorConfig {
    /// The cluster side: nodes, the subscriber id and its certificate, backoff and silence
    /// timeout (the filter settings are unused).
    pub subscriber: SubscriberConfig,
    /// The Redis URL, e.g. `redis://127.0.0.1:6379/0`.
    pub redis_url: String,
    /// The prefix of every key and of the channel (`recall`).
    pub prefix: String,
    /// How long after a revocation's expiry its key stays in Redis: at least the leeway readers
    /// give `exp`, so a token they still accept is still found revoked.
    pub expiry_grace: Duration,
    /// How long to wait for Redis at start before failing (a wrong port fails clearly instead of
    /// retrying for ever); once it has answered, the mirror retries with backoff however long
    /// Redis is gone.
    pub redis_start_timeout: Duration,
    /// Keep every written delta's lag (for the benchmark); off by default.
    pub record_lags: bool,
}

impl MirrorConfig {
    /// Defaults for mirroring into `redis_url`.
    pub fn new(subscriber: SubscriberConfig, redis_url: impl Into<String>) -> Self {
        Self {
            subscriber,
            redis_url: redis_url.into(),
            prefix: "recall".into(),
            expiry_grace: Duration::from_secs(300),
            redis_start_timeout: Duration::from_secs(10),
            record_lags: false,
        }
    }

    /// Refuses a configuration that cannot work, naming the field.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.subscriber.validate()?;
        if self.prefix.is_empty() || self.prefix.contains(char::is_whitespace) {
            anyhow::bail!("prefix: must be non-empty and without spaces, e.g. \"recall\"");
        }
        Ok(())
    }
}

/// What the mirror has written, for tests, benchmarks and logs.
#[derive(Debug, Default)]
pub struct MirrorStats {
    /// The version Redis holds, as last written.
    pub version: AtomicU64,
    /// Transactions of deltas written.
    pub writes: AtomicU64,
    /// Deltas written.
    pub deltas: AtomicU64,
    /// Changes written (keys set or removed, rules set or removed).
    pub changes: AtomicU64,
    /// Refills from a snapshot.
    pub refills: AtomicU64,
    /// When recording: each written delta's lag, ms from the leader accepting it to Redis
    /// holding it (clock skew included).
    pub lags_ms: std::sync::Mutex<Option<Vec<i64>>>,
}

impl MirrorStats {
    /// One transaction written: up to `version`, `changes` in all, for deltas the leader
    /// accepted at `ats`, now held by Redis at `now`.
    fn wrote(&self, version: u64, changes: u64, ats: &[Timestamp], now: Timestamp) {
        self.version.store(version, Ordering::Relaxed);
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.deltas.fetch_add(ats.len() as u64, Ordering::Relaxed);
        self.changes.fetch_add(changes, Ordering::Relaxed);
        if let Ok(mut lags) = self.lags_ms.lock()
            && let Some(lags) = lags.as_mut()
        {
            lags.extend(ats.iter().map(|at| now.as_millis() - at.as_millis()));
        }
    }

    fn refilled(&self, version: u64) {
        self.version.store(version, Ordering::Relaxed);
        self.refills.fetch_add(1, Ordering::Relaxed);
    }
}

/// A running mirror.
pub struct Mirror {
    stats: Arc<MirrorStats>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Mirror {
    /// Checks the configuration and that Redis answers (within `redis_start_timeout`), then
    /// mirrors in the background.
    pub async fn start(config: MirrorConfig, clock: Clock) -> anyhow::Result<Self> {
        config.validate()?;
        let mut sink = RedisSink::new(
            &config.redis_url,
            Layout::new(config.prefix.clone()),
            config.expiry_grace,
            clock.clone(),
        )?;
        let deadline = tokio::time::Instant::now() + config.redis_start_timeout;
        loop {
            match sink.connect().await {
                Ok(()) => break,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    anyhow::bail!(
                        "{e}; is redis-server running there? (waited {:?})",
                        config.redis_start_timeout
                    )
                }
                Err(e) => {
                    tracing::info!(error = %e, "waiting for Redis");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        // A state Redis cannot give back (keys the mirror never wrote) is refused now.
        sink.load().await?;
        let stats = Arc::new(MirrorStats {
            lags_ms: std::sync::Mutex::new(config.record_lags.then(Vec::new)),
            ..MirrorStats::default()
        });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(follow::run(config, sink, stats.clone(), clock, stopped));
        Ok(Self { stats, stop, task })
    }

    /// What it has written.
    pub fn stats(&self) -> &Arc<MirrorStats> {
        &self.stats
    }

    /// Stops mirroring (what Redis holds stays, at the version it says).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Runs until `shutdown` resolves, then stops.
    pub async fn run_until(self, shutdown: impl std::future::Future<Output = ()>) {
        shutdown.await;
        self.shutdown().await;
    }
}
