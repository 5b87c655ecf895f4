//! The embedded subscriber: follow a recall cluster and check tokens locally. The sidecar is a
//! thin server around it, and a Rust service can embed it directly:
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use recall::subscriber::{Subscriber, SubscriberConfig};
//! use recall::transport::{Security, TlsFiles};
//! // The CA bundle, and a certificate whose URI SAN is spiffe://DOMAIN/subscriber/ID.
//! let files = TlsFiles::in_dir("recall-data/pki".as_ref(), "subscriber-my-service");
//! let security = Security::tls(files, "recall.local")?;
//! let sub = Subscriber::start(SubscriberConfig::for_identity(vec!["127.0.0.1:7070".into()], security)?)
//!     .await?;
//! sub.wait_synced(std::time::Duration::from_secs(5)).await?;
//! let facts = recall_core::TokenFacts { iss: "https://login.example", jti: Some("abc"), ..Default::default() };
//! if sub.check(&facts).deny() { /* refuse the request */ }
//! # Ok(()) }
//! ```
//!
//! - [`follow`]: the stream client (Hello, snapshot, deltas, heartbeats, acks, reconnects);
//! - [`persist`]: the state on disk for warm restarts;
//! - [`answer`]: a check's answer with its staleness and the policy applied;
//! - [`confirm`]: lite mode's confirmations of Bloom filter hits with the cluster;
//! - [`contact`]: when a node last vouched for the state, on a monotonic clock;
//! - [`sightings`]: denials of revoked credentials, counted and reported to the cluster.

pub mod answer;
pub mod config;
pub mod confirm;
pub mod contact;
pub mod follow;
pub mod held;
pub mod persist;
pub mod sightings;
pub mod witness;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use recall_core::{Digest, Kind, Status, TokenFacts};
use recall_filter::{Filter, Reader};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use answer::{Answer, Bounds, Source, StalePolicy};
pub use config::SubscriberConfig;

/// Counters and the last contact, shared by the follow task and the readers.
#[derive(Debug, Default)]
pub struct Shared {
    /// The last heartbeat in which a node vouched for its state (monotonic clock).
    pub contact: contact::Moment,
    /// Whether a node has vouched for this subscriber's state since start: a sync completed
    /// and a heartbeat without a `stale_reason` confirmed it (warm-started state counts once a
    /// node confirmed it).
    pub synced: AtomicBool,
    /// Whether the state is known to differ from the authority's (a digest mismatch): answers
    /// are stale until the resync's snapshot lands.
    pub diverged: AtomicBool,
    /// Snapshots applied.
    pub snapshots: AtomicU64,
    /// Deltas applied.
    pub deltas: AtomicU64,
    /// Resyncs a node asked for.
    pub resyncs: AtomicU64,
    /// Times the filter's digest differed from the authority's (each forces a snapshot).
    pub digest_mismatches: AtomicU64,
    /// Connections opened.
    pub connects: AtomicU64,
    /// Checks answered while stale.
    pub stale_answers: AtomicU64,
    /// Snapshots begun, by reason: one per [`crate::wire::SNAPSHOT_REASONS`], then "other".
    pub snapshot_reasons: [AtomicU64; 7],
    /// Snapshots that rebuilt lite-mode Bloom shards filled past their design rate.
    pub lite_rebuilds: AtomicU64,
    /// The version of the latest checkpoint a quorum signed that this subscriber's set matched
    /// (0: none yet).
    pub witnessed: AtomicU64,
    /// Checkpoints refused: their signatures did not verify against the trusted keys, or too
    /// few trusted nodes signed (each ends the stream).
    pub witness_refusals: AtomicU64,
    /// With [`SubscriberConfig::checkpoint_keys`]: since when the oldest change this
    /// subscriber holds has gone without a checkpoint a quorum signed covering it (none: every
    /// change is covered). Past [`SubscriberConfig::checkpoint_lag`], answers are stale.
    pub unwitnessed: contact::Moment,
    /// The latest checkpoint a quorum signed that this subscriber's set matched, as a relay
    /// passes it on downstream.
    pub witness: std::sync::Mutex<Option<Arc<recall_stream::Witness>>>,
    /// The highest commit index the nodes followed have told of (their heartbeats').
    pub upstream_committed: AtomicU64,
}

impl Shared {
    /// Counts a snapshot begun for `reason`.
    pub fn snapshot_begun(&self, reason: &str) {
        let i = crate::wire::SNAPSHOT_REASONS
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(crate::wire::SNAPSHOT_REASONS.len());
        self.snapshot_reasons[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// A running subscriber.
pub struct Subscriber {
    reader: Reader,
    shared: Arc<Shared>,
    /// Confirms lite-mode hits with the cluster (`None` in full mode).
    confirmer: Option<confirm::Confirmer>,
    config: SubscriberConfig,
    state: watch::Receiver<follow::FollowState>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    /// Denials of revoked credentials since the last report.
    sightings: Arc<sightings::Sightings>,
    /// Sends them to the cluster.
    reporter: JoinHandle<()>,
}

/// What a subscriber holds, for status pages and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriberStatus {
    /// The version applied.
    pub version: u64,
    /// When that version was applied (Unix milliseconds, this host's clock).
    pub version_at_ms: i64,
    /// The digest of what it holds.
    pub digest: Digest,
    /// Revoked fingerprints held.
    pub entries: usize,
    /// Whether it has completed a sync.
    pub synced: bool,
    /// Snapshots applied since start.
    pub snapshots: u64,
    /// Deltas applied since start.
    pub deltas: u64,
    /// Resyncs since start.
    pub resyncs: u64,
    /// Digest mismatches since start.
    pub digest_mismatches: u64,
    /// The version of the latest checkpoint a quorum of nodes signed that this subscriber's set
    /// matched at that version (0: none yet).
    pub witnessed_version: u64,
    /// Whether checkpoints are checked against trusted node keys
    /// ([`SubscriberConfig::checkpoint_keys`]); if not, only their digests are compared.
    pub witness_verified: bool,
    /// Checkpoints refused since start (bad signatures, too few trusted signers).
    pub witness_refusals: u64,
    /// With checkpoint keys: how long the oldest change held has gone without a checkpoint a
    /// quorum signed covering it, in milliseconds (`None`: every change is covered, or no keys).
    pub unwitnessed_ms: Option<u64>,
    /// Connections opened since start.
    pub connects: u64,
    /// The node it follows now, if connected.
    pub node: Option<String>,
    /// Why that node cannot vouch that its state is current (e.g. "no_leader_contact"), if it
    /// cannot: its heartbeats do not count as contact.
    pub node_stale_reason: Option<String>,
}

impl Subscriber {
    /// Loads the persisted state (if any), then follows the cluster in the background.
    pub async fn start(config: SubscriberConfig) -> anyhow::Result<Self> {
        Self::start_with(config, |filter| filter, None).await
    }

    /// As [`Subscriber::start`], following the stream into what `hold` makes of the loaded
    /// filter (a relay keeps the recent deltas beside it), and reporting upstream what
    /// `reporter` says is behind it.
    pub async fn start_with<R: held::Held>(
        config: SubscriberConfig,
        hold: impl FnOnce(Filter) -> R,
        relayed: Option<Arc<dyn held::Reporter>>,
    ) -> anyhow::Result<Self> {
        config.validate()?;
        let mut filter = Filter::new(config.mode, recall_core::FingerprintSeed::default());
        if let Some(dir) = &config.data_dir {
            let path = persist::path(dir);
            let loaded = tokio::task::spawn_blocking(move || persist::load(&path)).await?;
            match loaded {
                Ok(Some(view)) => match filter.load_view(&view) {
                    Ok(()) => tracing::info!(
                        version = view.version,
                        entries = view.fingerprints.len(),
                        "warm start from the persisted state"
                    ),
                    Err(e) => tracing::warn!(error = %e, "persisted state refused; starting empty"),
                },
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the persisted state; starting empty")
                }
            }
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let reader = filter.reader();
        let confirmer = match config.mode {
            recall_filter::Mode::Lite => Some(confirm::Confirmer::new(
                &config.cluster,
                config.security.clone(),
                config.confirm,
            )?),
            recall_filter::Mode::Full => None,
        };
        let shared = Arc::new(Shared::default());
        let (stop, stopped) = watch::channel(false);
        let (state_tx, state) = watch::channel(follow::FollowState::default());
        let sightings = Arc::new(sightings::Sightings::new(&config.id, &config.sightings));
        let reporter = tokio::spawn(sightings::report(
            sightings.clone(),
            config.cluster.clone(),
            config.security.clone(),
            config.sightings.interval,
            state.clone(),
            stop.subscribe(),
        ));
        let task = tokio::spawn(follow::run(
            hold(filter),
            config.clone(),
            shared.clone(),
            state_tx,
            stopped,
            relayed,
        ));
        Ok(Self {
            reader,
            shared,
            confirmer,
            config,
            state,
            stop,
            task,
            sightings,
            reporter,
        })
    }

    /// Checks a token's facts against the local filter. In lite mode a hit answers
    /// `possibly_revoked`; [`Subscriber::check_confirmed`] confirms it with the cluster.
    pub fn check(&self, facts: &TokenFacts<'_>) -> Answer {
        self.sighted(facts, self.answer(self.reader.check_token(facts)))
    }

    /// `answer`, its denial counted as a sighting of what revoked `facts` (only an exact
    /// `revoked` is: a stale, allowed or unconfirmed answer is not).
    fn sighted(&self, facts: &TokenFacts<'_>, answer: Answer) -> Answer {
        if answer.status == Status::Revoked {
            self.sightings.note(facts, &answer.matches, now_ms());
        }
        answer
    }

    /// Checks a token's facts against the local filter and, in lite mode, confirms a Bloom hit
    /// with the cluster (a miss is answered locally, at the cost of [`Subscriber::check`]).
    pub async fn check_confirmed(&self, facts: &TokenFacts<'_>) -> Answer {
        let checked = self.reader.check_token(facts);
        if self.confirmer.is_none() || checked.verdict.status() != Status::PossiblyRevoked {
            return self.sighted(facts, self.answer(checked));
        }
        // Only a hit reads the clock for a deadline: a miss costs what `check` does.
        let deadline = self.confirm_deadline();
        self.confirmed(facts, checked, deadline).await
    }

    /// When a confirmation started now must be done (the configured confirmation timeout).
    pub fn confirm_deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.config.confirm.timeout
    }

    /// The answer to a check its reader made of `facts`: a lite-mode hit is confirmed with the
    /// cluster before `deadline` (the node followed now is asked first); anything else, or a
    /// full-mode answer, is [`Subscriber::answer`].
    pub async fn confirmed(
        &self,
        facts: &TokenFacts<'_>,
        checked: recall_filter::Checked,
        deadline: tokio::time::Instant,
    ) -> Answer {
        let Some(confirmer) = self
            .confirmer
            .as_ref()
            .filter(|_| checked.verdict.status() == Status::PossiblyRevoked)
        else {
            return self.sighted(facts, self.answer(checked));
        };
        let first = self.state.borrow().node.clone();
        let (checked, source) = confirmer
            .confirm(facts, checked, first.as_deref(), deadline)
            .await;
        self.sighted(facts, self.answer_from(checked, source))
    }

    /// The lite-mode confirmer (`None` in full mode).
    pub fn confirmer(&self) -> Option<&confirm::Confirmer> {
        self.confirmer.as_ref()
    }

    /// Checks one key.
    pub fn check_key(&self, kind: Kind, namespace: &str, value: &str) -> Answer {
        let answer = self.answer(self.reader.check_key(kind, namespace, value));
        if answer.status == Status::Revoked {
            let revocation = sightings::Revocation {
                rule: false,
                kind: kind.name(),
                namespace: namespace.to_owned(),
                value: value.to_owned(),
            };
            self.sightings.note_one(revocation, now_ms());
        }
        answer
    }

    /// The sightings counted since the last report, and their counters.
    pub fn sightings(&self) -> &Arc<sightings::Sightings> {
        &self.sightings
    }

    /// The answer to a check its [`Subscriber::reader`] made: staleness (now) and policy applied.
    pub fn answer(&self, checked: recall_filter::Checked) -> Answer {
        self.answer_from(checked, Source::Local)
    }

    fn answer_from(&self, checked: recall_filter::Checked, source: Source) -> Answer {
        answer::answer(
            checked,
            source,
            &self.shared,
            self.config.bounds(),
            self.config.policy,
            tokio::time::Instant::now(),
        )
    }

    /// A reader for checks on other threads (no staleness information).
    pub fn reader(&self) -> Reader {
        self.reader.clone()
    }

    /// What it holds.
    pub fn status(&self) -> SubscriberStatus {
        let s = self.state.borrow().clone();
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SubscriberStatus {
            version: s.version,
            version_at_ms: s.version_at_ms,
            digest: s.digest,
            entries: s.entries,
            synced: self.shared.synced.load(Ordering::Relaxed),
            snapshots: c(&self.shared.snapshots),
            deltas: c(&self.shared.deltas),
            resyncs: c(&self.shared.resyncs),
            digest_mismatches: c(&self.shared.digest_mismatches),
            witnessed_version: c(&self.shared.witnessed),
            witness_verified: self.config.checkpoint_keys.is_some(),
            witness_refusals: c(&self.shared.witness_refusals),
            unwitnessed_ms: self
                .shared
                .unwitnessed
                .since(tokio::time::Instant::now())
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            connects: c(&self.shared.connects),
            node: s.node,
            node_stale_reason: s.node_stale_reason,
        }
    }

    /// Waits until the first full sync (or fails after `timeout`).
    pub async fn wait_synced(&self, timeout: Duration) -> anyhow::Result<()> {
        self.wait_version(0, timeout).await
    }

    /// Waits until the subscriber has applied `version` (and a node has vouched for its state at
    /// least once).
    pub async fn wait_version(&self, version: u64, timeout: Duration) -> anyhow::Result<()> {
        let mut state = self.state.clone();
        tokio::time::timeout(
            timeout,
            state.wait_for(|s| s.version >= version && s.synced),
        )
        .await
        .map(|r| r.map(|_| ()))
        .with_context(|| format!("not at version {version} within {timeout:?}"))?
        .context("the subscriber stopped")
    }

    /// A receiver of the follow state (version, digest, entries) as it changes.
    pub fn watch(&self) -> watch::Receiver<follow::FollowState> {
        self.state.clone()
    }

    /// Whether the subscriber has completed a sync.
    pub fn is_synced(&self) -> bool {
        self.shared.synced.load(Ordering::Relaxed)
    }

    /// The shared counters.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The configuration.
    pub fn config(&self) -> &SubscriberConfig {
        &self.config
    }

    /// Stops following, persists the state and sends the last sightings (within a second).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        let _ = self.reporter.await;
    }
}

/// This host's clock, in Unix milliseconds (the time of a sighting).
fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}
