//! One subscriber stream: where it starts (deltas or a snapshot, and why), then deltas in order,
//! heartbeats, and acks counted only for versions sent on the stream, with the node's digest.

use std::sync::Arc;

use recall_core::{Delta, Digest, FingerprintSeed};
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use super::acks::{AckCheck, Sent};
use super::registry::Registration;
use super::{SubscribeService, encode};
use crate::node::contact::Doubt;
use crate::node::raft::DeltasAfter;
use crate::proto as pb;
use crate::proto::subscribe_response::Body;

type Tx = mpsc::Sender<super::Queued>;

/// The stream ended (subscriber gone) or must end with a status; each with why, for the
/// node's metrics (one of `metrics::STREAM_ENDS`).
enum End {
    Gone(&'static str),
    Status(&'static str, Status),
}

/// One stream's state.
pub struct Session {
    svc: SubscribeService,
    hello: pb::Hello,
    tx: Tx,
    /// The last version sent (snapshot, delta or heartbeat).
    sent: u64,
    /// The last change sent.
    sent_change: u64,
    /// The versions sent on this stream at or after `floor`, each with the node's digest at
    /// that version: the only acks that count.
    sent_digests: Sent,
    /// Why the last heartbeat did not vouch for the node's state, if it did not.
    doubt: Option<Doubt>,
}

impl Session {
    /// A session for a stream that opened with `hello`.
    pub fn new(svc: SubscribeService, hello: pb::Hello, tx: Tx) -> Self {
        Self {
            svc,
            hello,
            tx,
            sent: 0,
            sent_change: 0,
            sent_digests: Sent::default(),
            doubt: None,
        }
    }

    /// Runs the stream to its end.
    pub async fn run(mut self, incoming: Streaming<pb::SubscribeRequest>) {
        let id = self.hello.subscriber_id.clone();
        let tx = self.tx.clone();
        let end = self.serve(incoming).await;
        let metrics = &self.svc.metrics;
        match end {
            End::Gone(why) => {
                metrics.stream_ended(why);
                tracing::debug!(subscriber = %id, why, "stream closed")
            }
            End::Status(why, s) => {
                metrics.stream_ended(why);
                tracing::info!(subscriber = %id, code = ?s.code(), msg = s.message(), "stream ended");
                let _ = tx.send(self.svc.queued(Err(s))).await;
            }
        }
    }

    async fn serve(&mut self, mut incoming: Streaming<pb::SubscribeRequest>) -> End {
        let now = (self.svc.clock)();
        let reg = match self.svc.registry.register(
            &self.hello.subscriber_id,
            &self.hello.mode,
            now,
            self.svc.config.max_subscribers,
        ) {
            Ok(r) => r,
            Err(full) => return End::Status("full", Status::resource_exhausted(full.to_string())),
        };
        let mut replaced = reg.replaced.clone();
        let mut stopped = self.svc.stopped.clone();
        let mut alarm = self.svc.sm.alarm();
        let mut applied = self.svc.sm.subscribe();
        if let Some(e) = self.out_of_touch() {
            return e;
        }
        if let Err(e) = self.start(&mut applied).await {
            return e;
        }
        let mut beat = tokio::time::interval(self.svc.config.heartbeat);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stopped.changed() => {
                    return End::Status("shutdown", Status::unavailable("the node is shutting down; reconnect to another node"));
                }
                _ = alarm.changed() => {
                    if let Some(why) = alarm.borrow().clone() {
                        return End::Status("history_alarm", super::alarmed(&why));
                    }
                }
                r = replaced.changed() => {
                    if r.is_err() || *replaced.borrow() {
                        return End::Status("replaced", Status::aborted("a newer stream with the same subscriber_id replaced this one"));
                    }
                }
                msg = incoming.message() => match msg {
                    Ok(None) => return End::Gone("closed"),
                    Err(e) => {
                        tracing::debug!(error = %e, "subscriber stream broke");
                        return End::Gone("closed");
                    }
                    Ok(Some(pb::SubscribeRequest { body: Some(pb::subscribe_request::Body::Ack(ack)) })) => {
                        if let Err(e) = self.on_ack(&reg, &ack).await {
                            return e;
                        }
                    }
                    Ok(Some(_)) => return End::Status("protocol_error", Status::invalid_argument(
                        "after the Hello, a subscriber sends only Acks")),
                },
                changed = applied.changed() => {
                    if changed.is_err() {
                        return End::Status("shutdown", Status::unavailable("the node is shutting down; reconnect to another node"));
                    }
                    if let Err(e) = self.catch_up().await {
                        return e;
                    }
                }
                _ = beat.tick() => {
                    // A heartbeat says "nothing newer exists": only a node in touch with a
                    // leader can say it.
                    if let Some(e) = self.out_of_touch() {
                        return e;
                    }
                    if let Err(e) = self.catch_up().await {
                        return e;
                    }
                }
            }
        }
    }

    /// Records `ack` only when it names a version sent on this stream and carries the node's
    /// digest at that version. A version never sent ends the stream (INVALID_ARGUMENT); a
    /// digest that differs is not recorded and gets a resync; an ack of a version this stream
    /// has moved past (a resync, a later ack) is stale and ignored.
    async fn on_ack(&mut self, reg: &Registration, ack: &pb::Ack) -> Result<(), End> {
        let v = ack.applied_version;
        match self.sent_digests.check(v, Digest(ack.digest), self.sent) {
            AckCheck::Matches => {
                reg.ack(v, Digest(ack.digest), (self.svc.clock)());
                Ok(())
            }
            AckCheck::Stale => {
                tracing::debug!(subscriber = %self.hello.subscriber_id, version = v,
                    "ignored an ack of a version this stream has moved past");
                Ok(())
            }
            AckCheck::NeverSent if v > self.sent => Err(End::Status(
                "protocol_error",
                Status::invalid_argument(format!(
                    "ack.applied_version {v} is beyond the last version sent, {}: ack only what \
                     you applied",
                    self.sent
                )),
            )),
            AckCheck::NeverSent => Err(End::Status(
                "protocol_error",
                Status::invalid_argument(format!(
                    "ack.applied_version {v} was never sent on this stream (the last version sent is \
                 {}): ack only the version of a snapshot, delta or heartbeat you applied",
                    self.sent
                )),
            )),
            AckCheck::DigestDiffers { expected } => {
                tracing::warn!(subscriber = %self.hello.subscriber_id, version = v,
                    acked = %Digest(ack.digest), node = %expected,
                    "subscriber digest differs from the node's: ack not counted, resyncing");
                self.svc.metrics.digest_mismatches.inc();
                self.resync("digest_mismatch").await
            }
        }
    }

    /// The end of the stream when this node has lost touch with the cluster's leader.
    fn out_of_touch(&self) -> Option<End> {
        let silence = self.svc.contact.lost(&self.svc.raft)?;
        tracing::warn!(subscriber = %self.hello.subscriber_id, silence_ms = silence.as_millis() as u64,
            "no leader contact: ending the stream so the subscriber moves to another node");
        Some(End::Status(
            "out_of_touch",
            Status::unavailable(format!(
                "this node has heard from no leader for {} ms and may be behind the cluster; connect to another node",
                silence.as_millis()
            )),
        ))
    }

    /// Chooses the start: deltas from the Hello version, or a snapshot and why.
    async fn start(
        &mut self,
        applied: &mut tokio::sync::watch::Receiver<crate::node::raft::AppliedState>,
    ) -> Result<(), End> {
        let want = self.hello.applied_version;
        if want > applied.borrow().version {
            let wait = self.svc.config.catch_up_wait;
            let caught_up = tokio::time::timeout(wait, applied.wait_for(|a| a.version >= want))
                .await
                .map(|r| r.map(|_| ()));
            if !matches!(caught_up, Ok(Ok(()))) {
                let leads = {
                    let m = self.svc.raft.metrics().borrow().clone();
                    m.current_leader == Some(m.id)
                };
                if !leads {
                    return Err(End::Status(
                        "behind_subscriber",
                        Status::unavailable(format!(
                            "this node is behind the subscriber (version {want}); connect to another node"
                        )),
                    ));
                }
                return self.snapshot("future_version").await;
            }
        }
        let seed = self.svc.sm.with_set(|s| s.fingerprinter().seed());
        if want == 0 {
            return self.snapshot("new_subscriber").await;
        }
        if FingerprintSeed(self.hello.fingerprint_seed) != seed {
            return self.snapshot("seed_changed").await;
        }
        match self.svc.sm.deltas_after(want) {
            DeltasAfter::TooOld { .. } => self.snapshot("behind_window").await,
            DeltasAfter::Ahead { .. } => self.snapshot("future_version").await,
            DeltasAfter::Deltas(ds) => {
                let now = self.svc.sm.applied();
                if ds.is_empty()
                    && want >= now.last_change
                    && Digest(self.hello.digest) != now.digest
                {
                    return self.snapshot("digest_mismatch").await;
                }
                // Where the subscriber is: its last change precedes the first delta it needs.
                // Nothing is sent at `want` itself: acks count from the first version sent.
                self.sent = want;
                self.sent_change = ds.first().map_or(now.last_change, |d| d.prev_version);
                self.sent_digests.restart(want + 1);
                self.send_deltas(&ds).await?;
                self.catch_up().await
            }
        }
    }

    /// Sends what was applied since the last message: deltas, then a heartbeat.
    async fn catch_up(&mut self) -> Result<(), End> {
        loop {
            match self.svc.sm.deltas_after(self.sent) {
                DeltasAfter::TooOld { .. } => return self.resync("too_slow").await,
                DeltasAfter::Ahead { .. } => return Ok(()),
                DeltasAfter::Deltas(ds) if !ds.is_empty() => self.send_deltas(&ds).await?,
                DeltasAfter::Deltas(_) => {}
            }
            let now = self.svc.sm.applied();
            if now.last_change != self.sent_change {
                continue; // a change landed between the two reads: send it first
            }
            return self.heartbeat(now).await;
        }
    }

    /// Sends a heartbeat at `now`: the commit index the node knows, and, when the node cannot
    /// vouch that its state is current, why (its subscriber counts that as staleness).
    async fn heartbeat(&mut self, now: crate::node::raft::AppliedState) -> Result<(), End> {
        let contact = &self.svc.contact;
        let committed = contact.committed().max(now.version);
        let doubt = contact.doubt(&self.svc.raft, now.version, self.svc.config.max_lag);
        if doubt != self.doubt {
            match doubt {
                Some(d) => tracing::info!(subscriber = %self.hello.subscriber_id, doubt = ?d,
                    "this node cannot vouch for its state: its heartbeats say so"),
                None => tracing::info!(subscriber = %self.hello.subscriber_id,
                    "this node vouches for its state again"),
            }
            self.doubt = doubt;
        }
        self.sent = self.sent.max(now.version);
        self.sent_digests.insert(now.version, now.digest);
        self.send(pb::SubscribeResponse {
            body: Some(Body::Heartbeat(pb::Heartbeat {
                applied_version: now.version,
                last_change_version: now.last_change,
                committed_version: committed,
                digest: now.digest.0,
                sent_at_ms: (self.svc.clock)().as_millis(),
                stale_reason: doubt.map(|d| d.reason().to_owned()).unwrap_or_default(),
            })),
        })
        .await
    }

    async fn send_deltas(&mut self, ds: &[Arc<Delta>]) -> Result<(), End> {
        for d in ds {
            if d.version <= self.sent {
                continue;
            }
            for m in encode::delta(d, self.svc.config.chunk_bytes, self.hello.expiries) {
                self.send(m).await?;
            }
            self.sent = d.version;
            self.sent_change = d.version;
            self.sent_digests.insert(d.version, d.digest);
        }
        Ok(())
    }

    async fn resync(&mut self, reason: &str) -> Result<(), End> {
        tracing::info!(subscriber = %self.hello.subscriber_id, reason, "resyncing subscriber with a snapshot");
        self.send(pb::SubscribeResponse {
            body: Some(Body::Resync(pb::Resync {
                reason: reason.into(),
            })),
        })
        .await?;
        self.snapshot(reason).await
    }

    async fn snapshot(&mut self, reason: &str) -> Result<(), End> {
        let (view, expiries) = self.svc.sm.with_set(|s| {
            let view = s.view();
            let expiries = self.hello.expiries.then(|| s.expiries(&view.fingerprints));
            (view, expiries)
        });
        self.svc.metrics.snapshot_sent(reason);
        tracing::debug!(subscriber = %self.hello.subscriber_id, reason, version = view.version,
            entries = view.fingerprints.len(), "sending a snapshot");
        let chunk = self.svc.config.chunk_bytes;
        for m in encode::snapshot(&view, expiries.as_deref(), reason, chunk) {
            self.send(m).await?;
        }
        self.sent = view.version;
        self.sent_change = view.last_change;
        self.sent_digests.restart(view.version);
        self.sent_digests.insert(view.version, view.digest);
        Ok(())
    }

    /// Queues `m`; a subscriber that has not made room within the send deadline is not reading
    /// and its stream ends (it reconnects and resumes from what it applied).
    async fn send(&self, m: pb::SubscribeResponse) -> Result<(), End> {
        let deadline = self.svc.config.send_timeout;
        match tokio::time::timeout(deadline, self.tx.send(self.svc.queued(Ok(m)))).await {
            Ok(r) => r.map_err(|_| End::Gone("closed")),
            Err(_) => {
                tracing::info!(subscriber = %self.hello.subscriber_id, ?deadline,
                    "subscriber did not read for the send deadline: ending its stream");
                Err(End::Gone("not_reading"))
            }
        }
    }
}
