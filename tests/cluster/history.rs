//! The history anyone can verify: an export from a running cluster verifies offline against the
//! nodes' keys (links, commands, signatures, quorums, and the digest the commands replay to),
//! and every kind of tampering fails at the version where it happened. A node whose stored
//! history was rewritten on disk is detected by the others and stops serving streams.

use std::time::Duration;

use ed25519_dalek::SigningKey;
use recall::node::audit::AuditRecord;
use recall::node::history::export::{self, Line};
use recall::node::history::{Body, Signed};
use recall::proto as pb;
use recall_core::Command;

use crate::fixture::{
    Client, Cluster, PATIENCE, converged, eventually, keys_bound, leader, revoke_range, status,
};

fn fast(c: &mut recall::node::NodeConfig) {
    c.checkpoint_interval = Duration::from_millis(100);
}

/// Writes of every kind; returns once a quorum witnessed the history's head.
async fn witnessed_history(cluster: &Cluster) -> u64 {
    let l = leader(cluster).await;
    keys_bound(cluster, 3).await;
    let mut c = cluster.client(l);
    for i in 0..5 {
        c.revoke(revoke_range(&format!("t{i}"), 0..3))
            .await
            .unwrap();
    }
    let lift = pb::LiftRequest {
        keys: vec![crate::fixture::token("t0-0").key.unwrap()],
        rules: vec![],
        actor: String::new(),
        reason: "false positive".into(),
        wait: None,
    };
    c.lift(lift).await.unwrap();
    eventually("a quorum to witness the head", PATIENCE, || {
        let mut c = c.clone();
        async move {
            let s = status(&mut c).await.map_err(|e| e.message().to_string())?;
            if s.history_version > 0 && s.witnessed_version == s.history_version {
                Ok(s.history_version)
            } else {
                Err(format!(
                    "head {} witnessed {} by {:?}",
                    s.history_version, s.witnessed_version, s.witnessed_by
                ))
            }
        }
    })
    .await
}

async fn export_of(c: &mut Client) -> Vec<Line> {
    let mut stream = c
        .audit_export(pb::AuditExportRequest {
            from_version: None,
            to_version: None,
        })
        .await
        .unwrap()
        .into_inner();
    let mut lines = Vec::new();
    while let Some(l) = stream.message().await.unwrap() {
        lines.push(serde_json::from_str(&l.line).expect("an export line"));
    }
    lines
}

fn records(lines: &[Line]) -> Vec<usize> {
    (0..lines.len())
        .filter(|i| matches!(lines[*i], Line::Record { .. }))
        .collect()
}

fn record(lines: &mut [Line], i: usize) -> (&mut AuditRecord, &mut Body) {
    match &mut lines[i] {
        Line::Record { record, body } => (record, body),
        _ => unreachable!(),
    }
}

/// Re-links every record from `from` on, as a forger who rewrote history would.
fn rehash(lines: &mut [Line], from: usize) {
    let idx = records(lines);
    for w in idx.windows(2).filter(|w| w[1] >= from) {
        let prev = record(lines, w[0]).0.hash;
        let (r, _) = record(lines, w[1]);
        r.prev = prev;
        r.hash = r.content_hash();
    }
}

fn fails_at(
    lines: &[Line],
    trust: &std::collections::BTreeMap<u64, [u8; 32]>,
    version: u64,
    says: &str,
) {
    fails_at_one_of(lines, trust, &[(version, says)]);
}

/// Where a quorum happened to sign the very version that was removed or moved, the verifier
/// names that version (the checkpoint's record is missing there) rather than the next link.
fn fails_at_one_of(
    lines: &[Line],
    trust: &std::collections::BTreeMap<u64, [u8; 32]>,
    expected: &[(u64, &str)],
) {
    let f = export::verify(lines, trust).expect_err("tampering is caught");
    assert!(
        expected
            .iter()
            .any(|(v, says)| f.version == *v && f.reason.contains(says)),
        "{f} is none of {expected:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_verifies_offline_and_every_tampering_fails_at_its_version() {
    let cluster = Cluster::start_with(3, fast).await;
    let head = witnessed_history(&cluster).await;
    let mut c = cluster.client(1);
    let lines = export_of(&mut c).await;
    let keys = c
        .audit_keys(pb::AuditKeysRequest {})
        .await
        .unwrap()
        .into_inner()
        .lines;
    let trust = export::parse_trust(&keys.join("\n")).unwrap();
    assert_eq!(trust.len(), 3);

    let ok = export::verify(&lines, &trust).expect("the untouched export verifies");
    assert!(ok.replayed, "{ok:?}");
    assert_eq!((ok.last, ok.witnessed), (head, Some(head)));

    let idx = records(&lines);
    let revoke_at = |lines: &[Line], n: usize| -> usize {
        idx.iter()
            .copied()
            .filter(|i| {
                matches!(
                    &lines[*i],
                    Line::Record {
                        body: Body::Command(Command::Revoke { .. }),
                        ..
                    }
                )
            })
            .nth(n)
            .unwrap()
    };
    let version_of = |lines: &mut Vec<Line>, i: usize| record(lines, i).0.version;

    // A changed record.
    let mut t = lines.clone();
    let i = revoke_at(&t, 1);
    record(&mut t, i).0.reason = "nothing to see".into();
    let v = version_of(&mut t, i);
    fails_at(&t, &trust, v, "record hash does not match its content");

    // A removed record: the next one no longer links.
    let mut t = lines.clone();
    let i = revoke_at(&t, 1);
    let next = idx[idx.iter().position(|x| *x == i).unwrap() + 1];
    let v_next = version_of(&mut t, next);
    let v_removed = version_of(&mut t, i);
    t.remove(i);
    fails_at_one_of(
        &t,
        &trust,
        &[
            (v_next, "prev does not match"),
            (v_removed, "which the export lacks"),
        ],
    );

    // A reordered pair: the record moved first no longer links to the one before it.
    let mut t = lines.clone();
    let i = revoke_at(&t, 2);
    let j = idx[idx.iter().position(|x| *x == i).unwrap() + 1];
    let v_j = version_of(&mut t, j);
    let v_i = version_of(&mut t, i);
    t.swap(i, j);
    fails_at_one_of(
        &t,
        &trust,
        &[
            (v_j, "prev does not match"),
            (v_i, "which the export lacks"),
        ],
    );

    // A forged signature.
    let mut t = lines.clone();
    let cp = t
        .iter()
        .position(|l| matches!(l, Line::Checkpoint(_)))
        .unwrap();
    let Line::Checkpoint(w) = &mut t[cp] else {
        unreachable!()
    };
    w.signatures[0].signature[5] ^= 1;
    let v_cp = w.version;
    fails_at(&t, &trust, v_cp, "does not verify");

    // A command rewritten, its hash fixed and the chain re-linked: every link holds, but the
    // record is no longer the one a quorum signed.
    let mut t = lines.clone();
    let i = revoke_at(&t, 3);
    let (r, body) = record(&mut t, i);
    let Body::Command(Command::Revoke { items, .. }) = body else {
        unreachable!()
    };
    items[0].key.value = "someone-else".into();
    r.command_hash = body.hash();
    r.hash = r.content_hash();
    let v = r.version;
    rehash(&mut t, i);
    let f = export::verify(&t, &trust).expect_err("a rewritten history is caught");
    assert!(
        f.version >= v && f.reason.contains("not the one a quorum signed"),
        "{f}"
    );

    // A quorum that signed a digest the commands do not replay to (keys the verifier trusts
    // re-sign every checkpoint, one with a wrong digest).
    let signers: Vec<(u64, SigningKey)> = (1..=3u64)
        .map(|n| (n, SigningKey::from_bytes(&[n as u8; 32])))
        .collect();
    let trust2 = signers
        .iter()
        .map(|(n, k)| (*n, k.verifying_key().to_bytes()))
        .collect();
    let mut t = lines.clone();
    let mut last = 0;
    for (i, l) in t.iter_mut().enumerate() {
        if let Line::Checkpoint(w) = l {
            w.signatures = signers
                .iter()
                .map(|(n, k)| Signed::sign(*n, w.signatures[0].checkpoint, k))
                .collect();
            last = i;
        }
    }
    assert!(
        export::verify(&t, &trust2).is_ok(),
        "re-signed by trusted keys, it verifies"
    );
    let Line::Checkpoint(w) = &mut t[last] else {
        unreachable!()
    };
    w.digest.0 ^= 1;
    let mut cp = w.signatures[0].checkpoint;
    cp.digest = w.digest;
    w.signatures = signers
        .iter()
        .map(|(n, k)| Signed::sign(*n, cp, k))
        .collect();
    let v = w.version;
    fails_at(
        &t,
        &trust2,
        v,
        "replaying the commands up to here gives set digest",
    );

    // Keys the verifier does not trust are no quorum.
    let stranger = [(
        9u64,
        SigningKey::from_bytes(&[9; 32]).verifying_key().to_bytes(),
    )]
    .into();
    let f = export::verify(&lines, &stranger).expect_err("no trusted signature");
    assert!(
        f.reason.contains("a quorum of the 1 trusted keys is 1"),
        "{f}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_stored_history_was_rewritten_is_detected_and_stops_serving() {
    let mut cluster = Cluster::start_with(3, fast).await;
    let head = witnessed_history(&cluster).await;
    let l = leader(&cluster).await;
    let victim = cluster.ids().into_iter().find(|id| *id != l).unwrap();
    // A quorum witnessed the head, which need not include the victim: let it apply it first.
    converged(&cluster, head).await;
    cluster.stop(victim).await;

    // Someone with the disk rewrites who did what from the third record on, and re-links the
    // chain so that it verifies by itself.
    {
        use redb::{ReadableDatabase, ReadableTable, TableDefinition};
        const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
        let path = cluster
            .data_dir(victim)
            .join("state")
            .join(recall::node::raft::snapshot::FILE_NAME);
        let db = eventually("the stopped node's state file", PATIENCE, || {
            let path = path.clone();
            async move { redb::Database::open(&path).map_err(|e| e.to_string()) }
        })
        .await;
        let mut all: Vec<AuditRecord> = {
            let txn = db.begin_read().unwrap();
            let t = txn.open_table(AUDIT).unwrap();
            t.iter()
                .unwrap()
                .map(|r| postcard::from_bytes(r.unwrap().1.value()).unwrap())
                .collect()
        };
        assert_eq!(all.last().unwrap().version, head);
        for i in 2..all.len() {
            if i == 2 {
                all[i].actor = "spiffe://recall.local/operator/mallory".into();
            }
            all[i].prev = all[i - 1].hash;
            all[i].hash = all[i].content_hash();
        }
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(AUDIT).unwrap();
            for r in &all {
                t.insert(r.version, postcard::to_stdvec(r).unwrap().as_slice())
                    .unwrap();
            }
        }
        txn.commit().unwrap();
        let v = recall::node::audit::verify(all).unwrap();
        assert_eq!(v.last_version, head, "the forged chain verifies on its own");
    }
    cluster.restart(victim).await;

    let mut node = cluster.client(victim);
    let alarm = eventually("the rewritten node to raise its alarm", PATIENCE, || {
        let mut node = node.clone();
        async move {
            let s = status(&mut node)
                .await
                .map_err(|e| e.message().to_string())?;
            if s.history_alarm.is_empty() {
                Err("no alarm yet".to_string())
            } else {
                Ok(s.history_alarm)
            }
        }
    })
    .await;
    assert!(alarm.contains("differs from the one it applied"), "{alarm}");
    let mut leader_client = cluster.client(l);
    eventually(
        "the others to name the node that disagrees",
        PATIENCE,
        || {
            let mut c = leader_client.clone();
            async move {
                let s = status(&mut c).await.map_err(|e| e.message().to_string())?;
                if s.disagreements
                    .iter()
                    .any(|d| d.starts_with(&format!("node {victim} ")))
                {
                    Ok(())
                } else {
                    Err(format!("{:?}", s.disagreements))
                }
            }
        },
    )
    .await;
    let _ = status(&mut leader_client).await.unwrap();

    // It serves no subscriber stream.
    let sub = crate::fixture::security(&recall::transport::Identity::subscriber(
        recall::transport::DEV_TRUST_DOMAIN,
        "watcher",
    ));
    let channel = recall::transport::Dialer::new(sub)
        .lazy(cluster.addr(victim), recall::transport::Expect::AnyNode)
        .unwrap();
    let hello = pb::SubscribeRequest {
        body: Some(pb::subscribe_request::Body::Hello(pb::Hello {
            subscriber_id: "watcher".into(),
            ..Default::default()
        })),
    };
    let r = pb::subscription_client::SubscriptionClient::new(channel)
        .subscribe(futures::StreamExt::chain(
            futures::stream::iter([hello]),
            futures::stream::pending(),
        ))
        .await;
    let s = r.expect_err("refused");
    assert_eq!(s.code(), tonic::Code::Unavailable, "{s:?}");
    assert!(
        s.message().contains("stopped serving streams"),
        "{}",
        s.message()
    );
    let _ = &mut node;
}
