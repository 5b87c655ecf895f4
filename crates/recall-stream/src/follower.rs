//! The subscriber's end of a stream, as a state machine: every message applied in order or the
//! stream abandoned, never guessed past. Messages in ([`Follower::on_message`], then
//! [`Follower::on_burst_end`] once no more are waiting), events out ([`Event`]); the async
//! driver owns the socket, the reconnects and the persistence.
//!
//! Only a heartbeat in which the node vouches for its state (no `stale_reason`) counts as
//! contact for the staleness bound.

use std::collections::VecDeque;
use std::time::Duration;

use recall_core::{Delta, Digest, FingerprintSeed};

use crate::message::{Ack, DeltaPart, Down, Hello, SnapshotBegin, SnapshotChunk, assemble};

/// The state a follower keeps in step with the authority (the sidecar's filter, the Redis
/// mirror's keys).
pub trait Replica {
    /// What goes wrong applying.
    type Error: std::error::Error + Send + Sync + 'static;
    /// A snapshot being loaded.
    type Loader;
    /// The version applied.
    fn version(&self) -> u64;
    /// The version of the last change applied.
    fn last_change(&self) -> u64;
    /// The digest of the state.
    fn digest(&self) -> Digest;
    /// The fingerprint seed of the state (0 when it holds nothing).
    fn seed(&self) -> FingerprintSeed;
    /// Applies complete deltas, in order, as one change; checks each continues the chain and
    /// the digest after it.
    fn apply(&mut self, deltas: &[Delta]) -> Result<(), Self::Error>;
    /// Moves the version past entries that changed nothing; refuses a gap.
    fn advance(&mut self, version: u64, last_change: u64) -> Result<(), Self::Error>;
    /// Whether `e` says the state diverged from the authority's (a digest mismatch).
    fn diverged(e: &Self::Error) -> bool;
    /// Starts loading a snapshot.
    fn begin_snapshot(&mut self, begin: &SnapshotBegin) -> Self::Loader;
    /// Adds a chunk to a snapshot being loaded.
    fn push_chunk(loader: &mut Self::Loader, chunk: SnapshotChunk);
    /// How many fingerprints the loader holds.
    fn loaded(loader: &Self::Loader) -> u64;
    /// Replaces the state with the loaded snapshot, checking its digest.
    fn finish_snapshot(&mut self, loader: Self::Loader) -> Result<(), Self::Error>;
}

/// What the driver learns from a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Send this ack (acks coalesce: only the newest matters).
    Ack(Ack),
    /// Deltas applied.
    Applied {
        /// How many.
        deltas: u64,
        /// The version now.
        version: u64,
    },
    /// A snapshot started arriving.
    SnapshotBegun {
        /// Why the node sent it.
        reason: String,
        /// Its version.
        version: u64,
        /// Its fingerprints.
        entries: u64,
    },
    /// A snapshot replaced the state.
    SnapshotLoaded {
        /// Its version.
        version: u64,
    },
    /// The node vouched for its state and ours matches it: fresh as of `contact_age` before
    /// the heartbeat was sent (when the node last heard from a leader).
    Vouched {
        /// How long before the heartbeat the node last heard from a leader.
        contact_age: Duration,
    },
    /// The node's heartbeats stopped (or started again) vouching for its state.
    Doubt(Option<String>),
    /// A checkpoint a quorum of nodes signed matches this subscriber's set at its version.
    Witnessed {
        /// The checkpoint's version.
        version: u64,
    },
    /// The node resyncs this subscriber.
    Resync {
        /// Why.
        reason: String,
    },
}

/// Why the stream must be abandoned (the driver reconnects and resumes from what was applied).
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The node broke the protocol (a message out of place).
    #[error("{0}")]
    Protocol(String),
    /// Our state differs from the authority's: answers are stale until a snapshot lands, and
    /// the next stream asks for one.
    #[error("the state diverged from the authority's: {0}")]
    Diverged(String),
    /// Applying failed otherwise (a gap, a snapshot refused).
    #[error("{0}")]
    Apply(String),
}

/// A snapshot being loaded: the loader, and the entries and rules it announced.
struct Loading<L> {
    loader: L,
    entries: u64,
}

/// What one stream has received and not yet applied.
struct Received<L> {
    loading: Option<Loading<L>>,
    /// The parts of a delta so far.
    parts: Vec<DeltaPart>,
    /// Complete deltas waiting to be applied together.
    ready: Vec<Delta>,
    /// Whether this stream has acked anything yet.
    acked: bool,
    /// The version to ack after the burst, if any.
    ack: Option<u64>,
}

impl<L> Default for Received<L> {
    fn default() -> Self {
        Self {
            loading: None,
            parts: Vec::new(),
            ready: Vec::new(),
            acked: false,
            ack: None,
        }
    }
}

/// The follower: its replica and the state of the stream it follows.
pub struct Follower<R: Replica> {
    replica: R,
    rx: Received<R::Loader>,
    /// The next Hello asks for a snapshot (after a divergence).
    force_snapshot: bool,
    /// Why the node followed now cannot vouch for its state, if it cannot.
    doubt: Option<String>,
    /// Whether the state is known to differ from the authority's.
    diverged: bool,
    /// The digest after each of the last changes applied (at most [`REMEMBERED`]), oldest
    /// first and without gaps since the first: what a signed checkpoint is checked against.
    changes: VecDeque<(u64, Digest)>,
}

/// The most deltas applied as one change.
pub const MAX_BATCH: usize = 256;

/// How many changes a follower remembers the digest of: a checkpoint older than these is not
/// checked (checkpoints are signed every second or so; this covers thousands of changes).
pub const REMEMBERED: usize = 4096;

impl<R: Replica> Follower<R> {
    /// A follower of `replica`'s state.
    pub fn new(replica: R) -> Self {
        let mut f = Self {
            replica,
            rx: Received::default(),
            force_snapshot: false,
            doubt: None,
            diverged: false,
            changes: VecDeque::new(),
        };
        f.remember_from_here();
        f
    }

    /// Forgets the digests of past changes and starts again from the replica's state (after a
    /// snapshot, or at the start).
    fn remember_from_here(&mut self) {
        self.changes.clear();
        self.changes
            .push_back((self.replica.last_change(), self.replica.digest()));
    }

    /// The replica's digest as of `version`, when it is known: `version` is within what was
    /// applied and no older than the first change remembered.
    pub fn digest_at(&self, version: u64) -> Option<Digest> {
        if version > self.replica.version() {
            return None;
        }
        if version >= self.replica.last_change() {
            return Some(self.replica.digest());
        }
        let later = self.changes.partition_point(|(v, _)| *v <= version);
        later.checked_sub(1).map(|i| self.changes[i].1)
    }

    /// The replica.
    pub fn replica(&self) -> &R {
        &self.replica
    }

    /// The replica, to change outside the stream (tests that corrupt it, say).
    pub fn replica_mut(&mut self) -> &mut R {
        &mut self.replica
    }

    /// Why the node followed now cannot vouch for its state, if it cannot.
    pub fn doubt(&self) -> Option<&str> {
        self.doubt.as_deref()
    }

    /// Whether the state is known to differ from the authority's (until a snapshot lands).
    pub fn is_diverged(&self) -> bool {
        self.diverged
    }

    /// Whether the driver should take more waiting messages before `on_burst_end` (deltas
    /// already here are applied together: one rebuild instead of one per delta).
    pub fn wants_more(&self) -> bool {
        !self.rx.ready.is_empty() && self.rx.ready.len() < MAX_BATCH
    }

    /// Makes the next Hello ask for a snapshot (a lite filter past its design fill rebuilds its
    /// Bloom filters from one); the state is kept, and answers from it, until the snapshot lands.
    pub fn request_snapshot(&mut self) {
        self.force_snapshot = true;
    }

    /// Whether the next Hello asks for a snapshot.
    pub fn wants_snapshot(&self) -> bool {
        self.force_snapshot
    }

    /// A new stream: forgets what the last one left half-received; the Hello to open it with.
    pub fn connect(&mut self, subscriber_id: &str, mode: &str, expiries: bool) -> Hello {
        self.rx = Received::default();
        self.doubt = None;
        let (applied_version, digest, seed) = if self.force_snapshot {
            (0, Digest(0), FingerprintSeed(0))
        } else {
            (
                self.replica.version(),
                self.replica.digest(),
                self.replica.seed(),
            )
        };
        Hello {
            subscriber_id: subscriber_id.to_owned(),
            applied_version,
            digest,
            seed,
            mode: mode.to_owned(),
            expiries,
        }
    }

    /// The stream ended: what was half-received is dropped.
    pub fn disconnected(&mut self) {
        self.rx = Received::default();
        self.doubt = None;
    }

    /// Takes one message: a complete delta waits for the end of the burst; anything else first
    /// applies what is waiting (order is everything), then itself.
    pub fn on_message(&mut self, msg: Down, out: &mut Vec<Event>) -> Result<(), Failure> {
        if !matches!(msg, Down::Delta(_)) {
            self.flush(out)?;
        }
        match msg {
            Down::SnapshotBegin(b) => {
                if !self.rx.parts.is_empty() {
                    return Err(Failure::Protocol("snapshot began inside a delta".into()));
                }
                out.push(Event::SnapshotBegun {
                    reason: b.reason.clone(),
                    version: b.version,
                    entries: b.entries,
                });
                let loader = self.replica.begin_snapshot(&b);
                self.rx.loading = Some(Loading {
                    loader,
                    entries: b.entries,
                });
            }
            Down::SnapshotChunk(c) => {
                let Some(l) = self.rx.loading.as_mut() else {
                    return Err(Failure::Protocol(
                        "snapshot chunk outside a snapshot".into(),
                    ));
                };
                R::push_chunk(&mut l.loader, c);
            }
            Down::SnapshotEnd { version, .. } => {
                let Some(l) = self.rx.loading.take() else {
                    return Err(Failure::Protocol("snapshot end outside a snapshot".into()));
                };
                let carried = R::loaded(&l.loader);
                if carried != l.entries {
                    return Err(Failure::Protocol(format!(
                        "snapshot announced {} entries but carried {carried}",
                        l.entries
                    )));
                }
                self.replica
                    .finish_snapshot(l.loader)
                    .map_err(|e| Failure::Apply(format!("snapshot refused: {e}")))?;
                self.diverged = false;
                self.force_snapshot = false;
                self.remember_from_here();
                out.push(Event::SnapshotLoaded { version });
                self.rx.ack = Some(self.replica.version());
            }
            Down::Delta(p) => {
                if self.rx.loading.is_some() {
                    return Err(Failure::Protocol("delta inside a snapshot".into()));
                }
                let parts = &mut self.rx.parts;
                if parts.first().is_some_and(|f| f.version != p.version)
                    || p.part as usize != parts.len()
                {
                    return Err(Failure::Protocol(format!(
                        "delta part {} of version {} out of order",
                        p.part, p.version
                    )));
                }
                let last = p.last_part;
                parts.push(p);
                if last {
                    let d = assemble(std::mem::take(parts));
                    self.rx.ready.push(d);
                }
            }
            Down::Heartbeat(h) => {
                if self.rx.loading.is_some() {
                    return Err(Failure::Protocol("heartbeat inside a snapshot".into()));
                }
                let before = self.replica.version();
                self.replica
                    .advance(h.applied_version, h.last_change)
                    .map_err(|e| Failure::Apply(format!("heartbeat shows a missed change: {e}")))?;
                if self.replica.digest() != h.digest && self.replica.last_change() == h.last_change
                {
                    return Err(self.diverge(format!(
                        "digest differs from the node's at version {}",
                        h.applied_version
                    )));
                }
                if let Some(w) = &h.witness {
                    match self.digest_at(w.version) {
                        Some(held) if held != w.digest => {
                            return Err(self.diverge(format!(
                                "the set a quorum of nodes signed at version {} has digest \
                                 {:016x}; this subscriber's there is {:016x}",
                                w.version, w.digest.0, held.0
                            )));
                        }
                        Some(_) => out.push(Event::Witnessed { version: w.version }),
                        None => {}
                    }
                }
                let doubt = (!h.stale_reason.is_empty()).then_some(h.stale_reason);
                if doubt != self.doubt {
                    out.push(Event::Doubt(doubt.clone()));
                    self.doubt = doubt;
                }
                if self.doubt.is_none() && !self.diverged {
                    out.push(Event::Vouched {
                        contact_age: Duration::from_millis(h.contact_age_ms),
                    });
                }
                // The first heartbeat of a stream is acked even at the version resumed from,
                // so the node counts this subscriber at once.
                if self.replica.version() > before || !self.rx.acked {
                    self.rx.ack = Some(self.replica.version());
                }
            }
            Down::Resync { reason } => {
                self.rx.parts.clear();
                out.push(Event::Resync { reason });
            }
        }
        Ok(())
    }

    /// No more messages are waiting: applies the complete deltas together and acks.
    pub fn on_burst_end(&mut self, out: &mut Vec<Event>) -> Result<(), Failure> {
        self.flush(out)?;
        if let Some(version) = self.rx.ack.take() {
            self.rx.acked = true;
            out.push(Event::Ack(Ack {
                version,
                digest: self.replica.digest(),
            }));
        }
        Ok(())
    }

    fn diverge(&mut self, why: String) -> Failure {
        self.diverged = true;
        self.force_snapshot = true;
        Failure::Diverged(why)
    }

    /// Applies the complete deltas waiting as one change.
    fn flush(&mut self, out: &mut Vec<Event>) -> Result<(), Failure> {
        if self.rx.ready.is_empty() {
            return Ok(());
        }
        let ready = std::mem::take(&mut self.rx.ready);
        match self.replica.apply(&ready) {
            Ok(()) => {}
            Err(e) if R::diverged(&e) => return Err(self.diverge(e.to_string())),
            Err(e) => return Err(Failure::Apply(e.to_string())),
        }
        for d in &ready {
            self.changes.push_back((d.version, d.digest));
        }
        while self.changes.len() > REMEMBERED {
            self.changes.pop_front();
        }
        let version = self.replica.version();
        out.push(Event::Applied {
            deltas: ready.len() as u64,
            version,
        });
        self.rx.ack = Some(version);
        Ok(())
    }
}
