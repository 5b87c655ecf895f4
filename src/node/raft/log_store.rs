//! The durable Raft log of an authority node: one redb file, `raft-log.redb`, holding the log
//! entries and the vote, committed and last-purged log ids.
//!
//! Every write that openraft relies on (append, vote, truncate, purge) is one redb transaction
//! committed with immediate durability (fsync) before openraft hears that it is done. redb is
//! blocking, so each transaction runs on tokio's blocking pool. This module never interprets what
//! an entry carries: the state machine does.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, StorageError,
    StorageIOError, Vote,
};
use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
    WriteTransaction,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{NodeId, TypeConfig};

/// The name of the log's file inside the directory given to [`LogStore::open`].
pub const FILE_NAME: &str = "raft-log.redb";

/// Log index → postcard-encoded `Entry<TypeConfig>`.
const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("logs");
/// Name → postcard-encoded value, under the keys below.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";

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

/// The durable Raft log. Cloning is cheap and shares the one database; openraft's log reader is
/// such a clone.
#[derive(Clone, Debug)]
pub struct LogStore {
    db: Arc<Database>,
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
            let db = Database::create(path)?;
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
        Ok(Self { db: Arc::new(db) })
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

    /// Runs `f` in one write transaction committed with `durability`; an error aborts it.
    async fn write<F>(&self, durability: Durability, f: F) -> Result<(), LogStoreError>
    where
        F: FnOnce(&WriteTransaction) -> Result<(), LogStoreError> + Send + 'static,
    {
        self.run(move |db| {
            let mut txn = db.begin_write()?;
            txn.set_durability(durability)?;
            f(&txn)?;
            txn.commit()?;
            Ok(())
        })
        .await
    }

    /// Stores `value` under `key` in the meta table, committed with `durability`.
    async fn put_meta<T: Serialize>(
        &self,
        key: &'static str,
        value: &T,
        durability: Durability,
    ) -> Result<(), LogStoreError> {
        let bytes = encode(key, value)?;
        self.write(durability, move |txn| {
            txn.open_table(META)?.insert(key, bytes.as_slice())?;
            Ok(())
        })
        .await
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
        self.run(move |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(LOGS)?;
            let rows = match end {
                Some(end) => table.range(start..end)?,
                None => table.range(start..)?,
            };
            rows.map(|row| decode("log entry", row?.1.value()))
                .collect()
        })
        .await
        .map_err(sto(ErrorSubject::Logs, ErrorVerb::Read))
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
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last.or(purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.put_meta(VOTE, vote, Durability::Immediate)
            .await
            .map_err(sto(ErrorSubject::Vote, ErrorVerb::Write))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.get_meta(VOTE)
            .await
            .map_err(sto(ErrorSubject::Vote, ErrorVerb::Read))
    }

    /// Saved without an fsync of its own: the next durable write (or a clean close) carries it.
    /// A committed id that is lost in a crash is only older, which openraft tolerates.
    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        self.put_meta(COMMITTED, &committed, Durability::None)
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
        let rows = entries
            .into_iter()
            .map(|e| Ok((e.log_id.index, encode("log entry", &e)?)))
            .collect::<Result<Vec<_>, LogStoreError>>()
            .map_err(sto(ErrorSubject::Logs, ErrorVerb::Write))?;
        let res = self
            .write(Durability::Immediate, move |txn| {
                let mut table = txn.open_table(LOGS)?;
                for (index, bytes) in &rows {
                    table.insert(index, bytes.as_slice())?;
                }
                Ok(())
            })
            .await;
        // The transaction has committed (and fsynced) or failed: only now may openraft know.
        match res {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(io::Error::other(e.to_string())));
                Err(sto(ErrorSubject::Logs, ErrorVerb::Write)(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.write(Durability::Immediate, move |txn| {
            txn.open_table(LOGS)?
                .retain_in(log_id.index.., |_, _| false)?;
            Ok(())
        })
        .await
        .map_err(sto(ErrorSubject::Log(log_id), ErrorVerb::Delete))
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let bytes = encode(LAST_PURGED, &log_id)
            .map_err(sto(ErrorSubject::Log(log_id), ErrorVerb::Write))?;
        // The purged id and the deletion commit together: a crash leaves neither or both.
        self.write(Durability::Immediate, move |txn| {
            txn.open_table(META)?
                .insert(LAST_PURGED, bytes.as_slice())?;
            txn.open_table(LOGS)?
                .retain_in(..=log_id.index, |_, _| false)?;
            Ok(())
        })
        .await
        .map_err(sto(ErrorSubject::Log(log_id), ErrorVerb::Delete))
    }
}
