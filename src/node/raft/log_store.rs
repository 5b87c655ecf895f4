//! The durable Raft log of an authority node: one redb file, `raft-log.redb`, holding the log
//! entries and the vote, committed and last-purged log ids.
//!
//! Every write goes through one flusher thread ([`super::log_flush`]) that group-commits: all the
//! writes queued since its last transaction are committed together, durably (one fsync), before
//! openraft hears that any of them is done, in the order openraft made them. `append` returns as
//! soon as its entries are queued and readable (they are served from memory until they are on
//! disk); its callback completes after the fsync, as openraft's storage-v2 contract allows. Reads
//! run on tokio's blocking pool. This module never interprets what an entry carries: the state
//! machine does.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, StorageError,
    StorageIOError, Vote,
};
use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::log_flush::{Done, Flusher, Job, Op, Overlay};
use super::{NodeId, TypeConfig};

/// The page cache of the Raft log: redb's default is 1 GiB per database, and what an import
/// writes stays cached (resident) up to it. Reads here are sequential or recent.
const LOG_CACHE_BYTES: usize = 8 << 20;

/// The name of the log's file inside the directory given to [`LogStore::open`].
pub const FILE_NAME: &str = "raft-log.redb";

/// Log index → postcard-encoded `Entry<TypeConfig>`.
pub(super) const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("logs");
/// Name → postcard-encoded value, under the keys below.
pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
pub(super) const LAST_PURGED: &str = "last_purged";

/// Why the Raft log could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    /// The directory of the log could not be created.
    #[error("cannot create the Raft log directory {dir}: {source}")]
    CreateDir {
        /// The directory.
        dir: PathBuf,
        /// What the file system said.
        source: io::Error,
    },
    /// Another process (or another `LogStore` of this one) holds the file open.
    #[error("the Raft log {path} is already open: is another recall node using this directory?")]
    Locked {
        /// The redb file.
        path: PathBuf,
    },
    /// The redb file could not be opened or initialised.
    #[error("cannot open the Raft log {path}: {source}")]
    Open {
        /// The redb file.
        path: PathBuf,
        /// What redb said.
        source: redb::Error,
    },
    /// A redb operation on an open log failed.
    #[error("Raft log storage failed: {0}")]
    Redb(#[from] redb::Error),
    /// A stored value does not decode, or a value does not encode.
    #[error(
        "the Raft log's {what} does not encode or decode ({source}): was the file written by an incompatible build of recall?"
    )]
    Codec {
        /// What was being encoded or decoded.
        what: &'static str,
        /// What postcard said.
        source: postcard::Error,
    },
    /// The blocking task running a redb transaction panicked or was cancelled.
    #[error("the Raft log I/O task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The flusher failed to commit (the message is redb's), or it has stopped.
    #[error("the Raft log could not be written: {0}")]
    Flush(String),
}

/// Lets `?` lift redb's per-operation errors into [`LogStoreError::Redb`].
macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for LogStoreError {
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

/// The durable Raft log. Cloning is cheap and shares the one database and its flusher;
/// openraft's log reader is such a clone.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    overlay: Arc<Mutex<Overlay>>,
    flusher: Arc<Flusher>,
    /// The highest index openraft has told the log is committed (since this process started).
    committed: Arc<AtomicU64>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("commits", &self.commits())
            .finish_non_exhaustive()
    }
}

impl LogStore {
    /// Opens the log in `dir` (creating the directory and [`FILE_NAME`] if needed). Blocks while
    /// redb opens the file (and repairs it after a crash), so call it before serving.
    pub fn open(dir: &Path) -> Result<Self, LogStoreError> {
        std::fs::create_dir_all(dir).map_err(|source| LogStoreError::CreateDir {
            dir: dir.to_owned(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        let init = |path: &Path| -> Result<Database, redb::Error> {
            let db = Database::builder()
                .set_cache_size(LOG_CACHE_BYTES)
                .create(path)?;
            // Create both tables up front so that readers never meet a missing table.
            let txn = db.begin_write()?;
            txn.open_table(LOGS)?;
            txn.open_table(META)?;
            txn.commit()?;
            Ok(db)
        };
        let db = init(&path).map_err(|source| match source {
            redb::Error::DatabaseAlreadyOpen => LogStoreError::Locked { path },
            source => LogStoreError::Open { path, source },
        })?;
        let db = Arc::new(db);
        let overlay = Arc::new(Mutex::new(Overlay::default()));
        let flusher = Arc::new(Flusher::start(db.clone(), overlay.clone()));
        Ok(Self {
            db,
            overlay,
            flusher,
            committed: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The highest index committed as this node learns it (on a leader, its own commits), for
    /// the heartbeats that tell subscribers how far behind the node is.
    pub fn known_commit(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.committed)
    }

    /// How many transactions (fsyncs, but for committed-id-only ones) the log has committed:
    /// fewer than the writes when concurrent writes shared them.
    pub fn commits(&self) -> u64 {
        self.flusher.commits.load(Ordering::Relaxed)
    }

    /// Queues `op`; `done` hears when it is on disk.
    fn queue(&self, op: Op, done: Done) -> Result<(), LogStoreError> {
        self.flusher
            .push(Job { op, done })
            .map_err(|_| LogStoreError::Flush("the flusher has stopped".into()))
    }

    /// Queues `op` and waits until it is on disk.
    async fn queue_and_wait(&self, op: Op) -> Result<(), LogStoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.queue(op, Done::Reply(tx))?;
        rx.await
            .map_err(|_| LogStoreError::Flush("the flusher has stopped".into()))?
            .map_err(LogStoreError::Flush)
    }

    /// Runs `f` against the database on tokio's blocking pool.
    async fn run<T, F>(&self, f: F) -> Result<T, LogStoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, LogStoreError> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || f(&db)).await?
    }

    /// Stores `value` under `key` in the meta table; waits until it is durable when `durable`.
    async fn put_meta<T: Serialize>(
        &self,
        key: &'static str,
        value: &T,
        durable: bool,
    ) -> Result<(), LogStoreError> {
        let value = encode(key, value)?;
        let op = Op::Meta {
            key,
            value,
            durable,
        };
        if durable {
            self.queue_and_wait(op).await
        } else {
            self.queue(op, Done::Nobody)
        }
    }

    /// Reads the value stored under `key` in the meta table.
    async fn get_meta<T>(&self, key: &'static str) -> Result<Option<T>, LogStoreError>
    where
        T: DeserializeOwned + Send + 'static,
    {
        self.run(move |db| read_meta(&db.begin_read()?, key)).await
    }
}

fn read_meta<T: DeserializeOwned>(
    txn: &ReadTransaction,
    key: &'static str,
) -> Result<Option<T>, LogStoreError> {
    let table = txn.open_table(META)?;
    let value = table.get(key)?;
    value.map(|v| decode(key, v.value())).transpose()
}

fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, LogStoreError> {
    postcard::to_stdvec(value).map_err(|source| LogStoreError::Codec { what, source })
}

fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, LogStoreError> {
    postcard::from_bytes(bytes).map_err(|source| LogStoreError::Codec { what, source })
}

/// Wraps an error as the openraft storage error for `subject` and `verb`.
fn sto(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
) -> impl FnOnce(LogStoreError) -> StorageError<NodeId> {
    move |e| StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

/// `range` as a half-open `start..end` (`end` None: unbounded), or None if it holds no index.
fn half_open(range: &impl RangeBounds<u64>) -> Option<(u64, Option<u64>)> {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.checked_add(1),
        Bound::Excluded(&e) => Some(e),
        Bound::Unbounded => None,
    };
    match end {
        Some(end) if end <= start => None,
        _ => Some((start, end)),
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let Some((start, end)) = half_open(&range) else {
            return Ok(Vec::new());
        };
        let in_range = move |i: &u64| *i >= start && end.is_none_or(|e| *i < e);
        // Entries still queued are served from memory; the rest from the file. An entry queued
        // after this snapshot of the overlay was queued after the read began.
        let queued: BTreeMap<u64, Entry<TypeConfig>> = {
            let o = self.overlay.lock().expect("overlay lock");
            o.entries
                .iter()
                .filter(|(i, _)| in_range(i))
                .map(|(i, (_, e))| (*i, e.clone()))
                .collect()
        };
        let first_queued = queued.keys().next().copied();
        let db_end = match (end, first_queued) {
            (Some(e), Some(q)) => Some(e.min(q)),
            (e, q) => e.or(q),
        };
        let mut out: Vec<Entry<TypeConfig>> = if db_end.is_some_and(|e| e <= start) {
            Vec::new()
        } else {
            self.run(move |db| {
                let txn = db.begin_read()?;
                let table = txn.open_table(LOGS)?;
                let rows = match db_end {
                    Some(end) => table.range(start..end)?,
                    None => table.range(start..)?,
                };
                rows.map(|row| decode("log entry", row?.1.value()))
                    .collect()
            })
            .await
            .map_err(sto(ErrorSubject::Logs, ErrorVerb::Read))?
        };
        out.extend(queued.into_values());
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let (last, purged) = self
            .run(|db| {
                let txn = db.begin_read()?;
                let last = match txn.open_table(LOGS)?.last()? {
                    Some((_, v)) => Some(decode::<Entry<TypeConfig>>("log entry", v.value())?),
                    None => None,
                };
                let purged: Option<LogId<NodeId>> = read_meta(&txn, LAST_PURGED)?;
                Ok((last.map(|e| e.log_id), purged))
            })
            .await
            .map_err(sto(ErrorSubject::Logs, ErrorVerb::Read))?;
        let queued_last = {
            let o = self.overlay.lock().expect("overlay lock");
            o.entries.last_key_value().map(|(_, (_, e))| e.log_id)
        };
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: queued_last.or(last).or(purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.put_meta(VOTE, vote, true)
            .await
            .map_err(sto(ErrorSubject::Vote, ErrorVerb::Write))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.get_meta(VOTE)
            .await
            .map_err(sto(ErrorSubject::Vote, ErrorVerb::Read))
    }

    /// Queued without waiting and without an fsync of its own: the next durable write (or a
    /// clean close) carries it.
    /// A committed id that is lost in a crash is only older, which openraft tolerates.
    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        if let Some(c) = &committed {
            self.committed.fetch_max(c.index, Ordering::Relaxed);
        }
        self.put_meta(COMMITTED, &committed, false)
            .await
            .map_err(sto(ErrorSubject::Store, ErrorVerb::Write))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        let committed: Option<Option<LogId<NodeId>>> = self
            .get_meta(COMMITTED)
            .await
            .map_err(sto(ErrorSubject::Store, ErrorVerb::Read))?;
        Ok(committed.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let rows = entries
            .iter()
            .map(|e| Ok((e.log_id.index, encode("log entry", e)?)))
            .collect::<Result<Vec<_>, LogStoreError>>()
            .map_err(sto(ErrorSubject::Logs, ErrorVerb::Write))?;
        // Readable now (from memory), durable when the flusher's transaction commits: only then
        // does the callback tell openraft.
        let mut o = self.overlay.lock().expect("overlay lock");
        o.next_seq += 1;
        let seq = o.next_seq;
        for e in entries {
            o.entries.insert(e.log_id.index, (seq, e));
        }
        self.queue(Op::Append { rows, seq }, Done::Flushed(callback))
            .map_err(sto(ErrorSubject::Logs, ErrorVerb::Write))
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        {
            let mut o = self.overlay.lock().expect("overlay lock");
            o.entries.retain(|i, _| *i < log_id.index);
        }
        self.queue_and_wait(Op::Truncate(log_id.index))
            .await
            .map_err(sto(ErrorSubject::Log(log_id), ErrorVerb::Delete))
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let purged = encode(LAST_PURGED, &log_id)
            .map_err(sto(ErrorSubject::Log(log_id), ErrorVerb::Write))?;
        {
            let mut o = self.overlay.lock().expect("overlay lock");
            o.entries.retain(|i, _| *i > log_id.index);
        }
        // The purged id and the deletion commit together: a crash leaves neither or both.
        self.queue_and_wait(Op::Purge {
            index: log_id.index,
            purged,
        })
        .await
        .map_err(sto(ErrorSubject::Log(log_id), ErrorVerb::Delete))
    }
}
