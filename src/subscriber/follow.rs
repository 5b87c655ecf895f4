//! Following the cluster: one stream at a time to any node, resuming from the applied version,
//! reconnecting with jittered backoff; every message applied in order or the stream abandoned,
//! never guessed past. Only a heartbeat in which the node vouches for its state (no
//! `stale_reason`) counts as contact for the staleness bound and makes the subscriber synced.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::FutureExt;
use recall_core::{
    Delta, Digest, Expiry, Fingerprint, FingerprintSeed, RuleFingerprint, Timestamp,
};
use recall_filter::{Filter, FilterError, SnapshotLoader};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use super::{Shared, SubscriberConfig, persist};
use crate::proto as pb;
use crate::proto::subscribe_response::Body;
use crate::proto::subscription_client::SubscriptionClient;

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

struct Follower {
    filter: Filter,
    config: SubscriberConfig,
    shared: Arc<Shared>,
    state: watch::Sender<FollowState>,
    /// The next Hello asks for a snapshot (after a digest mismatch).
    force_snapshot: bool,
    /// Why the node followed now cannot vouch for its state (its last heartbeat's
    /// `stale_reason`), if it cannot.
    node_doubt: Option<String>,
    dirty: bool,
    /// The state being written in the background, if a write is under way.
    saving: Option<tokio::task::JoinHandle<(anyhow::Result<()>, Duration)>>,
    /// No write starts before this: writes are spaced by ten times what the last one took, so
    /// a large state written often cannot eat the CPU the stream needs.
    next_save: tokio::time::Instant,
}

/// Runs until `stopped` turns true, then persists the state.
pub async fn run(
    filter: Filter,
    config: SubscriberConfig,
    shared: Arc<Shared>,
    state: watch::Sender<FollowState>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut f = Follower {
        filter,
        config,
        shared,
        state,
        force_snapshot: false,
        node_doubt: None,
        dirty: false,
        saving: None,
        next_save: tokio::time::Instant::now(),
    };
    f.publish(None);
    let mut backoff = f.config.backoff_min;
    let mut next = 0usize;
    loop {
        let addr = f.config.cluster[next % f.config.cluster.len()].clone();
        next += 1;
        let synced_before =
            f.shared.snapshots.load(Ordering::Relaxed) + f.shared.deltas.load(Ordering::Relaxed);
        match f.stream(&addr, &mut stopped).await {
            Ended::Stopped => break,
            Ended::Failed(e) => {
                tracing::info!(node = %addr, error = %format!("{e:#}"), "stream ended; reconnecting")
            }
        }
        f.node_doubt = None;
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

impl Follower {
    fn publish(&self, node: Option<&str>) {
        let s = self.filter.stats();
        self.state.send_if_modified(|state| {
            let version_at_ms = if state.version == s.version {
                state.version_at_ms
            } else {
                (crate::node::clock::system())().as_millis()
            };
            let next = FollowState {
                version: s.version,
                digest: s.digest,
                entries: s.entries,
                node: node.map(str::to_string),
                version_at_ms,
                synced: self.shared.synced.load(Ordering::Relaxed),
                node_stale_reason: node.and(self.node_doubt.clone()),
            };
            let changed = *state != next;
            *state = next;
            changed
        });
    }

    /// A node vouched for its state and ours matches it: fresh, and synced.
    fn vouched(&self) {
        self.shared.contact.record(tokio::time::Instant::now());
        self.shared.synced.store(true, Ordering::Relaxed);
    }

    /// Our state is known to differ from the authority's: answers are stale, and the next
    /// stream starts from a snapshot.
    fn diverged(&mut self) {
        self.shared
            .digest_mismatches
            .fetch_add(1, Ordering::Relaxed);
        self.shared.diverged.store(true, Ordering::Relaxed);
        self.force_snapshot = true;
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
        let Some(view) = self.filter.view() else {
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
        let channel = crate::transport::Dialer::new(self.config.security.clone())
            .with_connect_timeout(Duration::from_secs(1))
            .connect(addr, crate::transport::Expect::AnyNode)
            .await?;
        let mut client = SubscriptionClient::new(channel).max_decoding_message_size(64 << 20);
        let (up, up_rx) = mpsc::channel::<pb::SubscribeRequest>(64);
        let (version, digest, seed) = if self.force_snapshot {
            (0, 0, 0)
        } else {
            (
                self.filter.version(),
                self.filter.digest().0,
                self.filter.seed().0,
            )
        };
        let hello = pb::Hello {
            subscriber_id: self.config.id.clone(),
            applied_version: version,
            digest,
            fingerprint_seed: seed,
            mode: match self.config.mode {
                recall_filter::Mode::Full => "full".into(),
                recall_filter::Mode::Lite => "lite".into(),
            },
            expiries: false,
        };
        up.send(pb::SubscribeRequest {
            body: Some(pb::subscribe_request::Body::Hello(hello)),
        })
        .await?;
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

        let mut rx = Received::default();
        let mut persist = tokio::time::interval(self.config.persist_every);
        persist.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut heard = tokio::time::Instant::now();
        loop {
            let msg = tokio::select! {
                _ = until_stopped(stopped) => return Ok(()),
                _ = persist.tick() => { self.persist(); continue; }
                m = tokio::time::timeout_at(heard + silence, down.message()) => m
                    .with_context(|| format!("nothing from the node in {silence:?} (heartbeats stopped)"))?
                    .context("stream broke")?,
            };
            let Some(msg) = msg else {
                bail!("the node ended the stream")
            };
            heard = tokio::time::Instant::now();
            let mut acked = self.handle(msg, &mut rx)?;
            // Deltas already here are applied together: one rebuild of the touched shards
            // instead of one per delta, so a subscriber that fell behind catches up fast.
            while !rx.ready.is_empty() && rx.ready.len() < MAX_BATCH {
                let Some(m) = down.message().now_or_never() else {
                    break;
                };
                let Some(msg) = m.context("stream broke")? else {
                    bail!("the node ended the stream")
                };
                acked = self.handle(msg, &mut rx)?.or(acked);
            }
            acked = self.flush(&mut rx.ready)?.or(acked);
            let (synced, doubt) = {
                let state = self.state.borrow();
                (state.synced, state.node_stale_reason.clone())
            };
            if acked.is_none()
                && (synced != self.shared.synced.load(Ordering::Relaxed)
                    || doubt != self.node_doubt)
            {
                self.publish(Some(addr));
            }
            if let Some(version) = acked {
                self.dirty = true;
                self.publish(Some(addr));
                let ack = pb::Ack {
                    applied_version: version,
                    digest: self.filter.digest().0,
                };
                // Acks coalesce: if the queue is full, a later ack supersedes this one.
                let _ = up.try_send(pb::SubscribeRequest {
                    body: Some(pb::subscribe_request::Body::Ack(ack)),
                });
                rx.acked = true;
            }
        }
    }

    /// Applies the complete deltas waiting in `ready` as one change; the version to ack.
    fn flush(&mut self, ready: &mut Vec<Delta>) -> anyhow::Result<Option<u64>> {
        let Some(last) = ready.last().map(|d| d.version) else {
            return Ok(None);
        };
        match self.filter.apply_many(ready) {
            Ok(()) => {}
            Err(e @ FilterError::DigestMismatch { .. }) => {
                tracing::error!(error = %e, "the filter diverged from the authority; resyncing");
                self.diverged();
                bail!(e);
            }
            Err(e) => bail!(e),
        }
        self.shared
            .deltas
            .fetch_add(ready.len() as u64, Ordering::Relaxed);
        ready.clear();
        Ok(Some(last))
    }

    /// Takes one message: a complete delta joins `rx.ready`; anything else first applies what
    /// is ready (order is everything), then itself. Returns the version to ack, if any.
    fn handle(
        &mut self,
        msg: pb::SubscribeResponse,
        rx: &mut Received,
    ) -> anyhow::Result<Option<u64>> {
        let Some(body) = msg.body else {
            bail!("empty message from the node")
        };
        let flushed = match body {
            Body::Delta(_) => None,
            _ => self.flush(&mut rx.ready)?,
        };
        let (loader, parts) = (&mut rx.loader, &mut rx.parts);
        let ack = match body {
            Body::SnapshotBegin(b) => {
                if !parts.is_empty() {
                    bail!("snapshot began inside a delta");
                }
                tracing::info!(version = b.version, entries = b.entries, reason = %b.reason, "receiving a snapshot");
                self.shared.snapshot_begun(&b.reason);
                let mut l = self.filter.begin_snapshot(
                    FingerprintSeed(b.fingerprint_seed),
                    b.version,
                    b.last_change_version,
                    Digest(b.digest),
                );
                l.reserve(usize::try_from(b.entries).unwrap_or(0).min(1 << 26));
                *loader = Some((l, b.entries, b.rules));
                None
            }
            Body::SnapshotChunk(c) => {
                let Some((l, _, _)) = loader.as_mut() else {
                    bail!("snapshot chunk outside a snapshot")
                };
                l.push_fingerprints(
                    &c.fingerprints
                        .iter()
                        .map(|&x| Fingerprint(x))
                        .collect::<Vec<_>>(),
                );
                l.push_rules(&c.rules.iter().map(rule).collect::<Vec<_>>());
                None
            }
            Body::SnapshotEnd(e) => {
                let Some((l, entries, _rules)) = loader.take() else {
                    bail!("snapshot end outside a snapshot")
                };
                if l.len() as u64 != entries {
                    bail!(
                        "snapshot announced {entries} entries but carried {}",
                        l.len()
                    );
                }
                l.finish(&mut self.filter).context("snapshot refused")?;
                self.shared.snapshots.fetch_add(1, Ordering::Relaxed);
                self.shared.diverged.store(false, Ordering::Relaxed);
                self.force_snapshot = false;
                Some(e.version)
            }
            Body::Delta(p) => {
                if loader.is_some() {
                    bail!("delta inside a snapshot");
                }
                if parts.first().is_some_and(|f| f.version != p.version)
                    || p.part as usize != parts.len()
                {
                    bail!(
                        "delta part {} of version {} out of order",
                        p.part,
                        p.version
                    );
                }
                let last = p.last_part;
                parts.push(p);
                if !last {
                    return Ok(None);
                }
                rx.ready.push(assemble(std::mem::take(parts)));
                None
            }
            Body::Heartbeat(h) => {
                let before = self.filter.version();
                self.filter
                    .advance(h.applied_version, h.last_change_version)
                    .context("heartbeat shows a missed change")?;
                if self.filter.digest().0 != h.digest
                    && self.filter.last_change() == h.last_change_version
                {
                    self.diverged();
                    bail!(
                        "digest differs from the node's at version {}; resyncing",
                        h.applied_version
                    );
                }
                if h.stale_reason.is_empty() {
                    self.vouched();
                } else if self.node_doubt.as_deref() != Some(h.stale_reason.as_str()) {
                    tracing::warn!(reason = %h.stale_reason, version = h.applied_version,
                        "the node cannot vouch that its state is current: counting it as staleness");
                }
                self.node_doubt = (!h.stale_reason.is_empty()).then(|| h.stale_reason.clone());
                // The first heartbeat of a stream is acked even at the version resumed from,
                // so the node counts this subscriber at once.
                (self.filter.version() > before || !rx.acked).then_some(self.filter.version())
            }
            Body::Resync(r) => {
                tracing::warn!(reason = %r.reason, "the node resyncs this subscriber");
                self.shared.resyncs.fetch_add(1, Ordering::Relaxed);
                parts.clear();
                None
            }
        };
        Ok(ack.or(flushed))
    }
}

/// What a stream has received and not yet applied.
#[derive(Default)]
struct Received {
    /// A snapshot being loaded: the loader, and the entries and rules it announced.
    loader: Option<(SnapshotLoader, u64, u64)>,
    /// The parts of a delta so far.
    parts: Vec<pb::Delta>,
    /// Complete deltas waiting to be applied together.
    ready: Vec<Delta>,
    /// Whether this stream has acked anything yet.
    acked: bool,
}

/// The most deltas applied as one change.
const MAX_BATCH: usize = 256;

pub(crate) fn rule(r: &pb::RuleFingerprint) -> RuleFingerprint {
    RuleFingerprint {
        scope: Fingerprint(r.scope),
        not_before: Timestamp::from_millis(r.not_before_ms),
    }
}

/// The core delta of a complete sequence of parts (with the expiries, when the subscriber asked
/// for them; the Redis mirror assembles its deltas here too).
pub(crate) fn assemble(parts: Vec<pb::Delta>) -> Delta {
    let first = &parts[0];
    let mut d = Delta {
        version: first.version,
        prev_version: first.prev_version,
        digest: Digest(first.digest),
        at: Timestamp::from_millis(first.at_ms),
        ..Delta::default()
    };
    for p in parts {
        d.added.extend(p.added.into_iter().map(Fingerprint));
        d.removed.extend(p.removed.into_iter().map(Fingerprint));
        d.rules_set.extend(p.rules_set.iter().map(rule));
        d.rules_removed
            .extend(p.rules_removed.into_iter().map(Fingerprint));
        d.expiries.extend(
            p.expiry_fingerprints
                .iter()
                .zip(&p.expires_at_ms)
                .map(|(&fp, &ms)| Expiry {
                    fingerprint: Fingerprint(fp),
                    at: (ms != 0).then(|| Timestamp::from_millis(ms)),
                }),
        );
    }
    d
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
