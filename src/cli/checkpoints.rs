//! The checkpoint flags a sidecar and a relay share: the nodes' keys, and how soon a
//! checkpoint a quorum of them signed must cover a change the subscriber holds.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::subscriber::SubscriberConfig;

/// `--checkpoint-keys` and `--checkpoint-lag-ms`.
#[derive(Debug, clap::Args)]
pub struct CheckpointArgs {
    /// The nodes' checkpoint keys, one `NODE_ID HEX_KEY` per line, as `recall audit keys`
    /// prints them: a checkpoint a node relays then counts only when a quorum of these keys
    /// signed it, and the subscriber checks its own set against it. Without it the digests of
    /// checkpoints are compared but not who signed them.
    #[arg(long, env = "RECALL_CHECKPOINT_KEYS")]
    checkpoint_keys: Option<PathBuf>,
    /// With --checkpoint-keys: how many milliseconds a change may be held before a checkpoint
    /// a quorum of those keys signed covers it (2000..3600000). Past half of it the subscriber
    /// moves to another upstream; past all of it answers are stale, so a node that withholds
    /// checkpoints cannot keep it on a set no quorum signed.
    #[arg(long, env = "RECALL_CHECKPOINT_LAG_MS", default_value_t = 30_000)]
    checkpoint_lag_ms: u64,
}

impl CheckpointArgs {
    /// Sets the keys (read from their file) and the lag on `config`.
    pub fn apply(&self, config: &mut SubscriberConfig) -> anyhow::Result<()> {
        if let Some(path) = &self.checkpoint_keys {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--checkpoint-keys: reading {}", path.display()))?;
            let keys = crate::node::history::export::parse_trust(&text).map_err(|e| {
                anyhow::anyhow!(
                    "--checkpoint-keys {}: {e} (write it with `recall audit keys`)",
                    path.display()
                )
            })?;
            config.checkpoint_keys = Some(keys);
        }
        let ms = self.checkpoint_lag_ms;
        if !(2_000..=3_600_000).contains(&ms) {
            anyhow::bail!(
                "--checkpoint-lag-ms {ms} is out of range: give 2000 to 3600000 milliseconds \
                 (nodes sign a checkpoint every second)"
            );
        }
        config.checkpoint_lag = Duration::from_millis(ms);
        Ok(())
    }
}
