//! How a subscriber follows a cluster.

use std::path::PathBuf;
use std::time::Duration;

use recall_filter::Mode;

use super::StalePolicy;
use crate::transport::Security;

/// The configuration of an embedded subscriber or a sidecar.
#[derive(Clone, Debug)]
pub struct SubscriberConfig {
    /// Nodes of the cluster (`host:port`); any of them serves the stream, lite-mode
    /// confirmations and sightings reports.
    pub cluster: Vec<String>,
    /// Where to follow the stream from instead, when not empty: relays (`recall relay`) or
    /// nodes, tried in turn.
    pub upstream: Vec<String>,
    /// A stable id, unique in the fleet (operators see it in convergence reports); it must be
    /// the subscriber id of the certificate in `security`.
    pub id: String,
    /// The subscriber's credentials (a `spiffe://DOMAIN/subscriber/ID` certificate).
    pub security: Security,
    /// Full (exact) or lite (Bloom only) filters.
    pub mode: Mode,
    /// Where the state is persisted for warm restarts; `None` keeps it in memory only.
    pub data_dir: Option<PathBuf>,
    /// Past this long (monotonic clock) without a node vouching for the state, answers are stale.
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
    /// How a lite-mode subscriber confirms its Bloom filter hits with the cluster (unused in
    /// full mode, whose answers are exact).
    pub confirm: super::confirm::ConfirmConfig,
    /// How denials of revoked credentials are counted and reported to the cluster.
    pub sightings: super::sightings::SightingsConfig,
    /// The nodes' checkpoint keys, by node id (`recall audit keys` prints them). With them, a
    /// checkpoint a heartbeat carries counts only when its signatures verify and a quorum of
    /// these keys signed it, so no single node can present one alone; a refused one ends the
    /// stream. `None` compares the checkpoints' digests without checking who signed.
    pub checkpoint_keys: Option<std::collections::BTreeMap<u64, [u8; 32]>>,
    /// With `checkpoint_keys`: how long a change may be held before a checkpoint a quorum of
    /// those keys signed covers it. Past half of it the subscriber leaves the node it follows
    /// for another (a new stream carries the latest checkpoint); past all of it answers are
    /// stale, so a node that withholds checkpoints cannot keep a subscriber on a set no quorum
    /// vouched for. Nodes sign every second; allow for commit latency under load.
    pub checkpoint_lag: Duration,
}

impl SubscriberConfig {
    /// Defaults for following `cluster` as `id`, with `security`.
    pub fn new(cluster: Vec<String>, id: impl Into<String>, security: Security) -> Self {
        Self {
            cluster,
            upstream: Vec::new(),
            id: id.into(),
            security,
            mode: Mode::Full,
            data_dir: None,
            staleness_bound: Duration::from_secs(10),
            policy: StalePolicy::FailClosed,
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(5),
            persist_every: Duration::from_secs(1),
            silence_timeout: Duration::from_secs(2),
            confirm: Default::default(),
            sightings: Default::default(),
            checkpoint_keys: None,
            checkpoint_lag: Duration::from_secs(30),
        }
    }

    /// Where the stream is followed from: `upstream`, or else the cluster's nodes.
    pub fn upstream(&self) -> &[String] {
        if self.upstream.is_empty() {
            &self.cluster
        } else {
            &self.upstream
        }
    }

    /// The bounds answers are checked against.
    pub fn bounds(&self) -> super::Bounds {
        super::Bounds {
            staleness: self.staleness_bound,
            unwitnessed: self.checkpoint_keys.as_ref().map(|_| self.checkpoint_lag),
        }
    }

    /// Defaults for following `cluster` as the subscriber (or relay) `security`'s certificate
    /// names.
    pub fn for_identity(cluster: Vec<String>, security: Security) -> anyhow::Result<Self> {
        let id = match security.identity() {
            Some(identity) => identity
                .stream_id()
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "the certificate names {identity}, not a subscriber \
                         (spiffe://DOMAIN/subscriber/ID) or relay (spiffe://DOMAIN/relay/ID)"
                    )
                })?
                .to_owned(),
            None => "bench-subscriber".to_owned(),
        };
        Ok(Self::new(cluster, id, security))
    }

    /// Refuses a configuration that cannot work, naming the field.
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(identity) = self.security.identity()
            && identity.stream_id() != Some(self.id.as_str())
        {
            anyhow::bail!(
                "id: {:?} is not the subscriber the certificate names ({identity}); use the \
                 certificate's id or a certificate issued for {:?}",
                self.id,
                self.id
            );
        }
        if self.cluster.is_empty() {
            anyhow::bail!("cluster: name at least one node (host:port)");
        }
        if self.id.is_empty() || self.id.len() > 256 {
            anyhow::bail!("id: must be 1 to 256 bytes");
        }
        if self.backoff_min.is_zero() || self.backoff_max < self.backoff_min {
            anyhow::bail!("backoff: the minimum must be positive and at most the maximum");
        }
        self.sightings.validate()?;
        if self.checkpoint_lag < Duration::from_secs(2) {
            anyhow::bail!(
                "checkpoint_lag: at least 2 s (nodes sign a checkpoint every second, and it \
                 must commit before it reaches subscribers)"
            );
        }
        if self.silence_timeout < Duration::from_millis(100) {
            anyhow::bail!("silence_timeout: at least 100 ms (nodes send a heartbeat every 500 ms)");
        }
        Ok(())
    }
}
