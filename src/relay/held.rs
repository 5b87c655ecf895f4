//! What a relay holds: the filter it follows the stream into (full mode, exact) and, beside it,
//! the recent deltas it serves downstream. Both change together under one lock, so a session
//! never sees a state whose deltas are not in the window yet, nor a window ahead of the state.

use std::sync::{Arc, Mutex, MutexGuard};

use recall_core::{Delta, Digest, FingerprintSeed};
use recall_filter::{Filter, FilterError, Reader, SnapshotLoader};
use recall_stream::message::{SnapshotBegin, SnapshotChunk};
use recall_stream::{Applied, DeltaWindow, Replica};
use tokio::sync::watch;

use crate::subscriber::held::Held;

/// The recent deltas and the state they lead to, as sessions read them.
pub struct Log {
    /// The deltas after some version, oldest first.
    pub window: DeltaWindow,
    /// The state the last delta (or snapshot, or heartbeat) left.
    pub applied: Applied,
    /// The fingerprint seed of that state.
    pub seed: FingerprintSeed,
}

/// The log, shared between the follow task (the only writer) and the sessions.
#[derive(Clone)]
pub struct Shared {
    log: Arc<Mutex<Log>>,
    reader: Reader,
    changes: Arc<watch::Sender<Applied>>,
}

impl Shared {
    /// The log, locked: the filter does not change while it is held.
    pub fn lock(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The filter's content (consistent with the log while the lock is held).
    pub fn reader(&self) -> &Reader {
        &self.reader
    }

    /// Changes whenever the applied state moves.
    pub fn changes(&self) -> watch::Receiver<Applied> {
        self.changes.subscribe()
    }
}

/// The filter and its log, as the follow task applies the stream to them.
pub struct Retained {
    filter: Filter,
    shared: Shared,
}

fn applied_of(filter: &Filter) -> Applied {
    Applied {
        version: filter.version(),
        last_change: filter.last_change(),
        digest: filter.digest(),
    }
}

impl Retained {
    /// Holds `filter` (a warm start's, or empty), keeping at most `max_deltas` deltas and
    /// `max_entries` fingerprints and rules across them.
    pub fn new(filter: Filter, max_deltas: usize, max_entries: usize) -> Self {
        let applied = applied_of(&filter);
        let shared = Shared {
            log: Arc::new(Mutex::new(Log {
                window: DeltaWindow::new(max_deltas, max_entries),
                applied,
                seed: filter.seed(),
            })),
            reader: filter.reader(),
            changes: Arc::new(watch::channel(applied).0),
        };
        Self { filter, shared }
    }

    /// What the sessions read.
    pub fn shared(&self) -> Shared {
        self.shared.clone()
    }

    /// Runs `change` on the filter and the log under the lock, then tells the sessions.
    fn changing<T>(
        &mut self,
        change: impl FnOnce(&mut Filter, &mut Log) -> Result<T, FilterError>,
    ) -> Result<T, FilterError> {
        let shared = self.shared.clone();
        let mut log = shared.lock();
        let out = change(&mut self.filter, &mut log);
        log.applied = applied_of(&self.filter);
        log.seed = self.filter.seed();
        let applied = log.applied;
        drop(log);
        self.shared.changes.send_if_modified(|a| {
            let moved = *a != applied;
            *a = applied;
            moved
        });
        out
    }
}

impl Held for Retained {
    fn filter(&self) -> &Filter {
        &self.filter
    }
}

impl Replica for Retained {
    type Error = FilterError;
    type Loader = SnapshotLoader;

    fn version(&self) -> u64 {
        self.filter.version()
    }

    fn last_change(&self) -> u64 {
        self.filter.last_change()
    }

    fn digest(&self) -> Digest {
        self.filter.digest()
    }

    fn seed(&self) -> FingerprintSeed {
        self.filter.seed()
    }

    fn apply(&mut self, deltas: &[Delta]) -> Result<(), FilterError> {
        self.changing(|filter, log| {
            filter.apply_many(deltas)?;
            for d in deltas {
                log.window.push(d.clone());
            }
            Ok(())
        })
    }

    fn advance(&mut self, version: u64, last_change: u64) -> Result<(), FilterError> {
        self.changing(|filter, _| filter.advance(version, last_change))
    }

    fn diverged(e: &FilterError) -> bool {
        <Filter as Replica>::diverged(e)
    }

    fn begin_snapshot(&mut self, b: &SnapshotBegin) -> SnapshotLoader {
        <Filter as Replica>::begin_snapshot(&mut self.filter, b)
    }

    fn push_chunk(loader: &mut SnapshotLoader, chunk: SnapshotChunk) {
        <Filter as Replica>::push_chunk(loader, chunk)
    }

    fn loaded(loader: &SnapshotLoader) -> u64 {
        <Filter as Replica>::loaded(loader)
    }

    fn finish_snapshot(&mut self, loader: SnapshotLoader) -> Result<(), FilterError> {
        self.changing(|filter, log| {
            <Filter as Replica>::finish_snapshot(filter, loader)?;
            // The deltas before the snapshot do not lead to it: subscribers behind it get a
            // snapshot too.
            log.window.clear();
            Ok(())
        })
    }
}
