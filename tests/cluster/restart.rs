//! Stopping and restarting every node of a 3-node cluster keeps what was acknowledged: the set
//! (entries, rules, digest), the version of its last change and the audit chain (it verifies,
//! with the same records and head), whether a node's state comes back from its snapshot, from
//! its log, or both.

use std::collections::BTreeMap;

use recall::proto as pb;

use crate::fixture::{
    Cluster, ISSUER, audit_log, audit_verify, converged, leader, revoke_range,
    stored_snapshot_version, token,
};

/// Commands of every kind, sent to every node in turn; returns the last committed version.
async fn history(cluster: &Cluster) -> u64 {
    let mut last = 0;
    for i in 0..30 {
        let id = cluster.ids()[i % 3];
        let reply = cluster
            .client(id)
            .revoke(revoke_range(&format!("restart-{i}"), 0..10))
            .await
            .expect("revoke commits")
            .into_inner();
        last = reply.version;
    }
    let rule = pb::AddRuleRequest {
        rule: Some(pb::Rule {
            scope: Some(pb::RuleScope {
                kind: pb::ScopeKind::Subject as i32,
                namespace: ISSUER.into(),
                value: "alice".into(),
            }),
            not_before_ms: 1_700_000_000_000,
            expires_at_ms: None,
        }),
        actor: "tests".into(),
        reason: "alice logged out everywhere".into(),
        wait: None,
    };
    cluster
        .client(2)
        .add_rule(rule)
        .await
        .expect("rule commits");
    let lift = pb::LiftRequest {
        keys: vec![token("restart-0-0").key.unwrap()],
        rules: vec![],
        actor: "tests".into(),
        reason: "revoked by mistake".into(),
        wait: None,
    };
    cluster.client(3).lift(lift).await.expect("lift commits");
    let chunks = (0..2).map(|c| pb::ImportChunk {
        items: (0..50)
            .map(|i| token(format!("imported-{c}-{i}")))
            .collect(),
        actor: "tests".into(),
        reason: String::new(),
    });
    let reply = cluster
        .client(1)
        .import(futures::stream::iter(chunks.collect::<Vec<_>>()))
        .await
        .expect("import commits")
        .into_inner();
    last.max(reply.version)
}

/// What a node must still hold after a restart.
#[derive(Debug, PartialEq)]
struct Kept {
    entries: u64,
    rules: u64,
    digest: u64,
    last_change_version: u64,
    audit_records: u64,
    audit_head: Vec<u8>,
}

async fn kept(cluster: &Cluster, version: u64) -> BTreeMap<u64, Kept> {
    let mut out = BTreeMap::new();
    for (id, s) in converged(cluster, version).await {
        let mut client = cluster.client(id);
        let verified = audit_verify(&mut client).await;
        assert!(verified.ok, "node {id}: {}", verified.detail);
        let head = audit_log(&mut client).await.pop().expect("a record").hash;
        let kept = Kept {
            entries: s.entries,
            rules: s.rules,
            digest: s.digest,
            last_change_version: s.last_change_version,
            audit_records: verified.records_checked,
            audit_head: head,
        };
        out.insert(id, kept);
    }
    out
}

/// Snapshots every 20 entries, so each node restarts from a snapshot plus the log after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_every_node_keeps_the_set_the_version_and_the_audit_chain() {
    let mut cluster = Cluster::start_with(3, |c| {
        c.snapshot_after = 20;
        // Checkpoints (and the key bindings they start with) would add entries and records at
        // their own pace; this test counts both.
        c.checkpoint_interval = std::time::Duration::from_secs(3600);
    })
    .await;
    leader(&cluster).await;
    let version = history(&cluster).await;
    let before = kept(&cluster, version).await;
    let any = &before[&1];
    assert_eq!((any.entries, any.rules), (30 * 10 - 1 + 100, 1));
    // The first admin's binding, 30 revokes, the rule, the lift and one record per import chunk.
    assert_eq!(any.audit_records, 1 + 30 + 1 + 1 + 2);

    for id in cluster.ids() {
        cluster.stop(id).await;
    }
    for id in cluster.ids() {
        let snapshot = stored_snapshot_version(cluster.data_dir(id)).await;
        assert!(
            snapshot.is_some_and(|v| v < version),
            "node {id} restarts from a snapshot ({snapshot:?}) and the log after it"
        );
        cluster.restart(id).await;
    }
    leader(&cluster).await;
    let after = kept(&cluster, version).await;
    assert_eq!(after, before);

    // The chain goes on from where it was.
    let reply = cluster
        .client(2)
        .revoke(revoke_range("after-restart", 0..1))
        .await
        .expect("a write after the restart commits")
        .into_inner();
    assert!(reply.version > version);
    for (id, k) in kept(&cluster, reply.version).await {
        assert_eq!(k.audit_records, before[&id].audit_records + 1, "node {id}");
        assert_eq!(k.entries, before[&id].entries + 1, "node {id}");
    }
}
