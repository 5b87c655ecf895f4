//! The durable state machine (`StateMachine`, redb): it applies Raft entries to the revocation
//! set with the responses operators see, keeps a bounded delta window that never skips, keeps a
//! hash-chained audit history that tampering cannot heal, and survives a reopen or a transfer to
//! another node through snapshots that refuse corruption.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::path::Path;

use openraft::storage::RaftStateMachine;
use openraft::{
    CommittedLeaderId, Entry, EntryPayload, LogId, Membership, RaftSnapshotBuilder, Snapshot,
    SnapshotMeta, StoredMembership,
};
use recall::node::audit::{AuditRecord, GENESIS, verify};
use recall::node::raft::snapshot::{self, SnapshotData};
use recall::node::raft::state_machine::{
    AppliedState, FILE_NAME, StateMachine, StateMachineConfig, StateMachineError,
};
use recall::node::raft::transfer;
use recall::node::raft::{Node, NodeId, Request, Response, TypeConfig};
use recall_core::{
    Command, FingerprintSeed, Kind, Meta, Revocation, RevocationKey, RevocationSet, Rule,
    RuleScope, ScopeKind, Timestamp,
};
use recall_stream::Window;
use redb::{ReadableDatabase, TableDefinition};

/// The state file's audit table, as documented in `recall::node::raft::snapshot`.
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");

fn log_id(index: u64) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

fn entry(index: u64, payload: EntryPayload<TypeConfig>) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(index),
        payload,
    }
}

fn membership() -> Membership<NodeId, Node> {
    Membership::new(
        vec![BTreeSet::from([1])],
        BTreeMap::from([(1, Node::new("127.0.0.1:7001"))]),
    )
}

fn meta(actor: &str) -> Meta {
    Meta {
        at: Timestamp::from_millis(1_700_000_000_000),
        actor: actor.into(),
        on_behalf_of: String::new(),
        reason: "test".into(),
    }
}

fn key(v: &str) -> RevocationKey {
    RevocationKey::new(Kind::Token, "https://idp.example", v)
}

fn command(cmd: Command) -> EntryPayload<TypeConfig> {
    EntryPayload::Normal(Request::Command(cmd))
}

fn revoke(values: &[&str]) -> EntryPayload<TypeConfig> {
    let items = values.iter().map(|v| Revocation {
        key: key(v),
        expires_at: None,
    });
    command(Command::Revoke {
        meta: meta("alice"),
        items: items.collect(),
    })
}

fn init(index: u64, seed: u64) -> Entry<TypeConfig> {
    let seed = FingerprintSeed(seed);
    entry(
        index,
        // A cluster created with no step-up: these tests are about applying and snapshots.
        EntryPayload::Normal(Request::Bootstrap {
            seed,
            admins: vec![],
            at: Timestamp(0),
            policy: recall::node::stepup::StepUpPolicy::none(),
        }),
    )
}

/// Membership, Blank, Init, Revoke, Revoke (no-op), AddRule, Lift, Blank: indexes 1..=8.
fn history() -> Vec<Entry<TypeConfig>> {
    let scope = RuleScope::new(ScopeKind::Subject, "https://idp.example", "bob");
    let not_before = Timestamp::from_millis(1_700_000_000_000);
    let rule = Rule {
        scope,
        not_before,
        expires_at: None,
    };
    let keys = vec![key("b"), key("never-revoked")];
    vec![
        entry(1, EntryPayload::Membership(membership())),
        entry(2, EntryPayload::Blank),
        init(3, 42),
        entry(4, revoke(&["a", "b"])),
        entry(5, revoke(&["a"])),
        entry(
            6,
            command(Command::AddRule {
                meta: meta("bob"),
                rule,
            }),
        ),
        entry(
            7,
            command(Command::Lift {
                meta: meta("carol"),
                keys,
                rules: vec![],
            }),
        ),
        entry(8, EntryPayload::Blank),
    ]
}

fn open(dir: &Path) -> StateMachine {
    StateMachine::open(dir, StateMachineConfig::default()).expect("opens")
}

fn versions(after: Window) -> Vec<u64> {
    match after {
        Window::Deltas(deltas) => deltas.iter().map(|d| d.version).collect(),
        other => panic!("expected deltas, got {other:?}"),
    }
}

/// Responses from `(version, added, already_present, removed, not_found)`.
fn responses(counts: &[(u64, u64, u64, u64, u64)]) -> Vec<Response> {
    let response = |&(version, added, already_present, removed, not_found)| Response {
        version,
        added,
        already_present,
        removed,
        not_found,
        ..Response::default()
    };
    counts.iter().map(response).collect()
}

/// Every entry kind applies at its log index; responses count what changed; the window hands a
/// subscriber exactly the deltas after its version and says when it is ahead.
#[tokio::test]
async fn applies_entries_and_serves_deltas() {
    let dir = tempfile::tempdir().unwrap();
    let mut sm = open(dir.path());
    let mut applied = sm.subscribe();
    let replies = sm.apply(history()).await.unwrap();
    let expected = responses(&[
        (1, 0, 0, 0, 0),
        (2, 0, 0, 0, 0),
        (3, 1, 0, 0, 0),
        (4, 2, 0, 0, 0),
        (5, 0, 1, 0, 0),
        (6, 1, 0, 0, 0),
        (7, 0, 0, 1, 1),
        (8, 0, 0, 0, 0),
    ]);
    assert_eq!(replies, expected);

    let (last, stored) = sm.applied_state().await.unwrap();
    assert_eq!(last, Some(log_id(8)));
    assert_eq!(stored, StoredMembership::new(Some(log_id(1)), membership()));
    assert!(sm.seeded());
    let (version, last_change, seed, len) = sm.with_set(|s| {
        (
            s.version(),
            s.last_change(),
            s.fingerprinter().seed(),
            s.len(),
        )
    });
    assert_eq!(
        (version, last_change, seed, len),
        (8, 7, FingerprintSeed(42), 1)
    );
    assert!(applied.has_changed().unwrap());
    assert_eq!(*applied.borrow_and_update(), sm.applied());
    assert_eq!(sm.applied().version, 8);

    // The no-op revoke at 5 made no delta; deltas chain by prev_version.
    assert_eq!(versions(sm.deltas_after(0)), [4, 6, 7]);
    assert_eq!(versions(sm.deltas_after(3)), [4, 6, 7]);
    assert_eq!(versions(sm.deltas_after(5)), [6, 7]);
    assert!(versions(sm.deltas_after(7)).is_empty());
    assert!(versions(sm.deltas_after(8)).is_empty());
    assert_eq!(sm.deltas_after(9), Window::Ahead { current: 8 });
    let Window::Deltas(deltas) = sm.deltas_after(4) else {
        panic!("deltas");
    };
    assert_eq!(
        deltas.iter().map(|d| d.prev_version).collect::<Vec<_>>(),
        [4, 6]
    );
    assert_eq!(deltas[1].digest, sm.applied().digest);

    // Every command, no-op included, is in the audit chain, and so is the seed request that
    // fixed the step-up policy; blanks are not.
    let log = sm.audit_log(0, 100).await.unwrap();
    assert_eq!(
        log.iter().map(|r| r.version).collect::<Vec<_>>(),
        [3, 4, 5, 6, 7]
    );
    assert_eq!(log[0].actor, "recall");
    assert_eq!(log[0].prev, GENESIS);
    assert_eq!(log[1].actor, "alice");
    assert_eq!(log[4].actor, "carol");
    let verified = sm.audit_verify().await.unwrap().unwrap();
    assert_eq!((verified.records, verified.last_version), (5, 7));
    assert_eq!(verified.head, sm.audit_head().hash);
    let page = sm.audit_log(5, 2).await.unwrap();
    assert_eq!(page.iter().map(|r| r.version).collect::<Vec<_>>(), [5, 6]);
}

/// The window drops its oldest deltas past either bound; a subscriber behind the window is told
/// to take a snapshot (never handed a gap), one at the window's floor still gets deltas.
#[tokio::test]
async fn window_overflow_sends_subscribers_to_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let config = StateMachineConfig {
        max_deltas: 3,
        max_delta_entries: 100,
    };
    let mut sm = StateMachine::open(dir.path(), config).unwrap();
    let keys: Vec<String> = (0..5).map(|i| format!("k{i}")).collect();
    let entries = (1..=5).map(|i| entry(i, revoke(&[keys[i as usize - 1].as_str()])));
    sm.apply(entries).await.unwrap();
    assert_eq!(sm.deltas_after(1), Window::TooOld { oldest: 2 });
    assert_eq!(versions(sm.deltas_after(2)), [3, 4, 5]);

    // A big delta pushes out the older ones by entry count; one bigger than the whole window
    // empties it, so only subscribers already at it can follow with deltas.
    let config = StateMachineConfig {
        max_deltas: 10,
        max_delta_entries: 4,
    };
    let dir = tempfile::tempdir().unwrap();
    let mut sm = StateMachine::open(dir.path(), config).unwrap();
    sm.apply([entry(1, revoke(&["a"])), entry(2, revoke(&["b", "c", "d"]))])
        .await
        .unwrap();
    assert_eq!(versions(sm.deltas_after(0)), [1, 2]);
    sm.apply([entry(3, revoke(&["e"]))]).await.unwrap();
    assert_eq!(sm.deltas_after(0), Window::TooOld { oldest: 1 });
    assert_eq!(versions(sm.deltas_after(1)), [2, 3]);
    sm.apply([entry(4, revoke(&["f", "g", "h", "i", "j"]))])
        .await
        .unwrap();
    assert_eq!(sm.deltas_after(3), Window::TooOld { oldest: 4 });
    assert!(versions(sm.deltas_after(4)).is_empty());

    let zero = StateMachineConfig {
        max_deltas: 0,
        ..config
    };
    let err = StateMachine::open(dir.path(), zero).unwrap_err();
    assert!(
        matches!(
            err,
            StateMachineError::Config {
                field: "max_deltas",
                ..
            }
        ),
        "{err}"
    );
}

/// Builds a snapshot the way openraft does.
async fn build(sm: &mut StateMachine) -> Snapshot<TypeConfig> {
    let mut builder = sm.get_snapshot_builder().await;
    builder.build_snapshot().await.expect("builds")
}

/// What openraft sends a follower: the stored snapshot with its history beside it.
async fn sent(sm: &mut StateMachine) -> Snapshot<TypeConfig> {
    sm.get_current_snapshot()
        .await
        .unwrap()
        .expect("a stored snapshot")
}

/// Applies `history()`, builds a snapshot, then applies two more entries.
async fn snapshotted(dir: &Path) -> (StateMachine, Snapshot<TypeConfig>) {
    let mut sm = open(dir);
    sm.apply(history()).await.unwrap();
    let snap = build(&mut sm).await;
    sm.apply([entry(9, revoke(&["z"])), entry(10, EntryPayload::Blank)])
        .await
        .unwrap();
    (sm, snap)
}

/// After a close, the state machine reopens at its snapshot (digest, version, membership, seed,
/// audit head), the audit chain verifies, and re-applying the log after the snapshot gives back
/// the state it had.
#[tokio::test]
async fn reopens_from_its_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (sm, snap) = snapshotted(dir.path()).await;
    assert_eq!(snap.meta.last_log_id, Some(log_id(8)));
    let before_close = (sm.applied(), sm.audit_head());
    drop(sm);
    assert!(dir.path().join(FILE_NAME).is_file());

    let mut sm = open(dir.path());
    let bytes = snap.snapshot.into_inner();
    let data: SnapshotData = snapshot::decode(&bytes).unwrap();
    assert_eq!(sm.with_set(RevocationSet::snapshot), data.set);
    // The snapshot names the head of the history and holds none of it.
    assert_eq!(data.history_head.version, 7);
    assert_eq!(sm.applied().version, 8);
    assert!(sm.seeded());
    let (last, membership_) = sm.applied_state().await.unwrap();
    assert_eq!(last, Some(log_id(8)));
    assert_eq!(membership_, snap.meta.last_membership);
    let current = sm.get_current_snapshot().await.unwrap().expect("stored");
    assert_eq!(current.meta, snap.meta);
    let t = transfer::unpack(&current.snapshot.into_inner()).unwrap();
    assert_eq!(t.state, bytes);
    assert_eq!(
        t.records.len(),
        5,
        "the history up to the snapshot travels beside it"
    );
    // Records written after the snapshot were persisted by the clean close.
    let verified = sm.audit_verify().await.unwrap().unwrap();
    assert_eq!((verified.records, verified.last_version), (6, 9));
    assert_eq!(sm.audit_head().version, 7);

    sm.apply([entry(9, revoke(&["z"])), entry(10, EntryPayload::Blank)])
        .await
        .unwrap();
    assert_eq!((sm.applied(), sm.audit_head()), before_close);
    assert_eq!(versions(sm.deltas_after(7)), [9]);
    assert_eq!(sm.deltas_after(6), Window::TooOld { oldest: 7 });
    assert!(sm.audit_verify().await.unwrap().is_ok());
}

/// openraft builds snapshots while it keeps applying: each names exactly the head of the
/// history of the versions it covers, and the history sent beside the latest verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshots_built_during_applies_carry_their_whole_history() {
    let dir = tempfile::tempdir().unwrap();
    let mut sm = open(dir.path());
    let mut builder = sm.get_snapshot_builder().await;
    let building = tokio::spawn(async move {
        let mut snaps = Vec::new();
        for _ in 0..20 {
            snaps.push(builder.build_snapshot().await.unwrap());
            tokio::task::yield_now().await;
        }
        snaps
    });
    for i in 1..=200 {
        let value = format!("k{i}");
        sm.apply([entry(i, revoke(&[&value]))]).await.unwrap();
    }
    for snap in building.await.unwrap() {
        let version = snap.meta.last_log_id.map_or(0, |id| id.index);
        let data = snapshot::decode(&snap.snapshot.into_inner()).unwrap();
        assert_eq!(
            (data.set.version, data.history_head.version),
            (version, version)
        );
    }
    let current = sent(&mut sm).await;
    let version = current.meta.last_log_id.map_or(0, |id| id.index);
    let t = transfer::unpack(&current.snapshot.into_inner()).unwrap();
    assert_eq!(verify(t.records).unwrap().last_version, version);
}

/// Installs `snap` into `sm` the way openraft does.
async fn install(
    sm: &mut StateMachine,
    meta: &SnapshotMeta<NodeId, Node>,
    bytes: Vec<u8>,
) -> Result<(), openraft::StorageError<NodeId>> {
    let mut cursor = sm.begin_receiving_snapshot().await?;
    *cursor = Cursor::new(bytes);
    sm.install_snapshot(meta, cursor).await
}

/// A node that installs a snapshot holds the same set and the full audit history, and goes on
/// applying exactly as the node that built it.
#[tokio::test]
async fn install_gives_an_equal_state_and_history() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = open(dir_a.path());
    a.apply(history()).await.unwrap();
    build(&mut a).await;
    let snap = sent(&mut a).await;

    let mut b = open(dir_b.path());
    let mut applied = b.subscribe();
    install(&mut b, &snap.meta, snap.snapshot.into_inner())
        .await
        .unwrap();
    assert_eq!(
        b.with_set(RevocationSet::snapshot),
        a.with_set(RevocationSet::snapshot)
    );
    assert_eq!(
        b.applied_state().await.unwrap(),
        a.applied_state().await.unwrap()
    );
    assert_eq!((b.seeded(), b.audit_head()), (a.seeded(), a.audit_head()));
    assert_eq!(*applied.borrow_and_update(), a.applied());
    assert_eq!(
        b.audit_log(0, 100).await.unwrap(),
        a.audit_log(0, 100).await.unwrap()
    );
    assert!(b.audit_verify().await.unwrap().is_ok());
    assert_eq!(
        b.get_current_snapshot().await.unwrap().unwrap().meta,
        snap.meta
    );
    // Its window starts at the snapshot.
    assert_eq!(b.deltas_after(4), Window::TooOld { oldest: 7 });
    assert!(versions(b.deltas_after(7)).is_empty());

    let next = || [entry(9, revoke(&["a", "q"]))];
    assert_eq!(
        a.apply(next()).await.unwrap(),
        b.apply(next()).await.unwrap()
    );
    assert_eq!((b.applied(), b.audit_head()), (a.applied(), a.audit_head()));
    assert_eq!(versions(b.deltas_after(7)), [9]);

    // The installed snapshot survives a reopen of the installing node.
    drop(b);
    let b = open(dir_b.path());
    assert_eq!(b.with_set(RevocationSet::version), 8);
    assert_eq!(b.audit_head().version, 7);
}

/// A corrupt snapshot is refused with an error, and the state machine is left as it was.
#[tokio::test]
async fn refuses_corrupt_snapshots() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = open(dir_a.path());
    a.apply(history()).await.unwrap();
    build(&mut a).await;
    let snap = sent(&mut a).await;
    let good = snap.snapshot.into_inner();
    let mut b = open(dir_b.path());
    for at in [0, good.len() / 3, good.len() / 2, good.len() - 1] {
        let mut bad = good.clone();
        bad[at] ^= 0x40;
        let err = install(&mut b, &snap.meta, bad).await.unwrap_err();
        assert!(err.to_string().contains("checksum"), "byte {at}: {err}");
    }
    let err = install(&mut b, &snap.meta, good[..10].to_vec())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");

    // A well-formed snapshot whose set does not match its digest, or its log id.
    let t = transfer::unpack(&good).unwrap();
    let mut data = snapshot::decode(&t.state).unwrap();
    data.set.entries.pop();
    let bad = transfer::pack(
        snapshot::encode(&data).unwrap(),
        t.records.clone(),
        t.bodies.clone(),
    )
    .unwrap();
    let err = install(&mut b, &snap.meta, bad).await.unwrap_err();
    assert!(err.to_string().contains("digest"), "{err}");
    // A history beside it that was edited, or that stops short of the head the state names.
    let mut records = t.records.clone();
    records[1].reason = "edited".into();
    let bad = transfer::pack(t.state.clone(), records, t.bodies.clone()).unwrap();
    let err = install(&mut b, &snap.meta, bad).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("history sent with the snapshot does not verify"),
        "{err}"
    );
    let mut records = t.records.clone();
    records.pop();
    let bad = transfer::pack(t.state.clone(), records, t.bodies.clone()).unwrap();
    let err = install(&mut b, &snap.meta, bad).await.unwrap_err();
    assert!(
        err.to_string().contains("names the head at version 7"),
        "{err}"
    );
    let mut meta = snap.meta.clone();
    meta.last_log_id = Some(log_id(9));
    let err = install(&mut b, &meta, good.clone()).await.unwrap_err();
    assert!(err.to_string().contains("version 8"), "{err}");

    assert_eq!(b.applied(), AppliedState::default());
    assert!(b.get_current_snapshot().await.unwrap().is_none());
    assert!(b.audit_log(0, 10).await.unwrap().is_empty());
    install(&mut b, &snap.meta, good).await.unwrap();
    assert_eq!(b.applied(), a.applied());
}

fn read_record(path: &Path, version: u64) -> AuditRecord {
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_read().unwrap();
    let table = txn.open_table(AUDIT).unwrap();
    postcard::from_bytes(table.get(version).unwrap().unwrap().value()).unwrap()
}

/// Editing a stored record while the node is down is reported at that version, and re-applying
/// the same log does not overwrite (heal) it: history is never rewritten.
#[tokio::test]
async fn tampering_is_reported_and_never_healed() {
    let dir = tempfile::tempdir().unwrap();
    let head = {
        let mut sm = open(dir.path());
        sm.apply(history()).await.unwrap();
        sm.audit_head()
    };
    let path = dir.path().join(FILE_NAME);
    {
        let mut record = read_record(&path, 5);
        record.actor = "mallory".into();
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(AUDIT)
            .unwrap()
            .insert(5, postcard::to_stdvec(&record).unwrap().as_slice())
            .unwrap();
        txn.commit().unwrap();
    }

    let mut sm = open(dir.path());
    let broken = sm.audit_verify().await.unwrap().unwrap_err();
    assert_eq!(broken.version, 5);
    assert_eq!(broken.reason, "record hash does not match its content");
    // No snapshot was built: openraft re-applies the whole log.
    sm.apply(history()).await.unwrap();
    assert_eq!(sm.audit_head(), head);
    let broken = sm.blocking_audit_verify().unwrap().unwrap_err();
    assert_eq!(broken.version, 5);
    assert_eq!(sm.audit_log(5, 1).await.unwrap()[0].actor, "mallory");
}

/// The first seed request fixes the seed; later ones (or one after anything was revoked) change
/// nothing and say so.
#[tokio::test]
async fn init_is_honoured_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut sm = open(dir.path());
    let replies = sm.apply([init(1, 7), init(2, 8)]).await.unwrap();
    assert_eq!(replies, responses(&[(1, 1, 0, 0, 0), (2, 0, 1, 0, 0)]));
    assert!(sm.seeded());
    assert_eq!(
        sm.with_set(|s| (s.fingerprinter().seed(), s.version())),
        (FingerprintSeed(7), 2)
    );
    // Only the request that fixed the seed (and the step-up policy) is in the history.
    let log = sm.audit_log(0, 10).await.unwrap();
    assert_eq!(log.iter().map(|r| r.version).collect::<Vec<_>>(), [1]);
    // ... and stays fixed across a snapshot and a reopen.
    build(&mut sm).await;
    drop(sm);
    let mut sm = open(dir.path());
    let replies = sm.apply([init(3, 9)]).await.unwrap();
    assert_eq!(replies, responses(&[(3, 0, 1, 0, 0)]));
    assert_eq!(
        sm.with_set(|s| s.fingerprinter().seed()),
        FingerprintSeed(7)
    );

    let dir = tempfile::tempdir().unwrap();
    let mut sm = open(dir.path());
    let replies = sm
        .apply([entry(1, revoke(&["a"])), init(2, 9)])
        .await
        .unwrap();
    assert_eq!(replies, responses(&[(1, 1, 0, 0, 0), (2, 0, 1, 0, 0)]));
    assert!(!sm.seeded());
    assert_eq!(
        sm.with_set(|s| s.fingerprinter().seed()),
        FingerprintSeed::default()
    );
}

/// An entry at or before the applied version is a storage error, not a silent skip; and a
/// second state machine on the same directory is refused.
#[tokio::test]
async fn refuses_out_of_order_entries_and_a_second_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut sm = open(dir.path());
    sm.apply([entry(3, EntryPayload::Blank)]).await.unwrap();
    let err = sm.apply([entry(2, revoke(&["a"]))]).await.unwrap_err();
    assert!(err.to_string().contains("order"), "{err}");
    let err = StateMachine::open(dir.path(), StateMachineConfig::default()).unwrap_err();
    assert!(matches!(err, StateMachineError::Locked { .. }), "{err}");
}

/// The first admins come with the seed (once, audited as the system's own), role changes are
/// applied and audited with the admin as actor, and the bindings travel in snapshots: a node
/// installing one agrees on who may do what.
#[tokio::test]
async fn role_bindings_are_replicated_audited_and_snapshotted() {
    use recall::node::access::{Role, RoleChange};
    let admin = "spiffe://recall.local/operator/admin".to_string();
    let bob = "spiffe://recall.local/operator/bob".to_string();
    let dir = tempfile::tempdir().unwrap();
    let mut sm = open(dir.path());
    let init = |index, seed| {
        entry(
            index,
            EntryPayload::Normal(Request::Init {
                seed: FingerprintSeed(seed),
                admins: vec![admin.clone()],
                at: Timestamp(5),
            }),
        )
    };
    let grant = RoleChange {
        meta: Meta {
            at: Timestamp(9),
            actor: admin.clone(),
            on_behalf_of: String::new(),
            reason: "on call".into(),
        },
        identity: bob.clone(),
        role: Some(Role::Revoker),
    };
    sm.apply([
        entry(1, EntryPayload::Membership(membership())),
        init(2, 7),
        // A second Init (another leader's) binds nobody again.
        init(3, 8),
        entry(4, EntryPayload::Normal(Request::Roles(grant))),
    ])
    .await
    .unwrap();
    let want = BTreeMap::from([(admin.clone(), Role::Admin), (bob.clone(), Role::Revoker)]);
    assert_eq!(sm.roles(), want);
    let records = sm.audit_log(0, 10).await.unwrap();
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(records[0].actor, "recall");
    assert!(
        records[0].summary.contains(&admin),
        "{}",
        records[0].summary
    );
    assert_eq!(records[1].actor, admin);
    assert!(
        records[1].summary.contains("revoker"),
        "{}",
        records[1].summary
    );
    assert!(sm.audit_verify().await.unwrap().is_ok());

    build(&mut sm).await;
    let snap = sent(&mut sm).await;
    let other = tempfile::tempdir().unwrap();
    let mut replica = open(other.path());
    replica
        .install_snapshot(&snap.meta, snap.snapshot)
        .await
        .unwrap();
    assert_eq!(replica.roles(), want);
}
