//! Bad input gets a clear answer and changes nothing: malformed and oversized writes are refused
//! with INVALID_ARGUMENT naming what is wrong, and the version stays where it was; a write to a
//! node without a quorum fails within the write deadline instead of hanging; a tampered audit
//! record is named by `AuditVerify` on the node that holds it.

use std::time::{Duration, Instant};

use recall::node::audit::AuditRecord;
use recall::node::raft::snapshot::FILE_NAME;
use recall::proto as pb;
use redb::{ReadableDatabase, TableDefinition};
use tonic::Code;

use crate::fixture::{
    Client, Cluster, ISSUER, PATIENCE, audit_log, audit_verify, converged, eventually, leader,
    revoke, revoke_range, status, token,
};

/// The state file's audit table: version → postcard `AuditRecord` (see
/// `recall::node::raft::snapshot`).
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");

/// The batch limit of the node that checks oversized requests.
const MAX_BATCH: usize = 10;

/// Sends `req` and returns the refusal, failing if it was accepted or refused for another reason.
async fn refused(client: &mut Client, req: pb::RevokeRequest) -> String {
    let err = client.revoke(req).await.expect_err("the write is refused");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    err.message().to_string()
}

fn key(kind: i32, value: &str) -> Option<pb::RevocationKey> {
    Some(pb::RevocationKey {
        kind,
        namespace: ISSUER.into(),
        value: value.into(),
    })
}

/// Each refusal names the field at fault and what a valid value looks like, and nothing of a
/// refused request is applied (the version, digest and audit trail stay as they were).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_writes_are_refused_and_apply_nothing() {
    let cluster = Cluster::start_with(1, |c| c.limits.max_batch = MAX_BATCH).await;
    leader(&cluster).await;
    let mut client = cluster.client(1);
    client
        .revoke(revoke_range("good", 0..3))
        .await
        .expect("a valid write commits");
    let before = status(&mut client).await.unwrap();
    let audit_before = audit_log(&mut client).await.len();

    let missing_key = revoke(vec![pb::Revocation {
        key: None,
        expires_at_ms: None,
    }]);
    let msg = refused(&mut client, missing_key).await;
    assert!(msg.contains("items[0].key"), "{msg}");
    assert!(msg.contains("missing"), "{msg}");

    let mut unknown_kind = revoke_range("good", 0..2);
    unknown_kind.items[1].key = key(42, "jti");
    let msg = refused(&mut client, unknown_kind).await;
    assert!(msg.contains("items[1].key.kind"), "{msg}");
    assert!(msg.contains("42"), "{msg}");
    for choice in ["token", "session", "api_key", "subject", "client", "key"] {
        assert!(msg.contains(choice), "the choices include {choice}: {msg}");
    }

    let empty_value = revoke(vec![token("ok"), token("")]);
    let msg = refused(&mut client, empty_value).await;
    assert!(
        msg.contains("items[1].key.value") && msg.contains("`value` is empty"),
        "{msg}"
    );

    let raw_api_key = revoke(vec![pb::Revocation {
        key: key(pb::Kind::ApiKey as i32, "sk_live_not_a_hash"),
        expires_at_ms: None,
    }]);
    let msg = refused(&mut client, raw_api_key).await;
    assert!(msg.contains("SHA-256"), "{msg}");

    let oversized = revoke_range("too-many", 0..MAX_BATCH + 1);
    let msg = refused(&mut client, oversized).await;
    assert!(msg.contains("over the limit of 10"), "{msg}");

    // The request's actor is only an "on behalf of" note (the actor of record is the caller's
    // certificate), but it is still bounded.
    let mut long_note = revoke_range("noted", 0..1);
    long_note.actor = "x".repeat(300);
    let msg = refused(&mut client, long_note).await;
    assert!(
        msg.starts_with("actor: ") && msg.contains("over the limit of 256"),
        "{msg}"
    );

    let empty = revoke(vec![]);
    let msg = refused(&mut client, empty).await;
    assert!(msg.contains("empty"), "{msg}");

    let oversized_chunk = pb::ImportChunk {
        items: (0..=MAX_BATCH)
            .map(|i| token(format!("chunk-{i}")))
            .collect(),
        actor: "tests".into(),
        reason: String::new(),
    };
    let err = client
        .import(futures::stream::iter([oversized_chunk]))
        .await
        .expect_err("an oversized import chunk is refused");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("over the limit"), "{err:?}");

    let no_rule = pb::AddRuleRequest {
        rule: None,
        actor: "tests".into(),
        reason: String::new(),
        wait: None,
    };
    let err = client.add_rule(no_rule).await.expect_err("refused");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().starts_with("rule"), "{err:?}");

    let after = status(&mut client).await.unwrap();
    let state = |s: &pb::StatusReply| (s.applied_version, s.digest, s.entries, s.rules);
    assert_eq!(state(&after), state(&before), "nothing was applied");
    assert_eq!(audit_log(&mut client).await.len(), audit_before);
}

/// The types.proto convention: "An INVALID_ARGUMENT message names the offending field by its path
/// in the request, e.g. `items[3].key.namespace`".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_errors_name_the_field_by_its_path() {
    let cluster = Cluster::start(1).await;
    leader(&cluster).await;
    let mut client = cluster.client(1);
    let msg = refused(&mut client, revoke(vec![token("ok"), token("")])).await;
    assert!(msg.contains("items[1].key.value"), "{msg}");
}

/// The write deadline of the quorum tests.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Stops every node of a 3-node cluster but `target` (the leader or a follower), writes to it,
/// and checks the refusal comes within a bound and says why.
async fn write_without_quorum(to_leader: bool) {
    let mut cluster = Cluster::start_with(3, |c| c.write_timeout = WRITE_TIMEOUT).await;
    let leader = leader(&cluster).await;
    let mut client = cluster.client(leader);
    client
        .revoke(revoke_range("with-quorum", 0..1))
        .await
        .expect("commits while a quorum is up");
    let target = match to_leader {
        true => leader,
        false => cluster.ids().into_iter().find(|id| *id != leader).unwrap(),
    };
    for id in cluster.ids().into_iter().filter(|id| *id != target) {
        cluster.stop(id).await;
    }

    let mut client = cluster.client(target);
    let started = Instant::now();
    let err = client
        .revoke(revoke_range("without-quorum", 0..1))
        .await
        .expect_err("a write without a quorum fails");
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "the refusal took {took:?}, the write deadline is {WRITE_TIMEOUT:?}"
    );
    assert!(
        matches!(err.code(), Code::DeadlineExceeded | Code::Unavailable),
        "{err:?}"
    );
    let msg = err.message();
    assert!(msg.contains("quorum") || msg.contains("leader"), "{msg}");
}

/// A leader whose followers are gone cannot commit: it says so within the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_to_a_leader_without_quorum_fails_within_the_deadline() {
    write_without_quorum(true).await;
}

/// A follower left alone cannot find a leader: it says so within the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_to_a_follower_without_quorum_fails_within_the_deadline() {
    write_without_quorum(false).await;
}

/// Rewrites the actor of the audit record at `version` in a stopped node's state file. The
/// node's last tasks may hold the file for a moment after `stop`, so opening it is retried.
async fn tamper(data_dir: &std::path::Path, version: u64) {
    let path = data_dir.join("state").join(FILE_NAME);
    let db = eventually(
        "the stopped node to release its state file",
        PATIENCE,
        || {
            let path = path.clone();
            async move { redb::Database::open(&path).map_err(|e| e.to_string()) }
        },
    )
    .await;
    let txn = db.begin_read().unwrap();
    let bytes = txn.open_table(AUDIT).unwrap().get(version).unwrap();
    let mut record: AuditRecord = postcard::from_bytes(bytes.expect("stored").value()).unwrap();
    drop(txn);
    record.actor = "mallory".into();
    let txn = db.begin_write().unwrap();
    txn.open_table(AUDIT)
        .unwrap()
        .insert(version, postcard::to_stdvec(&record).unwrap().as_slice())
        .unwrap();
    txn.commit().unwrap();
}

/// Editing one record of a stopped node's audit trail is caught after its restart: verify names
/// that version, the log still shows the edit (re-applying the Raft log does not heal it), and
/// the untouched nodes still verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_audit_record_is_named_by_verify() {
    let mut cluster = Cluster::start(3).await;
    leader(&cluster).await;
    let mut last = 0;
    for i in 0..3 {
        let reply = cluster
            .client(1)
            .revoke(revoke_range(&format!("audited-{i}"), 0..2))
            .await
            .expect("commits")
            .into_inner();
        last = reply.version;
    }
    converged(&cluster, last).await;
    let records = audit_log(&mut cluster.client(3)).await;
    // The first admin's binding, then the three revokes.
    assert_eq!(records.len(), 4);
    let tampered = records[2].version;

    cluster.stop(3).await;
    tamper(cluster.data_dir(3), tampered).await;
    cluster.restart(3).await;
    converged(&cluster, last).await;

    let verdict = audit_verify(&mut cluster.client(3)).await;
    assert!(!verdict.ok, "{}", verdict.detail);
    assert_eq!(verdict.first_broken_version, Some(tampered));
    assert!(
        verdict.detail.contains(&tampered.to_string()),
        "{}",
        verdict.detail
    );
    let records = audit_log(&mut cluster.client(3)).await;
    let record = records.iter().find(|r| r.version == tampered).unwrap();
    assert_eq!(record.actor, "mallory", "history is not rewritten");
    for id in [1, 2] {
        let verdict = audit_verify(&mut cluster.client(id)).await;
        assert!(verdict.ok, "node {id}: {}", verdict.detail);
        assert_eq!(verdict.records_checked, 4);
    }
}
