//! The durable Raft log (`LogStore`, redb): with the durable state machine it passes openraft's
//! storage suite, and what it acknowledged (entries, vote, committed id, purges, truncations) is
//! still there after the process closes the file and opens it again.

use std::collections::{BTreeMap, BTreeSet};

use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    CommittedLeaderId, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, Membership,
    RaftLogReader, StorageError, Vote,
};
use recall::node::raft::log_store::FILE_NAME;
use recall::node::raft::state_machine::{StateMachine, StateMachineConfig};
use recall::node::raft::{LogStore, LogStoreError, Node, NodeId, Request, TypeConfig};
use recall_core::FingerprintSeed;
use tempfile::TempDir;

/// Builds a `LogStore` and the durable `StateMachine` in one fresh temporary directory (as a node
/// keeps them), kept alive by the returned guard.
struct TempStoreBuilder;

fn open_error(e: impl std::error::Error + Send + Sync + 'static) -> StorageError<NodeId> {
    StorageError::from_io_error(
        ErrorSubject::Store,
        ErrorVerb::Write,
        std::io::Error::other(e),
    )
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for TempStoreBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<NodeId>> {
        let dir = tempfile::tempdir()
            .map_err(|e| StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Write, e))?;
        let store = LogStore::open(dir.path()).map_err(open_error)?;
        let sm =
            StateMachine::open(dir.path(), StateMachineConfig::default()).map_err(open_error)?;
        Ok((dir, store, sm))
    }
}

/// `LogStore` and the durable `StateMachine` satisfy every check of openraft's storage suite
/// (`Suite` builds its own runtimes, so this is a plain test).
#[test]
fn passes_openraft_storage_suite() {
    Suite::<TypeConfig, LogStore, StateMachine, TempStoreBuilder, TempDir>::test_all(
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
                    admins: vec![],
                    at: recall_core::Timestamp(0),
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

/// Group commit: concurrent appends share transactions (fewer fsyncs than writes), each is
/// acknowledged only once its transaction has committed, every acknowledged entry is read back
/// after a reopen, and entries are readable while still queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_share_fsyncs_and_are_all_durable() {
    const WRITERS: u64 = 64;
    let dir = tempfile::tempdir().unwrap();
    let all = entries(WRITERS + 2);
    {
        let store = LogStore::open(dir.path()).expect("opens");
        let before = store.commits();
        let writers: Vec<_> = all
            .iter()
            .cloned()
            .map(|e| {
                let mut s = store.clone();
                tokio::spawn(async move { s.blocking_append([e]).await })
            })
            .collect();
        for w in writers {
            w.await.unwrap().expect("acknowledged");
        }
        let commits = store.commits() - before;
        assert!(
            commits < WRITERS,
            "{} appends took {commits} transactions: none were shared",
            WRITERS + 2
        );
        let mut reader = store.clone();
        assert_eq!(all_entries(&mut reader).await, all);
    }
    let mut store = LogStore::open(dir.path()).expect("reopens");
    assert_eq!(all_entries(&mut store).await, all);
}
