//! The node's end of one stream, as a state machine: where it starts (deltas or a snapshot, and
//! why), then deltas in order, heartbeats, and acks counted only for versions sent on the stream
//! with the node's digest there. Events in (`start`, `on_applied`, `on_tick`, `on_ack`), actions
//! out ([`Action`]); the async driver owns the socket, the timers and the subscriber table.

use std::sync::Arc;
use std::time::Duration;

use recall_core::{Delta, Digest, FingerprintSeed};

use crate::acks::{AckCheck, Sent};
use crate::message::{Ack, Down, Encoded, Heartbeat, Hello, Snapshot, Witness, split_delta};
use crate::window::Window;

/// The node's applied state, as a session sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// The last version applied.
    pub version: u64,
    /// The version of the last change to the subscriber view.
    pub last_change: u64,
    /// The digest of the subscriber view.
    pub digest: Digest,
}

/// What a session reads from its node.
pub trait Source {
    /// The applied state.
    fn applied(&self) -> Applied;
    /// The cluster's fingerprint seed.
    fn seed(&self) -> FingerprintSeed;
    /// The changes after `version`.
    fn deltas_after(&self, version: u64) -> Window;
    /// The snapshot of the whole subscriber view in chunks of about `max_bytes`, with each
    /// fingerprint's expiry when `expiries`: built once per version and shared by every session
    /// that sends it.
    fn snapshot(&self, expiries: bool, max_bytes: usize) -> Arc<Snapshot>;
    /// Whether this node leads the cluster now.
    fn leads(&self) -> bool;
    /// How long this node has been out of touch with any leader, when it is (its streams end).
    fn out_of_touch(&self) -> Option<Duration>;
    /// The commit index this node knows from its leader.
    fn committed(&self) -> u64;
    /// Why this node cannot vouch that its state at `applied` is current, if it cannot.
    fn doubt(&self, applied: u64) -> Option<&'static str>;
    /// This node's wall clock, Unix milliseconds (heartbeats carry it for lag reports).
    fn wall_ms(&self) -> i64;
    /// How long ago this node last heard from a leader (a leader: from a quorum); its state is
    /// known current as of then.
    fn contact_age(&self) -> Duration;
    /// The latest checkpoint a quorum of nodes signed, if any.
    fn witness(&self) -> Option<Arc<Witness>>;
}

/// How a session behaves.
#[derive(Clone, Copy, Debug)]
pub struct SessionConfig {
    /// The largest message, in bytes.
    pub chunk_bytes: usize,
    /// How long a node behind a subscriber's version waits to catch up before refusing it.
    pub catch_up_wait: Duration,
}

/// The status a stream ends with, as a gRPC code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// Try another node.
    Unavailable,
    /// The subscriber broke the protocol.
    InvalidArgument,
}

/// Why and how the stream ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct End {
    /// Why, for the node's metrics (one of the node's stream-end reasons).
    pub why: &'static str,
    /// The status code.
    pub code: Code,
    /// What the subscriber reads and what it should do.
    pub message: String,
}

/// What the driver does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Queue a message to the subscriber, in order.
    Send(Down),
    /// Queue these shared messages to the subscriber, in order (a snapshot's body).
    SendShared(Encoded),
    /// Record the subscriber's applied version (it counts for convergence).
    Counted(Ack),
    /// A snapshot is being sent, and why.
    Snapshot {
        /// One of `SNAPSHOT_REASONS`.
        reason: &'static str,
        /// Its version.
        version: u64,
        /// Its fingerprints.
        entries: usize,
    },
    /// An ack of a version with a digest other than the node's: not counted, resyncing.
    DigestMismatch {
        /// The version acked.
        version: u64,
        /// The subscriber's digest.
        acked: Digest,
        /// The node's.
        node: Digest,
    },
    /// An ack of a version the stream has moved past: ignored.
    StaleAck(u64),
    /// Whether the node vouches for its state in its heartbeats changed (the reason it does
    /// not, or `None` when it does again).
    Doubt(Option<&'static str>),
    /// End the stream with a status; nothing more is sent.
    End(End),
}

enum Phase {
    /// Not started.
    New,
    /// The node is behind the Hello's version and waits to catch up until the deadline.
    CatchingUp { until: Duration },
    /// Sending deltas and heartbeats.
    Streaming,
    /// Ended.
    Ended,
}

/// One stream's state.
pub struct Session {
    hello: Hello,
    config: SessionConfig,
    phase: Phase,
    /// The last version sent (snapshot, delta or heartbeat).
    sent: u64,
    /// The last change sent.
    sent_change: u64,
    /// The versions sent at or after a floor, each with the node's digest: the only acks that
    /// count.
    sent_digests: Sent,
    /// Why the last heartbeat did not vouch for the node's state, if it did not.
    doubt: Option<&'static str>,
    /// The version of the last checkpoint a heartbeat carried.
    witness_sent: u64,
}

type Out = Vec<Action>;

impl Session {
    /// A session for a stream that opened with `hello`.
    pub fn new(hello: Hello, config: SessionConfig) -> Self {
        Self {
            hello,
            config,
            phase: Phase::New,
            sent: 0,
            sent_change: 0,
            sent_digests: Sent::default(),
            doubt: None,
            witness_sent: 0,
        }
    }

    /// The Hello the stream opened with.
    pub fn hello(&self) -> &Hello {
        &self.hello
    }

    /// The last version sent.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Whether the stream has ended.
    pub fn ended(&self) -> bool {
        matches!(self.phase, Phase::Ended)
    }

    /// When the session wants an `on_tick` even if nothing happens (the end of a catch-up wait).
    pub fn wake_at(&self) -> Option<Duration> {
        match self.phase {
            Phase::CatchingUp { until } => Some(until),
            _ => None,
        }
    }

    /// The stream opened at `now` (the driver's monotonic time): choose where it starts.
    pub fn start(&mut self, src: &impl Source, now: Duration, out: &mut Out) {
        if !matches!(self.phase, Phase::New) {
            return;
        }
        if self.out_of_touch(src, out) {
            return;
        }
        if self.hello.applied_version > src.applied().version {
            self.phase = Phase::CatchingUp {
                until: now + self.config.catch_up_wait,
            };
            return;
        }
        self.begin(src, out);
    }

    /// The node applied something new.
    pub fn on_applied(&mut self, src: &impl Source, now: Duration, out: &mut Out) {
        match self.phase {
            Phase::CatchingUp { until } => self.wait(src, now, until, out),
            Phase::Streaming => self.catch_up(src, out),
            Phase::New | Phase::Ended => {}
        }
    }

    /// The heartbeat interval passed (or the wake-up time came): a heartbeat says "nothing
    /// newer exists", which only a node in touch with a leader can say.
    pub fn on_tick(&mut self, src: &impl Source, now: Duration, out: &mut Out) {
        match self.phase {
            Phase::CatchingUp { until } => self.wait(src, now, until, out),
            Phase::Streaming => {
                if !self.out_of_touch(src, out) {
                    self.catch_up(src, out);
                }
            }
            Phase::New | Phase::Ended => {}
        }
    }

    /// Records `ack` only when it names a version sent on this stream and carries the node's
    /// digest at that version. A version never sent ends the stream (INVALID_ARGUMENT); a
    /// digest that differs is not recorded and gets a resync; an ack of a version this stream
    /// has moved past (a resync, a later ack) is stale and ignored.
    pub fn on_ack(&mut self, ack: Ack, src: &impl Source, out: &mut Out) {
        if !matches!(self.phase, Phase::Streaming) {
            if !self.ended() {
                self.end(
                    out,
                    "protocol_error",
                    Code::InvalidArgument,
                    format!(
                        "ack.applied_version {} before anything was sent: ack only what you applied",
                        ack.version
                    ),
                );
            }
            return;
        }
        let v = ack.version;
        match self.sent_digests.check(v, ack.digest, self.sent) {
            AckCheck::Matches => out.push(Action::Counted(ack)),
            AckCheck::Stale => out.push(Action::StaleAck(v)),
            AckCheck::NeverSent => {
                let message = if v > self.sent {
                    format!(
                        "ack.applied_version {v} is beyond the last version sent, {}: ack only \
                         what you applied",
                        self.sent
                    )
                } else {
                    format!(
                        "ack.applied_version {v} was never sent on this stream (the last version \
                         sent is {}): ack only the version of a snapshot, delta or heartbeat you \
                         applied",
                        self.sent
                    )
                };
                self.end(out, "protocol_error", Code::InvalidArgument, message);
            }
            AckCheck::DigestDiffers { expected } => {
                out.push(Action::DigestMismatch {
                    version: v,
                    acked: ack.digest,
                    node: expected,
                });
                self.resync(src, "digest_mismatch", out);
            }
        }
    }

    fn end(&mut self, out: &mut Out, why: &'static str, code: Code, message: String) {
        self.phase = Phase::Ended;
        out.push(Action::End(End { why, code, message }));
    }

    /// Ends the stream when this node has lost touch with the cluster's leader.
    fn out_of_touch(&mut self, src: &impl Source, out: &mut Out) -> bool {
        let Some(silence) = src.out_of_touch() else {
            return false;
        };
        self.end(
            out,
            "out_of_touch",
            Code::Unavailable,
            format!(
                "this node has heard from no leader for {} ms and may be behind the cluster; \
                 connect to another node",
                silence.as_millis()
            ),
        );
        true
    }

    /// Waiting for this node to reach the Hello's version.
    fn wait(&mut self, src: &impl Source, now: Duration, until: Duration, out: &mut Out) {
        let want = self.hello.applied_version;
        if src.applied().version >= want {
            return self.begin(src, out);
        }
        if now < until {
            return;
        }
        // Only a leader that has applied everything committed, and knows it (it vouches for its
        // state: a new leader does not until it has applied an entry of its term), knows the
        // subscriber holds what was never committed; any other node (a leader still applying
        // its log, say) would send it back to an older state and undo revocations it enforces.
        let applied = src.applied().version;
        if !src.leads() || applied < src.committed() || src.doubt(applied).is_some() {
            return self.end(
                out,
                "behind_subscriber",
                Code::Unavailable,
                format!(
                    "this node is at version {applied}, behind the subscriber (version {want}); \
                     connect to another node"
                ),
            );
        }
        // The leader holds everything committed: a subscriber ahead of it holds what was never
        // committed (a lost leader's tail, a cluster rebuilt from an older backup) and must start
        // again from the leader's state.
        self.phase = Phase::Streaming;
        self.snapshot(src, "future_version", out);
    }

    /// Deltas from the Hello's version, or a snapshot and why.
    fn begin(&mut self, src: &impl Source, out: &mut Out) {
        self.phase = Phase::Streaming;
        let want = self.hello.applied_version;
        if want == 0 {
            return self.snapshot(src, "new_subscriber", out);
        }
        if self.hello.seed != src.seed() {
            return self.snapshot(src, "seed_changed", out);
        }
        match src.deltas_after(want) {
            Window::TooOld { .. } => self.snapshot(src, "behind_window", out),
            Window::Ahead { .. } => self.snapshot(src, "future_version", out),
            Window::Deltas(ds) => {
                let now = src.applied();
                if ds.is_empty() && want >= now.last_change && self.hello.digest != now.digest {
                    return self.snapshot(src, "digest_mismatch", out);
                }
                // Where the subscriber is: its last change precedes the first delta it needs.
                // Nothing is sent at `want` itself: acks count from the first version sent.
                self.sent = want;
                self.sent_change = ds.first().map_or(now.last_change, |d| d.prev_version);
                self.sent_digests.restart(want + 1);
                self.send_deltas(&ds, out);
                self.catch_up(src, out);
            }
        }
    }

    /// Sends what was applied since the last message: deltas, then a heartbeat.
    fn catch_up(&mut self, src: &impl Source, out: &mut Out) {
        loop {
            match src.deltas_after(self.sent) {
                Window::TooOld { .. } => return self.resync(src, "too_slow", out),
                Window::Ahead { .. } => return,
                Window::Deltas(ds) => self.send_deltas(&ds, out),
            }
            let now = src.applied();
            if now.last_change != self.sent_change {
                continue; // a change landed between the two reads: send it first
            }
            return self.heartbeat(src, now, out);
        }
    }

    /// A heartbeat at `now`: the commit index the node knows, and, when the node cannot vouch
    /// that its state is current, why.
    fn heartbeat(&mut self, src: &impl Source, now: Applied, out: &mut Out) {
        let doubt = src.doubt(now.version);
        if doubt != self.doubt {
            self.doubt = doubt;
            out.push(Action::Doubt(doubt));
        }
        self.sent = self.sent.max(now.version);
        self.sent_digests.insert(now.version, now.digest);
        // Each checkpoint once per stream, and only one the subscriber can have reached.
        let witness = src
            .witness()
            .filter(|w| w.version > self.witness_sent && w.version <= now.version);
        if let Some(w) = &witness {
            self.witness_sent = w.version;
        }
        out.push(Action::Send(Down::Heartbeat(Heartbeat {
            applied_version: now.version,
            last_change: now.last_change,
            committed_version: src.committed().max(now.version),
            digest: now.digest,
            sent_at_ms: src.wall_ms(),
            stale_reason: doubt.unwrap_or_default().to_owned(),
            contact_age_ms: u64::try_from(src.contact_age().as_millis()).unwrap_or(u64::MAX),
            witness,
        })));
    }

    fn send_deltas(&mut self, ds: &[Arc<Delta>], out: &mut Out) {
        for d in ds {
            if d.version <= self.sent {
                continue;
            }
            out.extend(
                split_delta(d, self.config.chunk_bytes, self.hello.expiries)
                    .into_iter()
                    .map(Action::Send),
            );
            self.sent = d.version;
            self.sent_change = d.version;
            self.sent_digests.insert(d.version, d.digest);
        }
    }

    fn resync(&mut self, src: &impl Source, reason: &'static str, out: &mut Out) {
        out.push(Action::Send(Down::Resync {
            reason: reason.into(),
        }));
        self.snapshot(src, reason, out);
    }

    fn snapshot(&mut self, src: &impl Source, reason: &'static str, out: &mut Out) {
        let snap = src.snapshot(self.hello.expiries, self.config.chunk_bytes);
        let b = &snap.begin;
        out.push(Action::Snapshot {
            reason,
            version: b.version,
            entries: b.entries as usize,
        });
        out.push(Action::Send(snap.begin(reason)));
        out.push(Action::SendShared(snap.body.clone()));
        self.sent = b.version;
        self.sent_change = b.last_change;
        self.sent_digests.restart(b.version);
        self.sent_digests.insert(b.version, b.digest);
    }
}
