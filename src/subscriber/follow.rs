//! Following the cluster: one stream at a time to any node, resuming from the applied version,
//! reconnecting with jittered backoff. The stream's decisions (every message applied in order or
//! the stream abandoned, never guessed past; which heartbeats vouch for the state) are the
//! protocol's follower machine (`recall_stream::Follower`); this is its async driver: the socket,
//! the reconnects, the persistence and the counters the sidecar reports.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::FutureExt;
use recall_core::Digest;
use recall_stream::{Down, Event, Failure, Replica, Up};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use super::held::{Held, REPORT_EVERY, Reporter};
use super::witness::Coverage;
use super::{Shared, SubscriberConfig, persist};
use crate::proto as pb;
use crate::proto::subscription_client::SubscriptionClient;
use crate::wire::stream::{down_from_wire, up_to_wire};

/// What the follow task has applied, published after every change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FollowState {
    /// The version applied.
    pub version: u64,
    /// The digest.
    pub digest: Digest,
    /// Fingerprints held.
    pub entries: usize,
    /// The node followed now.
    pub node: Option<String>,
    /// When `version` was applied (Unix milliseconds, this host's clock); 0 before any.
    pub version_at_ms: i64,
    /// Whether a node has vouched for the state since start (see [`super::Shared::synced`]).
    pub synced: bool,
    /// Why the node followed now cannot vouch that its state is current (its heartbeats'
    /// `stale_reason`, e.g. "no_leader_contact"); `None` when it can, or when not connected.
    pub node_stale_reason: Option<String>,
}

/// Why a stream ended.
enum Ended {
    Stopped,
    Failed(anyhow::Error),
}

struct Follower<R: Replica> {
    follower: recall_stream::Follower<R>,
    config: SubscriberConfig,
    shared: Arc<Shared>,
    state: watch::Sender<FollowState>,
    dirty: bool,
    /// The state being written in the background, if a write is under way.
    saving: Option<tokio::task::JoinHandle<(anyhow::Result<()>, Duration)>>,
    /// No write starts before this: writes are spaced by ten times what the last one took, so
    /// a large state written often cannot eat the CPU the stream needs.
    next_save: tokio::time::Instant,
    /// With checkpoint keys: the changes held that no checkpoint a quorum signed covers yet.
    coverage: Option<Coverage>,
    /// A relay's report of the subscribers behind it.
    reporter: Option<Arc<dyn Reporter>>,
    /// The checkpoint the last heartbeat carried, until the follower matched it.
    carried: Option<Arc<recall_stream::Witness>>,
}

/// Runs until `stopped` turns true, then persists the state.
pub async fn run<R: Held>(
    held: R,
    config: SubscriberConfig,
    shared: Arc<Shared>,
    state: watch::Sender<FollowState>,
    mut stopped: watch::Receiver<bool>,
    reporter: Option<Arc<dyn Reporter>>,
) {
    let mut f = Follower {
        follower: recall_stream::Follower::new(held),
        config,
        shared,
        state,
        dirty: false,
        saving: None,
        next_save: tokio::time::Instant::now(),
        coverage: None,
        reporter,
        carried: None,
    };
    if f.config.checkpoint_keys.is_some() {
        let mut coverage = Coverage::default();
        coverage.held(
            f.follower.replica().last_change(),
            tokio::time::Instant::now(),
        );
        f.shared.unwitnessed.set(coverage.oldest());
        f.coverage = Some(coverage);
    }
    f.publish(None);
    let mut backoff = f.config.backoff_min;
    let mut next = 0usize;
    loop {
        let upstream = f.config.upstream();
        let addr = upstream[next % upstream.len()].clone();
        next += 1;
        let synced_before =
            f.shared.snapshots.load(Ordering::Relaxed) + f.shared.deltas.load(Ordering::Relaxed);
        match f.stream(&addr, &mut stopped).await {
            Ended::Stopped => break,
            Ended::Failed(e) => {
                tracing::info!(node = %addr, error = %format!("{e:#}"), "stream ended; reconnecting")
            }
        }
        f.publish(None);
        let progressed = f.shared.snapshots.load(Ordering::Relaxed)
            + f.shared.deltas.load(Ordering::Relaxed)
            > synced_before;
        if progressed {
            backoff = f.config.backoff_min;
        }
        let jitter = rand::random_range(0.5..1.0);
        tokio::select! {
            _ = until_stopped(&mut stopped) => break,
            _ = tokio::time::sleep(backoff.mul_f64(jitter)) => {}
        }
        backoff = (backoff * 2).min(f.config.backoff_max);
    }
    f.persist_now().await;
}

impl<R: Held> Follower<R> {
    fn publish(&self, node: Option<&str>) {
        // After every message: the cheap accessors, never `stats()` (which walks every shard).
        let filter = self.follower.replica().filter();
        let (version, digest, entries) = (filter.version(), filter.digest(), filter.entries());
        self.shared
            .lite_rebuilds
            .store(filter.rebuilds(), Ordering::Relaxed);
        self.state.send_if_modified(|state| {
            let version_at_ms = if state.version == version {
                state.version_at_ms
            } else {
                (crate::node::clock::system())().as_millis()
            };
            let next = FollowState {
                version,
                digest,
                entries,
                node: node.map(str::to_string),
                version_at_ms,
                synced: self.shared.synced.load(Ordering::Relaxed),
                node_stale_reason: node.and(self.follower.doubt().map(str::to_owned)),
            };
            let changed = *state != next;
            *state = next;
            changed
        });
    }

    /// Starts writing the state in the background when it changed and the last write is done
    /// (and spaced out); the stream goes on meanwhile.
    fn persist(&mut self) {
        if self.saving.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        if let Some(h) = self.saving.take()
            && let Some(done) = h.now_or_never()
        {
            let took = report_save(done);
            self.next_save += (took * 10).saturating_sub(self.config.persist_every);
        }
        if tokio::time::Instant::now() < self.next_save {
            return;
        }
        let (Some(dir), true) = (self.config.data_dir.clone(), self.dirty) else {
            return;
        };
        let Some(view) = self.follower.replica().filter().view() else {
            return;
        };
        self.dirty = false;
        let path = persist::path(&dir);
        self.next_save = tokio::time::Instant::now() + self.config.persist_every;
        self.saving = Some(tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            (persist::save(&path, &view), started.elapsed())
        }));
    }

    /// Waits for a write under way, then writes the latest state (on the way out).
    async fn persist_now(&mut self) {
        if let Some(h) = self.saving.take() {
            report_save(h.await);
        }
        self.next_save = tokio::time::Instant::now();
        self.persist();
        if let Some(h) = self.saving.take() {
            report_save(h.await);
        }
    }

    async fn stream(&mut self, addr: &str, stopped: &mut watch::Receiver<bool>) -> Ended {
        match self.stream_inner(addr, stopped).await {
            Ok(()) => Ended::Stopped,
            Err(e) => Ended::Failed(e),
        }
    }

    async fn stream_inner(
        &mut self,
        addr: &str,
        stopped: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        // A relay may serve the stream only where the configuration names upstreams; the
        // cluster's addresses must be nodes.
        let expect = if self.config.upstream.is_empty() {
            crate::transport::Expect::AnyNode
        } else {
            crate::transport::Expect::Upstream
        };
        let channel = crate::transport::Dialer::new(self.config.security.clone())
            .with_connect_timeout(Duration::from_secs(1))
            .connect(addr, expect)
            .await?;
        let mut client = SubscriptionClient::new(channel).max_decoding_message_size(64 << 20);
        let (up, up_rx) = mpsc::channel::<pb::SubscribeRequest>(64);
        let mode = match (&self.reporter, self.config.mode) {
            (Some(_), _) => "relay",
            (None, recall_filter::Mode::Full) => "full",
            (None, recall_filter::Mode::Lite) => "lite",
        };
        let hello = self.follower.connect(&self.config.id, mode, false);
        let version = hello.applied_version;
        up.send(up_to_wire(&Up::Hello(hello))).await?;
        let silence = self.config.silence_timeout;
        let mut down = tokio::time::timeout(silence, client.subscribe(ReceiverStream::new(up_rx)))
            .await
            .with_context(|| format!("no answer to the subscription within {silence:?}"))?
            .map_err(|s| {
                anyhow::anyhow!(
                    "subscribe refused: {}",
                    crate::transport::errors::describe(&s)
                )
            })?
            .into_inner();
        self.shared.connects.fetch_add(1, Ordering::Relaxed);
        self.publish(Some(addr));
        tracing::info!(node = %addr, version, "following");

        let mut persist = tokio::time::interval(self.config.persist_every);
        persist.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut report = tokio::time::interval(REPORT_EVERY);
        report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut full_report = true;
        let mut heard = tokio::time::Instant::now();
        let opened = heard;
        let mut events = Vec::new();
        let result = loop {
            let msg = tokio::select! {
                _ = until_stopped(stopped) => break Ok(()),
                _ = persist.tick() => { self.persist(); continue; }
                _ = report.tick(), if self.reporter.is_some() => {
                    if let Err(e) = self.report(&up, std::mem::take(&mut full_report)) {
                        break Err(e);
                    }
                    continue;
                }
                m = tokio::time::timeout_at(heard + silence, down.message()) => m
                    .with_context(|| format!("nothing from the node in {silence:?} (heartbeats stopped)"))
                    .and_then(|m| m.context("stream broke")),
            };
            heard = tokio::time::Instant::now();
            let burst = self.burst(msg, &mut down, &mut events);
            let acked = self.perform(addr, &mut events, &up);
            if let Err(e) = burst {
                break Err(e);
            }
            if let Some(why) = self.uncovered_too_long(opened) {
                break Err(anyhow::anyhow!(why));
            }
            if self.follower.replica().filter().needs_rebuild() && !self.follower.wants_snapshot() {
                // A Bloom filter cannot grow without the fingerprints it holds, which a lite
                // filter does not keep: a snapshot brings them, and rebuilds every shard.
                self.follower.request_snapshot();
                break Err(anyhow::anyhow!(
                    "a lite-mode Bloom shard is filled past its design false-positive rate: \
                     reconnecting for a snapshot to rebuild it"
                ));
            }
            if !acked {
                let synced = self.state.borrow().synced;
                if synced != self.shared.synced.load(Ordering::Relaxed)
                    || self.state.borrow().node_stale_reason.as_deref() != self.follower.doubt()
                {
                    self.publish(Some(addr));
                }
            }
        };
        self.follower.disconnected();
        result
    }

    /// Takes `first` and every message already waiting behind it (up to a batch of deltas),
    /// then ends the burst: the deltas are applied together, one rebuild instead of one each.
    fn burst(
        &mut self,
        first: anyhow::Result<Option<pb::SubscribeResponse>>,
        down: &mut tonic::Streaming<pb::SubscribeResponse>,
        events: &mut Vec<Event>,
    ) -> anyhow::Result<()> {
        let mut next = Some(first);
        while let Some(m) = next.take() {
            let Some(m) = m? else {
                bail!("the node ended the stream")
            };
            let m = down_from_wire(m).context("malformed message from the node")?;
            if let Down::Heartbeat(h) = &m {
                self.shared
                    .upstream_committed
                    .fetch_max(h.committed_version, Ordering::Relaxed);
                if let Some(w) = &h.witness {
                    self.carried = Some(Arc::clone(w));
                }
            }
            if let (Down::Heartbeat(h), Some(keys)) = (&m, &self.config.checkpoint_keys)
                && let Some(w) = &h.witness
                && let Err(why) = super::witness::verify(w, keys)
            {
                self.shared.witness_refusals.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%why, "the node sent a checkpoint the trusted keys do not vouch for");
                bail!(
                    "refused the node's checkpoint at version {}: {why}; following another node",
                    w.version
                );
            }
            self.follower
                .on_message(m, events)
                .map_err(|f| self.failed(f))?;
            if self.follower.wants_more() {
                next = down
                    .message()
                    .now_or_never()
                    .map(|m| m.context("stream broke"));
            }
        }
        self.follower
            .on_burst_end(events)
            .map_err(|f| self.failed(f))
    }

    /// The stream must be abandoned; a divergence also makes answers stale until a snapshot.
    fn failed(&mut self, f: Failure) -> anyhow::Error {
        if let Failure::Diverged(why) = &f {
            tracing::error!(%why, "the filter diverged from the authority; resyncing");
            self.shared
                .digest_mismatches
                .fetch_add(1, Ordering::Relaxed);
            self.shared.diverged.store(true, Ordering::Relaxed);
        }
        anyhow::Error::new(f)
    }

    /// Sends what changed behind this relay (everything when `full`); a node that does not
    /// take the reports ends the stream, and the next one starts with a full report.
    fn report(&self, up: &mpsc::Sender<pb::SubscribeRequest>, full: bool) -> anyhow::Result<()> {
        let Some(reporter) = &self.reporter else {
            return Ok(());
        };
        for r in reporter.report(full) {
            if up.try_send(up_to_wire(&Up::Report(r))).is_err() {
                bail!("the upstream is not reading this relay's reports: following another");
            }
        }
        Ok(())
    }

    /// Why to leave the node followed since `opened`: with checkpoint keys, a change held for
    /// half the checkpoint lag without a checkpoint a quorum signed covering it, on a stream open
    /// at least that long (a new stream carries the node's latest checkpoint at once).
    fn uncovered_too_long(&self, opened: tokio::time::Instant) -> Option<String> {
        let lag = self.config.checkpoint_lag;
        let held = self
            .coverage
            .as_ref()?
            .overdue(lag, opened, tokio::time::Instant::now())?;
        tracing::warn!(?held, lag = ?self.config.checkpoint_lag,
            "no checkpoint a quorum signed covers a change this subscriber holds");
        Some(format!(
            "no checkpoint a quorum of the trusted keys signed has covered the change held for \
             {held:?} (half the checkpoint lag of {:?}; past all of it answers are stale): \
             following another node",
            self.config.checkpoint_lag
        ))
    }

    /// Does what the follower's events say; whether an ack went up.
    fn perform(
        &mut self,
        addr: &str,
        events: &mut Vec<Event>,
        up: &mpsc::Sender<pb::SubscribeRequest>,
    ) -> bool {
        let mut acked = false;
        for e in events.drain(..) {
            match e {
                Event::Ack(ack) => {
                    self.dirty = true;
                    self.publish(Some(addr));
                    if let Some(c) = &mut self.coverage {
                        c.held(
                            self.follower.replica().last_change(),
                            tokio::time::Instant::now(),
                        );
                    }
                    // Acks coalesce: if the queue is full, a later ack supersedes this one.
                    let _ = up.try_send(up_to_wire(&Up::Ack(ack)));
                    acked = true;
                }
                Event::Applied { deltas, .. } => {
                    self.shared.deltas.fetch_add(deltas, Ordering::Relaxed);
                }
                Event::SnapshotBegun {
                    reason,
                    version,
                    entries,
                } => {
                    tracing::info!(version, entries, %reason, "receiving a snapshot");
                    self.shared.snapshot_begun(&reason);
                }
                Event::Witnessed { version } => {
                    self.shared.witnessed.fetch_max(version, Ordering::Relaxed);
                    if let Some(w) = self.carried.take().filter(|w| w.version == version) {
                        *self
                            .shared
                            .witness
                            .lock()
                            .unwrap_or_else(|p| p.into_inner()) = Some(w);
                    }
                    if let Some(c) = &mut self.coverage {
                        c.witnessed(version);
                    }
                }
                Event::SnapshotLoaded { .. } => {
                    self.shared.snapshots.fetch_add(1, Ordering::Relaxed);
                    self.shared.diverged.store(false, Ordering::Relaxed);
                    if let Some(c) = &mut self.coverage {
                        c.replaced(
                            self.follower.replica().last_change(),
                            tokio::time::Instant::now(),
                        );
                    }
                }
                Event::Vouched { contact_age } => {
                    // Current as of the node's last leader contact, not as of now: the node's
                    // own silence counts against this subscriber's staleness bound.
                    let now = tokio::time::Instant::now();
                    self.shared
                        .contact
                        .record(now.checked_sub(contact_age).unwrap_or(now));
                    self.shared.synced.store(true, Ordering::Relaxed);
                }
                Event::Doubt(Some(reason)) => {
                    tracing::warn!(%reason,
                        "the node cannot vouch that its state is current: counting it as staleness");
                }
                Event::Doubt(None) => {}
                Event::Resync { reason } => {
                    tracing::warn!(%reason, "the node resyncs this subscriber");
                    self.shared.resyncs.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if let Some(c) = &self.coverage {
            self.shared.unwitnessed.set(c.oldest());
        }
        acked
    }
}

/// Logs a failed background write of the state; how long it took.
fn report_save(done: Result<(anyhow::Result<()>, Duration), tokio::task::JoinError>) -> Duration {
    match done {
        Ok((Ok(()), took)) => took,
        Ok((Err(e), took)) => {
            tracing::warn!(error = %format!("{e:#}"), "cannot persist the subscriber state");
            took
        }
        Err(e) => {
            tracing::warn!(error = %e, "persist task failed");
            Duration::ZERO
        }
    }
}

/// Resolves once `stopped` turns true (or its sender is gone).
pub(crate) async fn until_stopped(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await.map(|_| ());
}
