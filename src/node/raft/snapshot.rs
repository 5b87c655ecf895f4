//! The durable side of the state machine: its snapshots (what they hold, their bytes,
//! installing them; building them is [`snapshot_build`](super::snapshot_build)), the redb file that keeps them with the audit history, and the errors of
//! both. The in-memory state and the apply path live in [`state_machine`](super::state_machine).
//!
//! The file (`state.redb`) has these tables:
//! - `snapshot`: `"meta"` → postcard `SnapshotMeta`, `"data"` → the snapshot bytes; replaced as
//!   one transaction committed with immediate durability (fsync);
//! - `audit`: version → postcard [`AuditRecord`]; a record, once written, is never overwritten;
//! - `audit_commands`: version → postcard [`Body`], the command the record covers;
//! - `checkpoints`: version → postcard [`Witnessed`], checkpoints a quorum signed.
//!
//! Snapshot bytes are the postcard encoding of [`SnapshotData`] followed by the 32-byte BLAKE3 of
//! that encoding, so a flipped byte anywhere (also in what the set digest does not cover: expiry
//! times, who revoked) is refused rather than installed. A snapshot holds the state and only the
//! head of the history; the history itself stays in its own tables and travels to a node that
//! installs the snapshot beside it (see [`transfer`](super::transfer)), checked there before the
//! state is installed.

use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::{
    AnyError, ErrorSubject, ErrorVerb, LogId, Snapshot, SnapshotMeta, StorageError, StorageIOError,
};
use recall_core::{CorruptSnapshot, OutOfOrder, RevocationSet, SetSnapshot};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::state_machine::Inner;
use super::{Node, NodeId, TypeConfig};
use crate::node::audit::{AuditHead, AuditRecord, Broken, Verified, Verifier};
use crate::node::history::export::Line;
use crate::node::history::{Body, Witnessed, Witnesses};
use crate::node::stepup::Governance;

/// The page cache of the state database (snapshot, audit records, command bodies): redb's
/// default is 1 GiB per database, and what an import writes stays cached (resident) up to it.
/// Reads here are sequential or recent.
const STATE_CACHE_BYTES: usize = 8 << 20;

/// The name of the state machine's file inside the directory given to `StateMachine::open`.
pub const FILE_NAME: &str = "state.redb";

const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
const BODIES: TableDefinition<u64, &[u8]> = TableDefinition::new("audit_commands");
const CHECKPOINTS: TableDefinition<u64, &[u8]> = TableDefinition::new("checkpoints");
const META: &str = "meta";
const DATA: &str = "data";

/// The openraft metadata of one of recall's snapshots.
pub type Meta = SnapshotMeta<NodeId, Node>;

/// Why the state machine could not open, apply, snapshot or read its history.
#[derive(Debug, thiserror::Error)]
pub enum StateMachineError {
    /// The configuration is invalid.
    #[error("invalid state machine configuration: {field} {reason}")]
    Config {
        /// The field at fault.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The directory of the state file could not be created.
    #[error("cannot create the state machine directory {dir}: {source}")]
    CreateDir {
        /// The directory.
        dir: PathBuf,
        /// What the file system said.
        source: io::Error,
    },
    /// Another process (or another `StateMachine` of this one) holds the file open.
    #[error("the state file {path} is already open: is another recall node using this directory?")]
    Locked {
        /// The redb file.
        path: PathBuf,
    },
    /// The redb file could not be opened or initialised.
    #[error("cannot open the state file {path}: {source}")]
    Open {
        /// The redb file.
        path: PathBuf,
        /// What redb said.
        source: redb::Error,
    },
    /// A redb operation on the open file failed.
    #[error("state machine storage failed: {0}")]
    Redb(#[from] redb::Error),
    /// A stored value does not decode, or a value does not encode.
    #[error(
        "the state machine's {what} does not encode or decode ({source}): was it written by an incompatible build of recall?"
    )]
    Codec {
        /// What was being encoded or decoded.
        what: &'static str,
        /// What postcard said.
        source: postcard::Error,
    },
    /// The history sent beside a snapshot does not verify.
    #[error("the history sent with the snapshot does not verify: {0}")]
    SnapshotHistory(String),
    /// Snapshot bytes do not match their checksum.
    #[error("the snapshot's checksum does not match its bytes: it is corrupt or truncated")]
    SnapshotChecksum,
    /// The set in a snapshot does not match its own digest.
    #[error(transparent)]
    CorruptSnapshot(#[from] CorruptSnapshot),
    /// The set in a snapshot is at another version than the snapshot's last log id.
    #[error("the snapshot's set is at version {set} but the snapshot ends at log index {log}")]
    SnapshotVersion {
        /// The set's version.
        set: u64,
        /// The index of the snapshot's last log id.
        log: u64,
    },
    /// A log entry came at or before the version already applied.
    #[error("log entry out of order: {0}")]
    OutOfOrder(#[from] OutOfOrder),
    /// The blocking task running a redb transaction panicked or was cancelled.
    #[error("the state machine I/O task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Lets `?` lift redb's per-operation errors into [`StateMachineError::Redb`].
macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StateMachineError {
            fn from(e: $t) -> Self {
                Self::Redb(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// Wraps an error as the openraft storage error for `subject` and `verb`.
pub(super) fn sto(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
) -> impl FnOnce(StateMachineError) -> StorageError<NodeId> {
    move |e| StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

/// Everything a snapshot carries besides openraft's metadata (last log id and membership).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotData {
    /// The whole revocation set.
    pub set: SetSnapshot,
    /// The end of the audit history at the snapshot's version (the history is not in here).
    pub history_head: AuditHead,
    /// Whether an `Init` request has fixed the fingerprint seed.
    pub seeded: bool,
    /// The role bindings.
    pub roles: crate::node::access::Bindings,
    /// The step-up policy, pending requests and one-time-code secrets.
    pub governance: Governance,
    /// Node checkpoint keys, signatures being gathered, the latest witnessed checkpoint.
    pub witnesses: Witnesses,
}

/// [`SnapshotData`] as nodes wrote it before step-up (no governance): still installed and
/// restored, with the production policy.
#[derive(Deserialize)]
struct SnapshotDataBeforeStepUp {
    set: SetSnapshot,
    audit: Vec<AuditRecord>,
    seeded: bool,
    roles: crate::node::access::Bindings,
}

/// `bytes` followed by their 32-byte BLAKE3: how snapshot bytes travel and rest.
pub(super) fn seal(mut bytes: Vec<u8>) -> Vec<u8> {
    let sum = blake3::hash(&bytes);
    bytes.extend_from_slice(sum.as_bytes());
    bytes
}

/// The bytes [`seal`] sealed, refused if their checksum does not hold.
pub(super) fn unseal(bytes: &[u8]) -> Result<&[u8], StateMachineError> {
    let split = bytes
        .len()
        .checked_sub(32)
        .ok_or(StateMachineError::SnapshotChecksum)?;
    let (body, sum) = bytes.split_at(split);
    if blake3::hash(body).as_bytes() != sum {
        return Err(StateMachineError::SnapshotChecksum);
    }
    Ok(body)
}

/// Encodes a snapshot: postcard, then the BLAKE3 of the postcard bytes.
pub fn encode(data: &SnapshotData) -> Result<Vec<u8>, StateMachineError> {
    Ok(seal(to_bytes("snapshot", data)?))
}

/// Decodes snapshot bytes, refusing them if their checksum or encoding does not hold.
pub fn decode(bytes: &[u8]) -> Result<SnapshotData, StateMachineError> {
    let body = unseal(bytes)?;
    match from_bytes("snapshot", body) {
        Ok(data) => Ok(data),
        Err(e) => match postcard::from_bytes::<SnapshotDataBeforeStepUp>(body) {
            Ok(old) => Ok(SnapshotData {
                set: old.set,
                history_head: old
                    .audit
                    .last()
                    .map_or_else(AuditHead::default, |r| AuditHead {
                        version: r.version,
                        hash: r.hash,
                    }),
                seeded: old.seeded,
                roles: old.roles,
                governance: Governance::default(),
                witnesses: Witnesses::default(),
            }),
            Err(_) => Err(e),
        },
    }
}

/// A decoded and checked snapshot, ready to become the state.
#[derive(Debug)]
pub(super) struct Restored {
    pub(super) set: RevocationSet,
    pub(super) seeded: bool,
    pub(super) roles: crate::node::access::Bindings,
    pub(super) gov: Governance,
    pub(super) witnesses: Witnesses,
    pub(super) head: AuditHead,
}

/// Decodes snapshot bytes and checks them: the checksum, the set's digest, and that the set is
/// at the version the snapshot's metadata says.
pub(super) fn restore(meta: &Meta, bytes: &[u8]) -> Result<Restored, StateMachineError> {
    let data = decode(bytes)?;
    let set = RevocationSet::restore(data.set)?;
    let log = meta.last_log_id.map_or(0, |id| id.index);
    if set.version() != log {
        return Err(StateMachineError::SnapshotVersion {
            set: set.version(),
            log,
        });
    }
    let head = data.history_head;
    Ok(Restored {
        set,
        seeded: data.seeded,
        roles: data.roles,
        gov: data.governance,
        witnesses: data.witnesses,
        head,
    })
}

/// A snapshot id unique to its content: `<last log id>-<first 16 hex of the data's BLAKE3>`.
pub fn snapshot_id(last_log_id: Option<&LogId<NodeId>>, data: &[u8]) -> String {
    let sum = blake3::hash(data).to_hex();
    match last_log_id {
        Some(id) => format!("{id}-{}", &sum[..16]),
        None => format!("none-{}", &sum[..16]),
    }
}

pub(super) fn to_bytes<T: Serialize>(
    what: &'static str,
    value: &T,
) -> Result<Vec<u8>, StateMachineError> {
    postcard::to_stdvec(value).map_err(|source| StateMachineError::Codec { what, source })
}

pub(super) fn from_bytes<T: DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, StateMachineError> {
    postcard::from_bytes(bytes).map_err(|source| StateMachineError::Codec { what, source })
}

/// Installs a snapshot received from the leader (see [`super::transfer`]): checks the state and
/// that the history beside it chains to the head the state names, stores both durably, then
/// replaces the state and clears the delta window.
pub(super) async fn install(
    inner: &Inner,
    meta: &Meta,
    bytes: Vec<u8>,
) -> Result<(), StorageError<NodeId>> {
    let subject = || ErrorSubject::Snapshot(Some(meta.signature()));
    let _gate = inner.gate.lock().await;
    let owned = meta.clone();
    let (restored, t) = inner
        .db
        .run(move |_| {
            let t = super::transfer::unpack(&bytes)?;
            let restored = restore(&owned, &t.state)?;
            super::transfer::check_history(&t.records, &t.bodies, restored.head)?;
            Ok((restored, t))
        })
        .await
        .map_err(sto(subject(), ErrorVerb::Read))?;
    // Durable first, then visible: a crash after this point reopens at the snapshot.
    let owned = meta.clone();
    inner
        .db
        .run(move |db| db.store_snapshot(&owned, &t.state, &t.records, &t.bodies, false))
        .await
        .map_err(sto(subject(), ErrorVerb::Write))?;
    inner.write().restore(meta, restored);
    inner.publish();
    Ok(())
}

/// The stored snapshot with the history up to its version beside it, as a follower installs it
/// (see [`super::transfer`]).
pub(super) async fn current(
    db: &StateDb,
) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
    let stored = db
        .run(|db| {
            let Some((meta, state)) = db.load_snapshot()? else {
                return Ok(None);
            };
            let version = meta.last_log_id.map_or(0, |id| id.index);
            let records = db.audit_range(0, version, usize::MAX)?;
            let bodies = db.bodies_range(0, version)?;
            Ok(Some((meta, super::transfer::pack(state, records, bodies)?)))
        })
        .await
        .map_err(sto(ErrorSubject::Snapshot(None), ErrorVerb::Read))?;
    Ok(stored.map(|(meta, data)| Snapshot {
        meta,
        snapshot: Box::new(Cursor::new(data)),
    }))
}

/// The state machine's redb file. Every method blocks: call them on tokio's blocking pool (see
/// [`StateDb::run`]) or before serving.
#[derive(Clone, Debug)]
pub(super) struct StateDb {
    db: Arc<Database>,
}

impl StateDb {
    /// Opens (or creates) [`FILE_NAME`] in `dir`, creating both tables so readers never meet a
    /// missing one.
    pub(super) fn open(dir: &Path) -> Result<Self, StateMachineError> {
        std::fs::create_dir_all(dir).map_err(|source| StateMachineError::CreateDir {
            dir: dir.to_owned(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        let init = |path: &Path| -> Result<Database, redb::Error> {
            let db = Database::builder()
                .set_cache_size(STATE_CACHE_BYTES)
                .create(path)?;
            let txn = db.begin_write()?;
            txn.open_table(SNAPSHOT)?;
            txn.open_table(AUDIT)?;
            txn.open_table(BODIES)?;
            txn.open_table(CHECKPOINTS)?;
            txn.commit()?;
            Ok(db)
        };
        let db = init(&path).map_err(|source| match source {
            redb::Error::DatabaseAlreadyOpen => StateMachineError::Locked { path },
            source => StateMachineError::Open { path, source },
        })?;
        Ok(Self { db: Arc::new(db) })
    }

    /// Runs `f` on tokio's blocking pool.
    pub(super) async fn run<T, F>(&self, f: F) -> Result<T, StateMachineError>
    where
        T: Send + 'static,
        F: FnOnce(&StateDb) -> Result<T, StateMachineError> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || f(&db)).await?
    }

    /// The stored snapshot, if one was built or installed.
    pub(super) fn load_snapshot(&self) -> Result<Option<(Meta, Vec<u8>)>, StateMachineError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SNAPSHOT)?;
        let (Some(meta), Some(data)) = (table.get(META)?, table.get(DATA)?) else {
            return Ok(None);
        };
        let meta = from_bytes("snapshot meta", meta.value())?;
        Ok(Some((meta, data.value().to_vec())))
    }

    /// Stores a snapshot and the audit records it carries, durably and in one transaction.
    /// A snapshot built here is not stored over a newer one (an install that raced the build):
    /// `only_if_newer` says so, and the result says whether it was stored.
    pub(super) fn store_snapshot(
        &self,
        meta: &Meta,
        data: &[u8],
        audit: &[AuditRecord],
        bodies: &[(u64, Body)],
        only_if_newer: bool,
    ) -> Result<bool, StateMachineError> {
        let meta_bytes = to_bytes("snapshot meta", meta)?;
        self.write(Durability::Immediate, |txn| {
            let mut table = txn.open_table(SNAPSHOT)?;
            if only_if_newer && let Some(old) = table.get(META)? {
                let old: Meta = from_bytes("snapshot meta", old.value())?;
                if old.last_log_id > meta.last_log_id {
                    return Ok(false);
                }
            }
            table.insert(META, meta_bytes.as_slice())?;
            table.insert(DATA, data)?;
            insert_new(txn, audit)?;
            let mut table = txn.open_table(BODIES)?;
            for (version, body) in bodies {
                if table.get(*version)?.is_none() {
                    table.insert(*version, to_bytes("audit command", body)?.as_slice())?;
                }
            }
            Ok(true)
        })
    }

    /// Writes audit records that are not stored yet, in one transaction without an fsync.
    ///
    /// `Durability::None` is safe here: every record is a pure function of the committed (and
    /// fsynced) Raft log, and the state machine's durable state is its last snapshot. After a
    /// crash, openraft re-applies the log after that snapshot and regenerates identical records;
    /// the next snapshot (committed with immediate durability) or a clean close persists them.
    pub(super) fn append_audit(
        &self,
        records: &[(AuditRecord, Body)],
        witnessed: &[Witnessed],
    ) -> Result<(), StateMachineError> {
        self.write(Durability::None, |txn| {
            insert_bodies(txn, records)?;
            let records: Vec<AuditRecord> = records.iter().map(|(r, _)| r.clone()).collect();
            insert_new(txn, &records)?;
            let mut table = txn.open_table(CHECKPOINTS)?;
            for w in witnessed {
                if table.get(w.version)?.is_none() {
                    table.insert(w.version, to_bytes("checkpoint", w)?.as_slice())?;
                }
            }
            Ok(())
        })
    }

    /// The export lines of versions `from..=to` (see [`Line`]).
    pub(super) fn audit_export(
        &self,
        from: u64,
        to: u64,
        keys: std::collections::BTreeMap<u64, [u8; 32]>,
    ) -> Result<Vec<Line>, StateMachineError> {
        let mut lines = vec![Line::Keys(
            keys.into_iter().map(|(n, k)| (n, hex::encode(k))).collect(),
        )];
        if from > to {
            return Ok(lines);
        }
        let txn = self.db.begin_read()?;
        let records = txn.open_table(AUDIT)?;
        let bodies = txn.open_table(BODIES)?;
        for row in records.range(from..=to)? {
            let (version, bytes) = row?;
            let record: AuditRecord = from_bytes("audit record", bytes.value())?;
            let Some(body) = bodies.get(version.value())? else {
                // Records from before commands were kept: the export stops being checkable
                // here, and says so by ending.
                continue;
            };
            let body: Body = from_bytes("audit command", body.value())?;
            lines.push(Line::Record { record, body });
        }
        let checkpoints = txn.open_table(CHECKPOINTS)?;
        for row in checkpoints.range(from..=to)? {
            let w: Witnessed = from_bytes("checkpoint", row?.1.value())?;
            lines.push(Line::Checkpoint(w));
        }
        Ok(lines)
    }

    /// The kept commands of versions `from..=to`.
    pub(super) fn bodies_range(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Vec<(u64, Body)>, StateMachineError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(BODIES)?;
        table
            .range(from..=to)?
            .map(|row| {
                let (k, v) = row?;
                Ok((k.value(), from_bytes("audit command", v.value())?))
            })
            .collect()
    }

    /// Up to `limit` records from `from` up to `to` (inclusive), oldest first.
    pub(super) fn audit_range(
        &self,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StateMachineError> {
        if from > to {
            return Ok(Vec::new());
        }
        let txn = self.db.begin_read()?;
        let table = txn.open_table(AUDIT)?;
        let rows = table.range(from..=to)?;
        rows.take(limit)
            .map(|row| from_bytes("audit record", row?.1.value()))
            .collect()
    }

    /// Recomputes the whole stored chain. A record that does not decode, or is stored under
    /// another version than its own, breaks the chain there.
    pub(super) fn audit_verify(&self) -> Result<Result<Verified, Broken>, StateMachineError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(AUDIT)?;
        let mut verifier = Verifier::new();
        for row in table.iter()? {
            let (key, value) = row?;
            let version = key.value();
            let broken = |reason: String| Ok(Err(Broken { version, reason }));
            let record: AuditRecord = match postcard::from_bytes(value.value()) {
                Ok(record) => record,
                Err(e) => return broken(format!("the stored record does not decode ({e})")),
            };
            if record.version != version {
                return broken(format!(
                    "the record stored here says version {}",
                    record.version
                ));
            }
            if let Err(e) = verifier.push(&record) {
                return Ok(Err(e));
            }
        }
        Ok(Ok(verifier.finish()))
    }

    fn write<T>(
        &self,
        durability: Durability,
        f: impl FnOnce(&WriteTransaction) -> Result<T, StateMachineError>,
    ) -> Result<T, StateMachineError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(durability)?;
        let out = f(&txn)?;
        txn.commit()?;
        Ok(out)
    }
}

/// Keeps the command of each record whose version has none yet (never rewritten).
fn insert_bodies(
    txn: &WriteTransaction,
    records: &[(AuditRecord, Body)],
) -> Result<(), StateMachineError> {
    let mut table = txn.open_table(BODIES)?;
    for (record, body) in records {
        if table.get(record.version)?.is_none() {
            table.insert(record.version, to_bytes("audit command", body)?.as_slice())?;
        }
    }
    Ok(())
}

/// Inserts the records whose version has none yet: history, once written, is never rewritten
/// (a re-applied entry does not heal a tampered record; `verify` keeps reporting it).
fn insert_new(txn: &WriteTransaction, records: &[AuditRecord]) -> Result<(), StateMachineError> {
    let mut table = txn.open_table(AUDIT)?;
    for record in records {
        if table.get(record.version)?.is_none() {
            let bytes = to_bytes("audit record", record)?;
            table.insert(record.version, bytes.as_slice())?;
        }
    }
    Ok(())
}
