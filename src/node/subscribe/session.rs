//! One subscriber stream: the async driver of the protocol's session state machine
//! (`recall_stream::Session`). It owns the socket, the heartbeat timer and the registration,
//! feeds the machine its events (applied, tick, ack) and performs its actions; every decision
//! of the stream contract is the machine's.

use std::sync::Arc;
use std::time::Duration;

use recall_stream::session::{Action, Code, End as MachineEnd};
use recall_stream::{Hello, Session, SessionConfig, Up};
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use super::registry::Registration;
use super::{Origin, SubscribeService};
use crate::proto as pb;
use crate::wire::stream::{down_to_wire, up_from_wire};

type Tx = mpsc::Sender<super::Queued>;

/// The stream ended (subscriber gone) or must end with a status; each with why, for the
/// node's metrics (one of `metrics::STREAM_ENDS`).
enum End {
    Gone(&'static str),
    Status(&'static str, Status),
}

/// Serves one stream that opened with `hello` to its end.
pub async fn run<O: Origin>(
    svc: SubscribeService<O>,
    hello: Hello,
    relay: bool,
    tx: Tx,
    incoming: Streaming<pb::SubscribeRequest>,
) {
    let id = hello.subscriber_id.clone();
    let mut driver = Driver {
        session: Session::new(
            hello,
            SessionConfig {
                chunk_bytes: svc.config.chunk_bytes,
                catch_up_wait: svc.config.catch_up_wait,
            },
        ),
        svc,
        tx,
        base: tokio::time::Instant::now(),
        actions: Vec::new(),
        backlog: Arc::default(),
        relay,
    };
    let end = driver.serve(incoming).await;
    let metrics = &driver.svc.metrics;
    match end {
        End::Gone(why) => {
            metrics.stream_ended(why);
            tracing::debug!(subscriber = %id, why, "stream closed")
        }
        End::Status(why, s) => {
            metrics.stream_ended(why);
            tracing::info!(subscriber = %id, code = ?s.code(), msg = s.message(), "stream ended");
            let _ = driver
                .tx
                .send(driver.svc.queued(Err(s), &driver.backlog))
                .await;
        }
    }
}

struct Driver<O> {
    svc: SubscribeService<O>,
    session: Session,
    tx: Tx,
    /// The driver's monotonic time is measured from here.
    base: tokio::time::Instant,
    actions: Vec<Action>,
    /// The encoded bytes queued to this subscriber and not yet taken by the transport.
    backlog: Arc<super::Backlog>,
    /// Whether the caller is a relay (it may report the subscribers behind it).
    relay: bool,
}

fn shutting_down() -> End {
    End::Status(
        "shutdown",
        Status::unavailable("the node is shutting down; reconnect to another node"),
    )
}

impl<O: Origin> Driver<O> {
    /// The origin's wall clock, which acks and reports are stamped with.
    fn wall(&self) -> recall_core::Timestamp {
        recall_core::Timestamp::from_millis(self.svc.origin.wall_ms())
    }

    fn now(&self) -> Duration {
        self.base.elapsed()
    }

    /// Whether the subscriber has more queued than the node holds for it: nothing more is
    /// queued until it reads, and the next heartbeat tick after that catches it up (from the
    /// window, or with a too_slow resync).
    fn congested(&self) -> bool {
        self.backlog.over(self.svc.config.queue_bytes)
    }

    async fn serve(&mut self, mut incoming: Streaming<pb::SubscribeRequest>) -> End {
        let hello = self.session.hello();
        let now = self.wall();
        let reg = match self.svc.registry.register(
            &hello.subscriber_id,
            &hello.mode,
            now,
            self.svc.config.max_subscribers,
        ) {
            Ok(r) => r,
            Err(full) => return End::Status("full", Status::resource_exhausted(full.to_string())),
        };
        let mut replaced = reg.replaced.clone();
        let mut stopped = self.svc.stopped.clone();
        let mut alarm = self.svc.origin.alarm();
        let mut applied = self.svc.origin.changes();
        let origin = self.svc.origin.clone();
        let now = self.now();
        self.session.start(&origin, now, &mut self.actions);
        if let Err(e) = self.perform(&reg).await {
            return e;
        }
        let mut beat = tokio::time::interval(self.svc.config.heartbeat);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wake = self.session.wake_at().map(|at| self.base + at);
            tokio::select! {
                _ = stopped.changed() => return shutting_down(),
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
                    Ok(Some(m)) => match up_from_wire(m) {
                        Ok(Up::Ack(ack)) => self.session.on_ack(ack, &origin, &mut self.actions),
                        Ok(Up::Report(r)) => {
                            if let Err(end) = self.report(&reg, &r) {
                                return end;
                            }
                        }
                        Ok(Up::Hello(_)) => return End::Status("protocol_error", Status::invalid_argument(
                            "after the Hello, a subscriber sends only Acks")),
                        Err(e) => return End::Status("protocol_error", e.into()),
                    },
                },
                changed = applied.changed() => {
                    if changed.is_err() {
                        return shutting_down();
                    }
                    if !self.congested() {
                        let now = self.now();
                        self.session.on_applied(&origin, now, &mut self.actions);
                    }
                }
                _ = beat.tick() => {
                    if !self.congested() {
                        let now = self.now();
                        self.session.on_tick(&origin, now, &mut self.actions);
                    }
                }
                _ = sleep_until(wake) => {
                    let now = self.now();
                    self.session.on_tick(&origin, now, &mut self.actions);
                }
            }
            if let Err(e) = self.perform(&reg).await {
                return e;
            }
        }
    }

    /// Records a relay's report of the subscribers behind it.
    fn report(&self, reg: &Registration, r: &recall_stream::Report) -> Result<(), End> {
        if !self.relay {
            return Err(End::Status(
                "protocol_error",
                Status::permission_denied(
                    "only a relay (spiffe://DOMAIN/relay/ID) reports subscribers behind it; \
                     a subscriber sends only Acks",
                ),
            ));
        }
        reg.report(r, self.wall(), self.svc.config.max_relayed)
            .map_err(|e| End::Status("full", Status::resource_exhausted(e.to_string())))
    }

    /// Performs what the session decided, in order.
    async fn perform(&mut self, reg: &Registration) -> Result<(), End> {
        let id = &self.session.hello().subscriber_id;
        for action in std::mem::take(&mut self.actions) {
            match action {
                Action::Send(m) => self.send(down_to_wire(&m)).await?,
                Action::SendShared(ms) => {
                    for m in ms.iter() {
                        self.send(down_to_wire(m)).await?;
                    }
                }
                Action::Counted(ack) => reg.ack(ack.version, ack.digest, self.wall()),
                Action::Snapshot {
                    reason,
                    version,
                    entries,
                } => {
                    self.svc.metrics.snapshot_sent(reason);
                    tracing::debug!(subscriber = %id, reason, version, entries, "sending a snapshot");
                }
                Action::DigestMismatch {
                    version,
                    acked,
                    node,
                } => {
                    tracing::warn!(subscriber = %id, version, %acked, %node,
                        "subscriber digest differs from the node's: ack not counted, resyncing");
                    self.svc.metrics.digest_mismatches.inc();
                }
                Action::StaleAck(version) => {
                    tracing::debug!(subscriber = %id, version,
                        "ignored an ack of a version this stream has moved past");
                }
                Action::Doubt(Some(reason)) => {
                    tracing::info!(subscriber = %id, reason,
                        "this node cannot vouch for its state: its heartbeats say so")
                }
                Action::Doubt(None) => {
                    tracing::info!(subscriber = %id, "this node vouches for its state again")
                }
                Action::End(MachineEnd { why, code, message }) => {
                    if why == "out_of_touch" {
                        tracing::warn!(subscriber = %id, %message,
                            "no leader contact: ending the stream so the subscriber moves to another node");
                    }
                    return Err(End::Status(
                        why,
                        match code {
                            Code::Unavailable => Status::unavailable(message),
                            Code::InvalidArgument => Status::invalid_argument(message),
                        },
                    ));
                }
            }
        }
        Ok(())
    }

    /// Queues `m` once the subscriber's backlog is within its byte bound and the queue has
    /// room; a subscriber that has not made room within the send deadline is not reading and
    /// its stream ends (it reconnects and resumes from what it applied).
    async fn send(&self, m: pb::SubscribeResponse) -> Result<(), End> {
        let deadline = self.svc.config.send_timeout;
        let limit = self.svc.config.queue_bytes;
        let queue = async {
            self.backlog.within(limit).await;
            self.tx.send(self.svc.queued(Ok(m), &self.backlog)).await
        };
        match tokio::time::timeout(deadline, queue).await {
            Ok(r) => r.map_err(|_| End::Gone("closed")),
            Err(_) => {
                tracing::info!(subscriber = %self.session.hello().subscriber_id, ?deadline,
                    "subscriber did not read for the send deadline: ending its stream");
                Err(End::Gone("not_reading"))
            }
        }
    }
}

/// Resolves at `at`, or never.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
