//! The mirror's side of the subscribe stream: it resumes from the version Redis holds, writes
//! every delta (or a snapshot) into Redis before acking it, and on any doubt starts over from
//! what Redis holds. Redis failing ends the stream; the mirror waits for Redis with backoff, reads
//! its state back (so a transaction whose answer was lost is neither lost nor applied twice), and
//! follows again from there.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use futures::FutureExt;
use recall_core::{Delta, Digest};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use super::redis_sink::{Fill, RedisSink, SinkError};
use super::state::{MirrorState, Refused};
use super::{MirrorConfig, MirrorStats};
use crate::node::clock::Clock;
use crate::proto as pb;
use crate::proto::subscription_client::SubscriptionClient;
use crate::subscriber::follow::until_stopped;
use crate::wire::stream::{down_from_wire, up_to_wire};
use recall_stream::message::{DeltaPart, Down, Heartbeat, assemble};
use recall_stream::{Ack, Hello, Up};

/// Changes written in one transaction at most (a single larger delta is still written whole).
const MAX_BATCH_CHANGES: usize = 50_000;
/// While nothing changes, how often Redis is asked whether it still holds the mirrored version
/// (on a heartbeat), so a Redis that restarted empty is refilled without waiting for a change.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Why a stream ended.
enum Ended {
    /// Asked to stop.
    Stopped,
    /// Redis failed: wait for it, then resume from what it holds.
    Redis(SinkError),
    /// The stream failed: reconnect, to the next node.
    Stream(anyhow::Error),
    /// What Redis holds differs from the authority: refill from a snapshot.
    Diverged(String),
}

impl From<SinkError> for Ended {
    fn from(e: SinkError) -> Self {
        Ended::Redis(e)
    }
}

impl From<anyhow::Error> for Ended {
    fn from(e: anyhow::Error) -> Self {
        Ended::Stream(e)
    }
}

/// Runs until `stopped` turns true.
pub async fn run(
    config: MirrorConfig,
    mut sink: RedisSink,
    stats: Arc<MirrorStats>,
    clock: Clock,
    mut stopped: watch::Receiver<bool>,
) {
    let sub = &config.subscriber;
    let mut backoff = sub.backoff_min;
    let mut next = 0usize;
    let mut refill = false;
    loop {
        let state = match resume_from(&mut sink).await {
            Ok(state) => state,
            Err(e) => {
                tracing::warn!(error = %e, ?backoff, "Redis is not available; retrying");
                if pause(&mut stopped, &mut backoff, sub.backoff_max).await {
                    break;
                }
                continue;
            }
        };
        let state = if refill {
            MirrorState::default()
        } else {
            state
        };
        let addr = sub.cluster[next % sub.cluster.len()].clone();
        let progressed = stats.writes.load(Ordering::Relaxed);
        let ended = Stream {
            config: &config,
            sink: &mut sink,
            stats: &stats,
            clock: &clock,
            state,
            checked: tokio::time::Instant::now(),
        }
        .run(&addr, &mut stopped)
        .await;
        refill = false;
        match ended {
            Ended::Stopped => break,
            Ended::Redis(e) => {
                tracing::warn!(error = %e, "Redis failed; resuming from what it holds once it answers");
                if matches!(e, SinkError::Moved { .. }) {
                    refill = true;
                }
            }
            Ended::Stream(e) => {
                next += 1;
                tracing::info!(node = %addr, error = %format!("{e:#}"), "stream ended; reconnecting");
            }
            Ended::Diverged(why) => {
                tracing::error!(%why, "Redis differs from the authority; refilling from a snapshot");
                refill = true;
            }
        }
        if stats.writes.load(Ordering::Relaxed) > progressed {
            backoff = sub.backoff_min;
        }
        if pause(&mut stopped, &mut backoff, sub.backoff_max).await {
            break;
        }
    }
}

/// Connects to Redis and reads what it holds.
async fn resume_from(sink: &mut RedisSink) -> Result<MirrorState, SinkError> {
    sink.connect().await?;
    sink.load().await
}

/// Sleeps a jittered `backoff` and doubles it; true when asked to stop meanwhile.
async fn pause(stopped: &mut watch::Receiver<bool>, backoff: &mut Duration, max: Duration) -> bool {
    let jitter = rand::random_range(0.5..1.0);
    let stop = tokio::select! {
        _ = until_stopped(stopped) => true,
        _ = tokio::time::sleep(backoff.mul_f64(jitter)) => false,
    };
    *backoff = (*backoff * 2).min(max);
    stop
}

/// One stream from one node into Redis.
struct Stream<'a> {
    config: &'a MirrorConfig,
    sink: &'a mut RedisSink,
    stats: &'a MirrorStats,
    clock: &'a Clock,
    /// What Redis holds now (kept in step with every write).
    state: MirrorState,
    /// When Redis last confirmed `state` (a write or a probe).
    checked: tokio::time::Instant,
}

/// What a stream has received and not yet written.
#[derive(Default)]
struct Received {
    /// A snapshot being received, with the entries and rules it announced.
    fill: Option<(Fill, u64, u64)>,
    /// The parts of a delta so far.
    parts: Vec<DeltaPart>,
    /// Complete deltas waiting to be written together.
    ready: Vec<Delta>,
    /// Whether this stream has acked anything yet.
    acked: bool,
}

impl Stream<'_> {
    async fn run(mut self, addr: &str, stopped: &mut watch::Receiver<bool>) -> Ended {
        match self.follow(addr, stopped).await {
            Ok(()) => Ended::Stopped,
            Err(e) => e,
        }
    }

    async fn follow(
        &mut self,
        addr: &str,
        stopped: &mut watch::Receiver<bool>,
    ) -> Result<(), Ended> {
        let sub = &self.config.subscriber;
        let channel = crate::transport::Dialer::new(sub.security.clone())
            .with_connect_timeout(Duration::from_secs(1))
            .connect(addr, crate::transport::Expect::AnyNode)
            .await
            .map_err(anyhow::Error::from)?;
        let mut client = SubscriptionClient::new(channel).max_decoding_message_size(64 << 20);
        let (up, up_rx) = mpsc::channel::<pb::SubscribeRequest>(64);
        let hello = Hello {
            subscriber_id: sub.id.clone(),
            applied_version: self.state.version,
            digest: self.state.digest,
            seed: self.state.seed,
            mode: "mirror".into(),
            expiries: true,
        };
        up.send(up_to_wire(&Up::Hello(hello)))
            .await
            .map_err(|_| anyhow::anyhow!("the stream closed before the Hello"))?;
        let silence = sub.silence_timeout;
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
        tracing::info!(node = %addr, version = self.state.version, redis = %self.sink.url(), "mirroring");

        let mut rx = Received::default();
        let mut heard = tokio::time::Instant::now();
        loop {
            let msg = tokio::select! {
                _ = until_stopped(stopped) => return Ok(()),
                m = tokio::time::timeout_at(heard + silence, down.message()) => m
                    .with_context(|| format!("nothing from the node in {silence:?} (heartbeats stopped)"))?
                    .context("stream broke")?,
            };
            let Some(msg) = msg else {
                return Err(anyhow::anyhow!("the node ended the stream").into());
            };
            heard = tokio::time::Instant::now();
            let mut acked = self.handle(msg, &mut rx).await?;
            // Deltas already here go into Redis together: one transaction for many.
            while !rx.ready.is_empty() && pending(&rx.ready) < MAX_BATCH_CHANGES {
                let Some(m) = down.message().now_or_never() else {
                    break;
                };
                let Some(msg) = m.context("stream broke")? else {
                    return Err(anyhow::anyhow!("the node ended the stream").into());
                };
                acked = self.handle(msg, &mut rx).await?.or(acked);
            }
            acked = self.flush(&mut rx.ready).await?.or(acked);
            if let Some(version) = acked {
                let ack = Ack {
                    version,
                    digest: self.state.digest,
                };
                // Acks coalesce: if the queue is full, a later ack supersedes this one.
                let _ = up.try_send(up_to_wire(&Up::Ack(ack)));
                rx.acked = true;
            }
        }
    }

    /// Writes the complete deltas in `ready` in one transaction; the version to ack.
    async fn flush(&mut self, ready: &mut Vec<Delta>) -> Result<Option<u64>, Ended> {
        let Some(last) = ready.last() else {
            return Ok(None);
        };
        let last = last.version;
        let from = self.state.version;
        let mut next = self.state.clone();
        let mut changes = Vec::with_capacity(ready.len());
        for d in ready.iter() {
            match next.apply(d) {
                Ok(cs) => changes.push((d.version, cs)),
                Err(e @ Refused::Gap { .. }) => return Err(anyhow::Error::from(e).into()),
                Err(e @ Refused::DigestMismatch { .. }) => {
                    return Err(Ended::Diverged(e.to_string()));
                }
            }
        }
        let n: usize = changes.iter().map(|(_, cs)| cs.len()).sum();
        self.sink.write(from, &changes, &next).await?;
        self.state = next;
        self.checked = tokio::time::Instant::now();
        let ats: Vec<_> = ready.iter().map(|d| d.at).collect();
        self.stats.wrote(last, n as u64, &ats, (self.clock)());
        ready.clear();
        Ok(Some(last))
    }

    /// Takes one message; a complete delta joins `rx.ready`, anything else first writes what
    /// is ready (order is everything), then itself. Returns the version to ack, if any.
    async fn handle(
        &mut self,
        msg: pb::SubscribeResponse,
        rx: &mut Received,
    ) -> Result<Option<u64>, Ended> {
        let body = down_from_wire(msg).context("malformed message from the node")?;
        let flushed = match body {
            Down::Delta(_) => None,
            _ => self.flush(&mut rx.ready).await?,
        };
        let ack = match body {
            Down::SnapshotBegin(b) => {
                if !rx.parts.is_empty() {
                    return Err(anyhow::anyhow!("snapshot began inside a delta").into());
                }
                tracing::info!(version = b.version, entries = b.entries, reason = %b.reason,
                    "receiving a snapshot to refill Redis");
                let fill = Fill {
                    version: b.version,
                    last_change: b.last_change,
                    digest: b.digest,
                    seed: b.seed,
                    ..Fill::default()
                };
                rx.fill = Some((fill, b.entries, b.rules));
                None
            }
            Down::SnapshotChunk(c) => {
                let Some((fill, _, _)) = rx.fill.as_mut() else {
                    return Err(anyhow::anyhow!("snapshot chunk outside a snapshot").into());
                };
                fill.fingerprints.extend(c.fingerprints);
                fill.expires_at_ms
                    .extend(c.expiries.iter().map(|e| e.map_or(0, |t| t.as_millis())));
                // A node that sent no expiries: keep the keys until lifted or pruned.
                fill.expires_at_ms.resize(fill.fingerprints.len(), 0);
                fill.rules.extend(c.rules);
                None
            }
            Down::SnapshotEnd {
                version,
                digest: end_digest,
            } => {
                let Some((fill, entries, rules)) = rx.fill.take() else {
                    return Err(anyhow::anyhow!("snapshot end outside a snapshot").into());
                };
                if fill.fingerprints.len() as u64 != entries || fill.rules.len() as u64 != rules {
                    return Err(anyhow::anyhow!(
                        "snapshot announced {entries} entries and {rules} rules but carried {} and {}",
                        fill.fingerprints.len(),
                        fill.rules.len()
                    )
                    .into());
                }
                let digest = Digest::of(&fill.fingerprints, &fill.rules);
                if digest != fill.digest || end_digest != fill.digest {
                    return Err(anyhow::anyhow!(
                        "snapshot at version {} has digest {digest}, the node says {}",
                        fill.version,
                        fill.digest
                    )
                    .into());
                }
                let started = std::time::Instant::now();
                self.state = self.sink.refill(&fill).await?;
                self.stats.refilled(fill.version);
                tracing::info!(
                    version = fill.version,
                    entries = fill.fingerprints.len(),
                    took_ms = started.elapsed().as_millis() as u64,
                    "Redis refilled from the snapshot"
                );
                Some(version)
            }
            Down::Delta(p) => {
                if rx.fill.is_some() {
                    return Err(anyhow::anyhow!("delta inside a snapshot").into());
                }
                if rx.parts.first().is_some_and(|f| f.version != p.version)
                    || p.part as usize != rx.parts.len()
                {
                    return Err(anyhow::anyhow!(
                        "delta part {} of version {} out of order",
                        p.part,
                        p.version
                    )
                    .into());
                }
                let last = p.last_part;
                rx.parts.push(p);
                if last {
                    rx.ready.push(assemble(std::mem::take(&mut rx.parts)));
                }
                None
            }
            Down::Heartbeat(h) => self.heartbeat(&h, rx.acked).await?,
            Down::Resync { reason } => {
                tracing::warn!(%reason, "the node resyncs the mirror");
                rx.parts.clear();
                None
            }
        };
        Ok(ack.or(flushed))
    }

    /// A heartbeat: moves the version past entries that changed nothing, or shows a gap or a
    /// divergence. The version to ack, if any.
    async fn heartbeat(&mut self, h: &Heartbeat, acked: bool) -> Result<Option<u64>, Ended> {
        if h.last_change != self.state.last_change {
            if h.last_change > self.state.last_change && h.applied_version > self.state.version {
                return Err(anyhow::anyhow!(
                    "heartbeat shows change {} that the mirror did not receive (last {})",
                    h.last_change,
                    self.state.last_change
                )
                .into());
            }
            // A heartbeat sent before a change the mirror has already written.
            return Ok(None);
        }
        if h.digest != self.state.digest {
            return Err(Ended::Diverged(format!(
                "at version {} Redis's digest is {}, the node's {}",
                h.applied_version, self.state.digest, h.digest
            )));
        }
        if h.applied_version > self.state.version {
            let from = self.state.version;
            let mut next = self.state.clone();
            next.version = h.applied_version;
            self.sink.advance(from, &next).await?;
            self.state = next;
            self.stats
                .version
                .store(h.applied_version, Ordering::Relaxed);
            return Ok(Some(h.applied_version));
        }
        if self.checked.elapsed() >= PROBE_EVERY {
            self.sink.verify(self.state.version).await?;
            self.checked = tokio::time::Instant::now();
        }
        Ok((!acked).then_some(self.state.version))
    }
}

/// How many changes the waiting deltas carry.
fn pending(ready: &[Delta]) -> usize {
    ready.iter().map(|d| d.len() + d.expiries.len()).sum()
}
