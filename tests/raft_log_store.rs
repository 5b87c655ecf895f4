//! The durable Raft log (`LogStore`, redb): it passes openraft's storage suite, and what it
//! acknowledged (entries, vote, committed id, purges, truncations) is still there after the
//! process closes the file and opens it again.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::sync::{Arc, Mutex};

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    CommittedLeaderId, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, Membership,
    OptionalSend, RaftLogReader, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError,
    StoredMembership, Vote,
};
use recall::node::raft::log_store::FILE_NAME;
use recall::node::raft::{LogStore, LogStoreError, Node, NodeId, Request, Response, TypeConfig};
use recall_core::FingerprintSeed;
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------
// The state machine openraft's suite requires beside a log store. It is NOT the product's state
// machine (that one is durable and is tested on its own): it only records the last applied log
// id and membership, answers every entry with `Response::default()`, and snapshots those two
// values as postcard bytes.
// ---------------------------------------------------------------------------------------------

/// What the companion state machine holds.
#[derive(Default)]
struct MemState {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Node>,
    snapshot: Option<(SnapshotMeta<NodeId, Node>, Vec<u8>)>,
    snapshots_built: u64,
}

/// An in-memory state machine, for the storage suite only.
#[derive(Clone, Default)]
struct MemStateMachine(Arc<Mutex<MemState>>);

impl MemStateMachine {
    fn state(&self) -> std::sync::MutexGuard<'_, MemState> {
        self.0
            .lock()
            .expect("no test thread panicked holding the state")
    }
}

fn snapshot_error(e: postcard::Error) -> StorageError<NodeId> {
    StorageError::from_io_error(
        ErrorSubject::Snapshot(None),
        ErrorVerb::Read,
        std::io::Error::other(e),
    )
}

impl RaftSnapshotBuilder<TypeConfig> for MemStateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let mut st = self.state();
        let data =
            postcard::to_stdvec(&(st.last_applied, &st.membership)).map_err(snapshot_error)?;
        st.snapshots_built += 1;
        let meta = SnapshotMeta {
            last_log_id: st.last_applied,
            last_membership: st.membership.clone(),
            snapshot_id: format!("{:?}-{}", st.last_applied, st.snapshots_built),
        };
        st.snapshot = Some((meta.clone(), data.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for MemStateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Node>), StorageError<NodeId>> {
        let st = self.state();
        Ok((st.last_applied, st.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut st = self.state();
        let mut replies = Vec::new();
        for entry in entries {
            st.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(Request::Init { .. } | Request::Command(_)) => {}
                EntryPayload::Membership(m) => {
                    st.membership = StoredMembership::new(Some(entry.log_id), m);
                }
            }
            replies.push(Response::default());
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let (last_applied, membership) = postcard::from_bytes(&data).map_err(snapshot_error)?;
        let mut st = self.state();
        st.last_applied = last_applied;
        st.membership = membership;
        st.snapshot = Some((meta.clone(), data));
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        Ok(self.state().snapshot.clone().map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

/// Builds a `LogStore` in a fresh temporary directory, kept alive by the returned guard.
struct TempStoreBuilder;

impl StoreBuilder<TypeConfig, LogStore, MemStateMachine, TempDir> for TempStoreBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, MemStateMachine), StorageError<NodeId>> {
        let dir = tempfile::tempdir()
            .map_err(|e| StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Write, e))?;
        let store = LogStore::open(dir.path()).map_err(|e| {
            StorageError::from_io_error(
                ErrorSubject::Store,
                ErrorVerb::Write,
                std::io::Error::other(e),
            )
        })?;
        Ok((dir, store, MemStateMachine::default()))
    }
}

/// `LogStore` satisfies every check of openraft's storage suite (`Suite` builds its own runtimes,
/// so this is a plain test).
#[test]
fn passes_openraft_storage_suite() {
    Suite::<TypeConfig, LogStore, MemStateMachine, TempStoreBuilder, TempDir>::test_all(
        TempStoreBuilder,
    )
    .expect("the storage suite passes");
}

// ---------------------------------------------------------------------------------------------
// Reopening: what was acknowledged is on disk.
// ---------------------------------------------------------------------------------------------

fn log_id(term: u64, index: u64) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

/// Entries 1..=n of term 1: a blank entry, a membership entry, then `Init` requests.
fn entries(n: u64) -> Vec<Entry<TypeConfig>> {
    (1..=n)
        .map(|index| {
            let payload = match index {
                1 => EntryPayload::Blank,
                2 => EntryPayload::Membership(Membership::new(
                    vec![BTreeSet::from([1, 2, 3])],
                    BTreeMap::from([(1, Node::new("127.0.0.1:7001"))]),
                )),
                _ => EntryPayload::Normal(Request::Init {
                    seed: FingerprintSeed(index * 7),
                }),
            };
            Entry {
                log_id: log_id(1, index),
                payload,
            }
        })
        .collect()
}

async fn store_with(dir: &TempDir, n: u64) -> LogStore {
    let mut store = LogStore::open(dir.path()).expect("opens");
    store.blocking_append(entries(n)).await.expect("appends");
    store
}

async fn all_entries(store: &mut LogStore) -> Vec<Entry<TypeConfig>> {
    store.try_get_log_entries(..).await.expect("reads")
}

/// Entries, the vote and the committed id written before a close are read back after a reopen.
#[tokio::test]
async fn reopen_keeps_entries_vote_and_committed() {
    let dir = tempfile::tempdir().unwrap();
    let vote = Vote::new_committed(3, 2);
    {
        let mut store = store_with(&dir, 5).await;
        store.save_vote(&vote).await.unwrap();
        store.save_committed(Some(log_id(1, 4))).await.unwrap();
    }
    assert!(dir.path().join(FILE_NAME).is_file());

    let mut store = LogStore::open(dir.path()).expect("reopens");
    assert_eq!(all_entries(&mut store).await, entries(5));
    assert_eq!(store.read_vote().await.unwrap(), Some(vote));
    assert_eq!(store.read_committed().await.unwrap(), Some(log_id(1, 4)));
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, None);
    assert_eq!(state.last_log_id, Some(log_id(1, 5)));

    // The reader openraft replicates from sees the same log, and a sub-range is half-open.
    let mut reader = store.get_log_reader().await;
    let middle = reader.try_get_log_entries(2..4).await.unwrap();
    assert_eq!(middle, entries(5)[1..3].to_vec());
}

/// A purge survives a reopen: the purged entries stay gone and `last_purged_log_id` stays set,
/// also when every entry was purged.
#[tokio::test]
async fn reopen_keeps_purge() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = store_with(&dir, 5).await;
        store.purge(log_id(1, 3)).await.unwrap();
    }
    {
        let mut store = LogStore::open(dir.path()).unwrap();
        assert_eq!(all_entries(&mut store).await, entries(5)[3..].to_vec());
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 3)));
        assert_eq!(state.last_log_id, Some(log_id(1, 5)));
        store.purge(log_id(1, 5)).await.unwrap();
    }
    let mut store = LogStore::open(dir.path()).unwrap();
    assert!(all_entries(&mut store).await.is_empty());
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 5)));
    assert_eq!(state.last_log_id, Some(log_id(1, 5)));
}

/// A truncation survives a reopen, and the log continues after it with a new term.
#[tokio::test]
async fn reopen_keeps_truncate() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = store_with(&dir, 5).await;
        store.truncate(log_id(1, 3)).await.unwrap();
    }
    let replacement = Entry {
        log_id: log_id(2, 3),
        payload: EntryPayload::Blank,
    };
    {
        let mut store = LogStore::open(dir.path()).unwrap();
        assert_eq!(all_entries(&mut store).await, entries(2));
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(log_id(1, 2)));
        store.blocking_append([replacement.clone()]).await.unwrap();
    }
    let mut store = LogStore::open(dir.path()).unwrap();
    let mut expected = entries(2);
    expected.push(replacement);
    assert_eq!(all_entries(&mut store).await, expected);
    assert_eq!(
        store.get_log_state().await.unwrap().last_log_id,
        Some(log_id(2, 3))
    );
}

/// Two stores cannot share one directory: the second open fails and says why.
#[tokio::test]
async fn second_open_of_a_directory_fails() {
    let dir = tempfile::tempdir().unwrap();
    let _first = LogStore::open(dir.path()).unwrap();
    let err = LogStore::open(dir.path()).expect_err("the file is locked");
    assert!(matches!(err, LogStoreError::Locked { .. }), "{err}");
    assert!(err.to_string().contains("another recall node"), "{err}");
}
