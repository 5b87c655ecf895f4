//! How a subscriber follows a cluster.

use std::path::PathBuf;
use std::time::Duration;

use recall_filter::Mode;

use super::StalePolicy;

/// The configuration of an embedded subscriber or a sidecar.
#[derive(Clone, Debug)]
pub struct SubscriberConfig {
    /// Nodes of the cluster (`host:port`); any of them serves the stream.
    pub cluster: Vec<String>,
    /// A stable id, unique in the fleet (operators see it in convergence reports).
    pub id: String,
    /// Full (exact) or lite (Bloom only) filters.
    pub mode: Mode,
    /// Where the state is persisted for warm restarts; `None` keeps it in memory only.
    pub data_dir: Option<PathBuf>,
    /// Past this long without contact, answers are stale.
    pub staleness_bound: Duration,
    /// What a stale answer does.
    pub policy: StalePolicy,
    /// The first reconnect delay; it doubles up to `backoff_max`, with jitter.
    pub backoff_min: Duration,
    /// The longest reconnect delay.
    pub backoff_max: Duration,
    /// How often a changed state is written to disk, in the background; a write that took T
    /// waits at least 10 T before the next, so a large state cannot crowd out the stream.
    pub persist_every: Duration,
    /// A stream silent this long (nodes send a heartbeat every 500 ms) is dead: the subscriber
    /// drops it and connects again, to the next node.
    pub silence_timeout: Duration,
}

impl SubscriberConfig {
    /// Defaults for following `cluster` as `id`.
    pub fn new(cluster: Vec<String>, id: impl Into<String>) -> Self {
        Self {
            cluster,
            id: id.into(),
            mode: Mode::Full,
            data_dir: None,
            staleness_bound: Duration::from_secs(10),
            policy: StalePolicy::FailClosed,
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(5),
            persist_every: Duration::from_secs(1),
            silence_timeout: Duration::from_secs(2),
        }
    }

    /// Refuses a configuration that cannot work, naming the field.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.cluster.is_empty() {
            anyhow::bail!("cluster: name at least one node (host:port)");
        }
        if self.id.is_empty() || self.id.len() > 256 {
            anyhow::bail!("id: must be 1 to 256 bytes");
        }
        if self.backoff_min.is_zero() || self.backoff_max < self.backoff_min {
            anyhow::bail!("backoff: the minimum must be positive and at most the maximum");
        }
        if self.silence_timeout < Duration::from_millis(100) {
            anyhow::bail!("silence_timeout: at least 100 ms (nodes send a heartbeat every 500 ms)");
        }
        Ok(())
    }
}
