//! Group commit for the Raft log: one thread owns every write to the log file. Writers queue
//! their operations (in openraft's order) and the flusher commits everything queued since its
//! last commit in one durable redb transaction (one fsync), then completes the writers in order.
//! Appended entries stay readable in memory (the [`Overlay`]) from the moment they are queued
//! until their transaction has committed, so the leader can replicate before its own fsync ends.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use openraft::Entry;
use openraft::storage::LogFlushed;
use redb::{Database, Durability, WriteTransaction};

use super::TypeConfig;
use super::log_store::{LOGS, LogStoreError, META};

/// The most operations one transaction carries.
const MAX_BATCH: usize = 4096;

/// One change to the log file.
pub(super) enum Op {
    /// Insert encoded entries; `seq` identifies them in the overlay.
    Append { rows: Vec<(u64, Vec<u8>)>, seq: u64 },
    /// Delete entries from this index on.
    Truncate(u64),
    /// Delete entries up to this index, recording the purged id.
    Purge { index: u64, purged: Vec<u8> },
    /// Store a meta value; `durable` when the writer waits for it to reach the disk.
    Meta {
        key: &'static str,
        value: Vec<u8>,
        durable: bool,
    },
}

/// How the writer of an operation hears that it is done.
pub(super) enum Done {
    /// openraft's append callback.
    Flushed(LogFlushed<TypeConfig>),
    /// A waiting writer.
    Reply(tokio::sync::oneshot::Sender<Result<(), String>>),
    /// Nobody waits (a committed id, which may be lost in a crash).
    Nobody,
}

/// One queued operation.
pub(super) struct Job {
    pub(super) op: Op,
    pub(super) done: Done,
}

/// Entries queued and not yet committed, by index, with the sequence number of their append.
#[derive(Default)]
pub(super) struct Overlay {
    pub(super) entries: BTreeMap<u64, (u64, Entry<TypeConfig>)>,
    pub(super) next_seq: u64,
}

/// The flusher thread and its queue. Dropping it drains the queue and joins the thread, so the
/// file is closed when the last handle of the log is gone.
pub(super) struct Flusher {
    tx: Mutex<Option<Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Transactions committed so far.
    pub(super) commits: Arc<AtomicU64>,
}

impl Flusher {
    pub(super) fn start(db: Arc<Database>, overlay: Arc<Mutex<Overlay>>) -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        let commits = Arc::new(AtomicU64::new(0));
        let c = commits.clone();
        let thread = std::thread::Builder::new()
            .name("raft-log-flush".into())
            .spawn(move || run(&db, &overlay, &rx, &c))
            .expect("spawns the Raft log flusher");
        Self {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            commits,
        }
    }

    /// Queues `job`; false when the flusher has stopped.
    pub(super) fn push(&self, job: Job) -> Result<(), Job> {
        let tx = self.tx.lock().expect("flusher queue lock");
        match tx.as_ref() {
            Some(tx) => tx.send(job).map_err(|e| e.0),
            None => Err(job),
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        drop(self.tx.lock().expect("flusher queue lock").take());
        if let Some(t) = self.thread.lock().expect("flusher thread lock").take() {
            let _ = t.join();
        }
    }
}

fn run(db: &Database, overlay: &Mutex<Overlay>, rx: &Receiver<Job>, commits: &AtomicU64) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let result = commit(db, &batch).map_err(|e| e.to_string());
        if result.is_ok() {
            commits.fetch_add(1, Ordering::Relaxed);
            forget_flushed(overlay, &batch);
        }
        for job in batch {
            match job.done {
                Done::Flushed(cb) => cb.log_io_completed(
                    result
                        .clone()
                        .map_err(|e| std::io::Error::other(format!("Raft log write: {e}"))),
                ),
                Done::Reply(tx) => {
                    let _ = tx.send(result.clone());
                }
                Done::Nobody => {}
            }
        }
    }
}

/// Every operation of `batch`, in order, in one transaction: durable unless none asks for it.
fn commit(db: &Database, batch: &[Job]) -> Result<(), LogStoreError> {
    let durable = batch
        .iter()
        .any(|j| !matches!(j.op, Op::Meta { durable: false, .. }));
    let mut txn = db.begin_write()?;
    txn.set_durability(if durable {
        Durability::Immediate
    } else {
        Durability::None
    })?;
    for job in batch {
        apply(&txn, &job.op)?;
    }
    txn.commit()?;
    Ok(())
}

fn apply(txn: &WriteTransaction, op: &Op) -> Result<(), LogStoreError> {
    match op {
        Op::Append { rows, .. } => {
            let mut table = txn.open_table(LOGS)?;
            for (index, bytes) in rows {
                table.insert(index, bytes.as_slice())?;
            }
        }
        Op::Truncate(from) => {
            txn.open_table(LOGS)?.retain_in(*from.., |_, _| false)?;
        }
        Op::Purge { index, purged } => {
            txn.open_table(META)?
                .insert(super::log_store::LAST_PURGED, purged.as_slice())?;
            txn.open_table(LOGS)?.retain_in(..=*index, |_, _| false)?;
        }
        Op::Meta { key, value, .. } => {
            txn.open_table(META)?.insert(*key, value.as_slice())?;
        }
    }
    Ok(())
}

/// Drops from the overlay the entries the batch made durable (those a later append replaced
/// stay: their sequence number is newer).
fn forget_flushed(overlay: &Mutex<Overlay>, batch: &[Job]) {
    let mut o = overlay.lock().expect("overlay lock");
    for job in batch {
        if let Op::Append { rows, seq } = &job.op {
            for (index, _) in rows {
                if o.entries.get(index).is_some_and(|(s, _)| s == seq) {
                    o.entries.remove(index);
                }
            }
        }
    }
}
