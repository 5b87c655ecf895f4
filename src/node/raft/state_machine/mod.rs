//! The durable state machine of an authority node: the revocation set, the window of recent
//! deltas subscribers resume from, and the hash-chained audit history.
//!
//! The set lives in memory and is made durable by snapshots: the latest one is stored (fsynced)
//! in `state.redb` when it is built or installed, and `open` restores from it; openraft then
//! re-applies the log after it. Audit records go to the same file, one transaction per applied
//! batch (see [`snapshot`] for the file and why those commits skip the fsync).
//!
//! Readers (subscriber streams, status) never wait for redb: they read the in-memory state under
//! a lock that is never held across an `.await` or a disk write.

use std::collections::{BTreeSet, VecDeque};
use std::io::Cursor;
use std::path::Path;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::storage::RaftStateMachine;
use openraft::{
    Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, Snapshot, StorageError,
    StoredMembership,
};
use recall_core::{Digest, FingerprintSeed, OutOfOrder, RevocationSet};
use recall_stream::{DeltaWindow, Window};
use tokio::sync::{Mutex, watch};

mod changes;

use super::snapshot::{self, Meta, StateDb, sto};
use super::{Node, NodeId, Request, Response, TypeConfig};
use crate::node::access::Bindings;
use crate::node::audit::{AuditHead, AuditRecord, Broken, Verified};
use crate::node::history::checkpoint::Accepted;
use crate::node::history::{Body, Witnessed, Witnesses};
use crate::node::stepup::{Change, Governance, Requirement};

pub use super::snapshot::{FILE_NAME, StateMachineError};
pub use super::snapshot_build::{SnapshotBuilder, SnapshotTiming};

/// How much history the delta window keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateMachineConfig {
    /// The most deltas retained (at least 1); the oldest are dropped first.
    pub max_deltas: usize,
    /// The most fingerprints and rules retained across all deltas; the oldest are dropped first.
    pub max_delta_entries: usize,
}

impl Default for StateMachineConfig {
    fn default() -> Self {
        Self {
            max_deltas: 4096,
            max_delta_entries: 4_000_000,
        }
    }
}

impl StateMachineConfig {
    /// Refuses a configuration that cannot work, naming the field.
    pub fn validate(&self) -> Result<(), StateMachineError> {
        if self.max_deltas == 0 {
            return Err(StateMachineError::Config {
                field: "max_deltas",
                reason: "must be at least 1",
            });
        }
        Ok(())
    }
}

/// What the state machine has applied, published after every apply batch and install.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppliedState {
    /// The log index of the last applied entry.
    pub version: u64,
    /// The version of the last change to the subscriber view.
    pub last_change: u64,
    /// The digest of the subscriber view.
    pub digest: Digest,
}

/// The durable state machine. Cloning is cheap and shares the state.
#[derive(Clone, Debug)]
pub struct StateMachine {
    inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) db: StateDb,
    state: RwLock<State>,
    /// Held by `apply` and `install_snapshot` until their audit records are committed, and by a
    /// snapshot build while it freezes the state: a snapshot never misses the records of the
    /// versions it covers.
    pub(super) gate: Mutex<()>,
    applied: watch::Sender<AppliedState>,
    alarm: watch::Sender<Option<String>>,
    /// How the latest snapshot build went.
    pub(super) snapshot_timing: std::sync::Mutex<Option<SnapshotTiming>>,
    /// Whether a merge of the set's recent changes is running.
    merging: std::sync::atomic::AtomicBool,
}

/// How many changed fingerprints wait in hash maps before they are merged into the set's
/// sorted layer (they hold about twice the memory there): a few MB, whatever the set's size.
const MERGE_AT: usize = 64 * 1024;

pub(super) struct State {
    pub(super) set: RevocationSet,
    pub(super) seeded: bool,
    pub(super) last_applied: Option<LogId<NodeId>>,
    pub(super) membership: StoredMembership<NodeId, Node>,
    pub(super) roles: Bindings,
    pub(super) gov: Governance,
    pub(super) witnesses: Witnesses,
    pub(super) head: AuditHead,
    /// The latest record heads, to compare with what a quorum witnesses.
    recent: VecDeque<(u64, [u8; 32])>,
    window: DeltaWindow,
}

/// How many recent record heads a node keeps to compare with witnessed checkpoints.
const RECENT_HEADS: usize = 4096;

/// What applying a batch produced besides responses: records with their commands, witnessed
/// checkpoints, and an alarm if this node's history disagrees with a quorum's.
#[derive(Default)]
struct Out {
    records: Vec<(AuditRecord, Body)>,
    witnessed: Vec<Witnessed>,
    alarm: Option<String>,
}

impl State {
    fn applied(&self) -> AppliedState {
        AppliedState {
            version: self.set.version(),
            last_change: self.set.last_change(),
            digest: self.set.digest(),
        }
    }

    /// Moves the set to `index` for an entry that changes nothing in it. openraft's first
    /// membership entry sits at index 0, where a fresh set already is.
    fn advance(&mut self, index: u64) -> Result<(), OutOfOrder> {
        if index == 0 && self.last_applied.is_none() {
            return Ok(());
        }
        self.set.advance(index)
    }

    fn apply(
        &mut self,
        entry: Entry<TypeConfig>,
        out: &mut Out,
    ) -> Result<Response, StateMachineError> {
        let index = entry.log_id.index;
        let mut response = Response {
            version: index,
            ..Response::default()
        };
        match entry.payload {
            EntryPayload::Blank => self.advance(index)?,
            EntryPayload::Membership(m) => {
                self.advance(index)?;
                self.membership = StoredMembership::new(Some(entry.log_id), m);
            }
            EntryPayload::Normal(Request::Init { seed, admins, at }) => {
                self.bootstrap(index, seed, admins, at, None, &mut response, out)?
            }
            EntryPayload::Normal(Request::Bootstrap {
                seed,
                admins,
                at,
                policy,
            }) => self.bootstrap(index, seed, admins, at, Some(policy), &mut response, out)?,
            EntryPayload::Normal(Request::Command(cmd @ recall_core::Command::Prune { .. })) => {
                let record = AuditRecord::next(&self.head.hash, index, &cmd);
                let body = Body::Command(cmd.clone());
                self.effect(
                    index,
                    Change::Command(cmd),
                    (record, body),
                    &mut response,
                    out,
                )?
            }
            EntryPayload::Normal(Request::Command(cmd)) => {
                self.change(index, Change::Command(cmd), None, &mut response, out)?
            }
            EntryPayload::Normal(Request::Roles(change)) => {
                self.change(index, Change::Roles(change), None, &mut response, out)?
            }
            EntryPayload::Normal(Request::Policy(change)) => {
                self.change(index, Change::Policy(change), None, &mut response, out)?
            }
            EntryPayload::Normal(Request::WithOtp { code, change }) => {
                self.change(index, change, Some(&code), &mut response, out)?
            }
            EntryPayload::Normal(Request::Propose(change))
                if self.gov.requirement(&change, &self.roles) == Requirement::None =>
            {
                self.change(index, change, None, &mut response, out)?
            }
            EntryPayload::Normal(Request::Propose(change)) => {
                self.advance(index)?;
                match self.gov.propose(index, change.clone()) {
                    Ok(proposed) => {
                        let record =
                            AuditRecord::of_proposal(&self.head.hash, index, &change, &proposed);
                        self.record(record, Body::Proposal(change), out);
                        response.proposed = Some(proposed);
                    }
                    Err(r) => response.refused = Some(r.0),
                }
            }
            EntryPayload::Normal(Request::Approve(approval)) => {
                let approved = self
                    .gov
                    .approve(&approval, &self.roles)
                    .and_then(|p| self.admissible(&p.change).map(|()| p));
                match approved {
                    Ok(p) => {
                        let record =
                            AuditRecord::of_approval(&self.head.hash, index, &approval, &p);
                        let body = Body::Approval(p.change.clone());
                        if let Change::Membership(m) = &p.change {
                            self.gov.approved_membership.insert(index, m.clone());
                        }
                        self.effect(index, p.change, (record, body), &mut response, out)?
                    }
                    Err(r) => {
                        self.advance(index)?;
                        response.refused = Some(r.0);
                    }
                }
            }
            EntryPayload::Normal(Request::EnrollOtp(enrollment)) => {
                self.advance(index)?;
                match self.gov.enroll(&enrollment) {
                    Ok(()) => {
                        let record =
                            AuditRecord::of_enrollment(&self.head.hash, index, &enrollment);
                        let body = Body::Enrollment {
                            meta: enrollment.meta.clone(),
                            commitment: enrollment.secret.commitment(),
                        };
                        self.record(record, body, out);
                        response.added = 1;
                    }
                    Err(r) => response.refused = Some(r.0),
                }
            }
            EntryPayload::Normal(Request::MembershipDone { version }) => {
                self.advance(index)?;
                self.gov.approved_membership.remove(&version);
            }
            EntryPayload::Normal(Request::NodeKey { node, key, at }) => {
                self.advance(index)?;
                if self.witnesses.keys.get(&node) != Some(&key) {
                    self.witnesses.keys.insert(node, key);
                    let record = AuditRecord::of_node_key(&self.head.hash, index, at, node, &key);
                    self.record(record, Body::NodeKey { node, key }, out);
                    response.added = 1;
                } else {
                    response.already_present = 1;
                }
            }
            EntryPayload::Normal(Request::Witness(signed)) => {
                self.advance(index)?;
                let voters: BTreeSet<u64> = self.membership.membership().voter_ids().collect();
                match self.witnesses.accept(signed, &voters) {
                    Ok(Accepted::Witnessed(w)) => {
                        let ours = self.recent.iter().find(|(v, _)| *v == w.version);
                        if let Some((_, ours)) = ours
                            && *ours != w.head
                        {
                            out.alarm = Some(format!(
                                "this node's audit record at version {} differs from the one a \
                                 quorum of nodes signed: its history is not the cluster's",
                                w.version
                            ));
                        }
                        out.witnessed.push(w);
                        response.added = 1;
                    }
                    Ok(Accepted::Counted) => {}
                    Err(e) => response.refused = Some(format!("checkpoint refused: {e}")),
                }
            }
        }
        self.last_applied = Some(entry.log_id);
        Ok(response)
    }

    /// Fixes the seed if nothing was revoked yet and no seed was fixed: the response counts the
    /// seed as `added`, and the result is true. Otherwise the request changes nothing and counts
    /// as `already_present`.
    fn init(
        &mut self,
        index: u64,
        seed: FingerprintSeed,
        response: &mut Response,
    ) -> Result<bool, OutOfOrder> {
        if !self.seeded && self.set.last_change() == 0 {
            let version = self.set.version();
            self.set = RevocationSet::new(seed);
            if version > 0 {
                self.set.advance(version)?;
            }
            self.seeded = true;
            response.added = 1;
            self.advance(index)?;
            Ok(true)
        } else {
            response.already_present = 1;
            self.advance(index)?;
            Ok(false)
        }
    }

    pub(super) fn restore(&mut self, meta: &Meta, restored: snapshot::Restored) {
        self.set = restored.set;
        self.seeded = restored.seeded;
        self.roles = restored.roles;
        self.gov = restored.gov;
        self.witnesses = restored.witnesses;
        self.head = restored.head;
        self.recent.clear();
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.window.clear();
    }
}

/// Shows what is applied, not the (possibly huge) set.
impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine")
            .field("applied", &*self.applied.borrow())
            .finish_non_exhaustive()
    }
}

/// Why a batch failed: the entry at fault (none if the audit commit failed), and the error.
type BatchError = Box<(Option<LogId<NodeId>>, StateMachineError)>;

impl Inner {
    /// Past [`MERGE_AT`] unmerged changes, merges them into the set's sorted layer on the
    /// blocking pool, as a snapshot build does: freeze under the lock (O(layers)), merge off
    /// it, hand the merged layer back under the lock (O(layers)). One at a time.
    fn merge_if_due(self: &Arc<Self>) {
        use std::sync::atomic::Ordering;
        if self.read().set.unmerged() < MERGE_AT || self.merging.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let frozen = inner.write().set.freeze();
            let flat = frozen.flatten();
            inner.write().set.settle(&flat);
            drop(flat);
            inner.merging.store(false, Ordering::Release);
        });
    }

    pub(super) fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state
            .read()
            .expect("no thread panicked while applying")
    }

    pub(super) fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .expect("no thread panicked while applying")
    }

    /// Applies a batch under the write lock, then commits its audit records (blocking).
    fn apply_batch(&self, entries: Vec<Entry<TypeConfig>>) -> Result<Vec<Response>, BatchError> {
        let mut out = Out::default();
        let mut responses = Vec::with_capacity(entries.len());
        {
            let mut state = self.write();
            for entry in entries {
                let log_id = entry.log_id;
                let response = state
                    .apply(entry, &mut out)
                    .map_err(|e| Box::new((Some(log_id), e)))?;
                responses.push(response);
            }
        }
        if let Some(alarm) = out.alarm.take() {
            self.raise_alarm(alarm);
        }
        if !out.records.is_empty() || !out.witnessed.is_empty() {
            self.db
                .append_audit(&out.records, &out.witnessed)
                .map_err(|e| Box::new((None, e)))?;
        }
        Ok(responses)
    }

    /// Marks this node's history as disagreeing with the cluster's: it stops serving streams.
    pub(super) fn raise_alarm(&self, why: String) {
        tracing::error!(alarm = %why, "history alarm: this node stops serving subscriber streams");
        self.alarm.send_if_modified(|a| {
            if a.is_none() {
                *a = Some(why);
                true
            } else {
                false
            }
        });
    }

    pub(super) fn publish(&self) {
        let applied = self.read().applied();
        self.applied.send_replace(applied);
    }
}

impl StateMachine {
    /// Opens the state machine in `dir` (creating [`FILE_NAME`] if needed) and restores the
    /// latest stored snapshot. Blocks while redb opens the file and the snapshot is decoded, so
    /// call it before serving.
    pub fn open(dir: &Path, config: StateMachineConfig) -> Result<Self, StateMachineError> {
        config.validate()?;
        let db = StateDb::open(dir)?;
        let mut state = State {
            set: RevocationSet::new(FingerprintSeed::default()),
            seeded: false,
            last_applied: None,
            membership: StoredMembership::default(),
            roles: Bindings::new(),
            gov: Governance::default(),
            witnesses: Witnesses::default(),
            head: AuditHead::default(),
            recent: VecDeque::new(),
            window: DeltaWindow::new(config.max_deltas, config.max_delta_entries),
        };
        if let Some((meta, bytes)) = db.load_snapshot()? {
            state.restore(&meta, snapshot::restore(&meta, &bytes)?);
        }
        let (applied, _) = watch::channel(state.applied());
        let (alarm, _) = watch::channel(None);
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                state: RwLock::new(state),
                gate: Mutex::new(()),
                applied,
                alarm,
                snapshot_timing: std::sync::Mutex::new(None),
                merging: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    /// Follows what is applied: the receiver sees the state after every batch.
    pub fn subscribe(&self) -> watch::Receiver<AppliedState> {
        self.inner.applied.subscribe()
    }

    /// What is applied now.
    pub fn applied(&self) -> AppliedState {
        self.inner.read().applied()
    }

    /// Runs `f` on the current set. Keep `f` short (applying waits for it) and do not call back
    /// into the state machine from it (the read lock is not reentrant).
    pub fn with_set<R>(&self, f: impl FnOnce(&RevocationSet) -> R) -> R {
        f(&self.inner.read().set)
    }

    /// How this node's latest snapshot build went (none built since it started).
    pub fn last_snapshot(&self) -> Option<SnapshotTiming> {
        *self
            .inner
            .snapshot_timing
            .lock()
            .expect("no thread panicked recording a timing")
    }

    /// Whether an `Init` request has fixed the fingerprint seed.
    pub fn seeded(&self) -> bool {
        self.inner.read().seeded
    }

    /// The role bindings as applied.
    pub fn roles(&self) -> Bindings {
        self.inner.read().roles.clone()
    }

    /// Runs `f` on the role bindings as applied.
    pub fn with_roles<R>(&self, f: impl FnOnce(&Bindings) -> R) -> R {
        f(&self.inner.read().roles)
    }

    /// Runs `f` on the step-up state as applied (the policy, pending requests, secrets). Keep
    /// `f` short, and never let a secret leave it.
    pub fn with_governance<R>(&self, f: impl FnOnce(&Governance) -> R) -> R {
        f(&self.inner.read().gov)
    }

    /// The head of the audit chain as applied and the set digest right after it (every entry
    /// that changes the set leaves a record, so that is the current digest): what this node
    /// signs in a checkpoint.
    pub fn checkpoint_state(&self) -> (AuditHead, Digest) {
        let state = self.inner.read();
        (state.head, state.set.digest())
    }

    /// Runs `f` on the checkpoint state (keys, the latest witnessed checkpoint, disagreements).
    pub fn with_witnesses<R>(&self, f: impl FnOnce(&Witnesses) -> R) -> R {
        f(&self.inner.read().witnesses)
    }

    /// Why this node's history disagrees with the cluster's, if it does: it then serves no
    /// subscriber streams.
    pub fn alarm(&self) -> watch::Receiver<Option<String>> {
        self.inner.alarm.subscribe()
    }

    /// Raises the history alarm (see [`StateMachine::alarm`]).
    pub fn raise_alarm(&self, why: String) {
        self.inner.raise_alarm(why);
    }

    /// The export lines of versions `from..=to`: the key bindings, every record with its
    /// command, every witnessed checkpoint.
    pub async fn audit_export(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Vec<crate::node::history::export::Line>, StateMachineError> {
        let keys = self.with_witnesses(|w| w.keys.clone());
        self.inner
            .db
            .run(move |db| db.audit_export(from, to, keys))
            .await
    }

    /// Runs `f` on the step-up state and the role bindings, read together.
    pub fn with_stepup<R>(&self, f: impl FnOnce(&Governance, &Bindings) -> R) -> R {
        let state = self.inner.read();
        f(&state.gov, &state.roles)
    }

    /// The end of the audit chain as applied (it may be ahead of what is on disk).
    pub fn audit_head(&self) -> AuditHead {
        self.inner.read().head
    }

    /// What a subscriber that has applied `version` needs next.
    pub fn deltas_after(&self, version: u64) -> Window {
        let state = self.inner.read();
        let set = &state.set;
        state
            .window
            .after(version, set.version(), set.last_change())
    }

    /// Up to `limit` audit records from `from_version` on, oldest first.
    pub async fn audit_log(
        &self,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StateMachineError> {
        let range = move |db: &StateDb| db.audit_range(from_version, u64::MAX, limit);
        self.inner.db.run(range).await
    }

    /// [`StateMachine::audit_log`], blocking the calling thread.
    pub fn blocking_audit_log(
        &self,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StateMachineError> {
        self.inner.db.audit_range(from_version, u64::MAX, limit)
    }

    /// Recomputes the stored audit chain. The outer error: the file could not be read; the
    /// inner one: the chain does not hold, and where.
    pub async fn audit_verify(&self) -> Result<Result<Verified, Broken>, StateMachineError> {
        self.inner.db.run(StateDb::audit_verify).await
    }

    /// [`StateMachine::audit_verify`], blocking the calling thread.
    pub fn blocking_audit_verify(&self) -> Result<Result<Verified, Broken>, StateMachineError> {
        self.inner.db.audit_verify()
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Node>), StorageError<NodeId>> {
        let state = self.inner.read();
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let _gate = self.inner.gate.lock().await;
        let inner = Arc::clone(&self.inner);
        // Applying a large batch is CPU work and the audit commit is I/O: neither runs on the
        // async runtime.
        let applied = tokio::task::spawn_blocking(move || inner.apply_batch(entries))
            .await
            .map_err(|e| sto(ErrorSubject::StateMachine, ErrorVerb::Write)(e.into()))?;
        match applied {
            Ok(responses) => {
                self.inner.publish();
                self.inner.merge_if_due();
                Ok(responses)
            }
            Err(failed) => Err(match *failed {
                (Some(log_id), e) => sto(ErrorSubject::Apply(log_id), ErrorVerb::Write)(e),
                (None, e) => sto(ErrorSubject::StateMachine, ErrorVerb::Write)(e),
            }),
        }
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder::new(Arc::clone(&self.inner))
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        snapshot::install(&self.inner, meta, snapshot.into_inner()).await
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        snapshot::current(&self.inner.db).await
    }
}
