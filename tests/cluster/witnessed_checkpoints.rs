//! A subscriber checks its own set against the checkpoints a quorum of nodes signed, which
//! heartbeats carry: given the nodes' keys (`recall audit keys`), it counts a checkpoint only
//! when a quorum of those keys signed it, so a node that relays one no quorum signed is refused
//! and the subscriber follows another node. Black-box too: `recall sidecar --checkpoint-keys`
//! with the file `recall audit keys` writes, seen in `/v1/status` and `/metrics`.

use std::collections::BTreeMap;
use std::time::Duration;

use recall::subscriber::{Subscriber, SubscriberConfig, SubscriberStatus};
use recall::transport::{DEV_TRUST_DOMAIN, Identity};
use recall_core::Kind;

use crate::cli::recall;
use crate::fixture::{
    Client, Cluster, ISSUER, PATIENCE, Procs, eventually, keys_bound, leader, revoke_range,
    security, status, trusted_keys,
};
use crate::sidecar_proc::Sidecar;

fn fast(c: &mut recall::node::NodeConfig) {
    c.checkpoint_interval = Duration::from_millis(100);
}

/// A subscriber of every node of `cluster`, checking checkpoints against `keys`.
async fn subscriber(
    cluster: &Cluster,
    id: &str,
    keys: Option<BTreeMap<u64, [u8; 32]>>,
) -> Subscriber {
    subscriber_with(cluster, id, |c| c.checkpoint_keys = keys).await
}

/// A subscriber of every node of `cluster`, its configuration changed by `tweak`.
async fn subscriber_with(
    cluster: &Cluster,
    id: &str,
    tweak: impl FnOnce(&mut SubscriberConfig),
) -> Subscriber {
    let mut config = SubscriberConfig::new(
        cluster
            .ids()
            .iter()
            .map(|&n| cluster.addr(n).to_string())
            .collect(),
        id,
        security(&Identity::subscriber(DEV_TRUST_DOMAIN, id)),
    );
    tweak(&mut config);
    Subscriber::start(config).await.unwrap()
}

/// Waits until a quorum has witnessed version `at` or later; that checkpoint's version.
async fn witnessed(c: &Client, at: u64) -> u64 {
    eventually("a quorum to witness the write", PATIENCE, || {
        let mut c = c.clone();
        async move {
            let s = status(&mut c).await.map_err(|e| e.message().to_string())?;
            if s.witnessed_version >= at {
                Ok(s.witnessed_version)
            } else {
                Err(format!("witnessed {} of {at}", s.witnessed_version))
            }
        }
    })
    .await
}

async fn until(sub: &Subscriber, what: &str, ok: impl Fn(&SubscriberStatus) -> bool) {
    eventually(what, PATIENCE, || async {
        let s = sub.status();
        if ok(&s) {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_holding_the_nodes_keys_matches_its_set_to_each_signed_checkpoint() {
    let cluster = Cluster::start_with(3, fast).await;
    keys_bound(&cluster, 3).await;
    let mut c = cluster.client(leader(&cluster).await);
    let keys = trusted_keys(&c).await;
    let first = c
        .revoke(revoke_range("cp", 0..3))
        .await
        .unwrap()
        .into_inner();
    witnessed(&c, first.version).await;

    let sub = subscriber(&cluster, "svc-checkpoints", Some(keys)).await;
    until(&sub, "the subscriber to match a signed checkpoint", |s| {
        s.witnessed_version >= first.version
    })
    .await;

    // Later writes: each new checkpoint is matched as it comes, on the same stream.
    let second = c
        .revoke(revoke_range("cp2", 0..3))
        .await
        .unwrap()
        .into_inner();
    let signed = witnessed(&c, second.version).await;
    until(&sub, "the subscriber to match the next checkpoint", |s| {
        s.witnessed_version >= signed
    })
    .await;
    let s = sub.status();
    assert!(s.witness_verified, "{s:?}");
    assert_eq!((s.witness_refusals, s.digest_mismatches), (0, 0), "{s:?}");
    let a = sub.check_key(Kind::Token, ISSUER, "cp2-1");
    assert!(a.revoked && !a.stale, "{a:?}");
    sub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_no_quorum_of_the_trusted_keys_signed_is_refused_and_never_vouches() {
    let cluster = Cluster::start_with(3, fast).await;
    keys_bound(&cluster, 3).await;
    let c = cluster.client(leader(&cluster).await);
    let w = c
        .clone()
        .revoke(revoke_range("cp", 0..3))
        .await
        .unwrap()
        .into_inner();
    witnessed(&c, w.version).await;

    // Keys the nodes do not sign with: no checkpoint they relay has a quorum of these.
    let wrong: BTreeMap<u64, [u8; 32]> = cluster
        .ids()
        .into_iter()
        .map(|n| {
            let key = ed25519_dalek::SigningKey::from_bytes(&[n as u8; 32]);
            (n, key.verifying_key().to_bytes())
        })
        .collect();
    let sub = subscriber(&cluster, "svc-wrong-keys", Some(wrong)).await;
    until(&sub, "the subscriber to refuse the checkpoints", |s| {
        s.witness_refusals >= 3
    })
    .await;
    let s = sub.status();
    assert_eq!(s.witnessed_version, 0, "{s:?}");
    assert!(!s.synced, "no node vouched for the state: {s:?}");
    // Fail closed: a state no node could vouch for refuses even a clean token.
    let a = sub.check_key(Kind::Token, ISSUER, "never-revoked");
    assert!(a.stale && a.revoked, "{a:?}");
    sub.shutdown().await;
}

/// Nodes that stop signing checkpoints (here, two of three restarted with a signing interval of
/// an hour, so no quorum signs again) cannot keep a subscriber that holds their keys on a set
/// no quorum vouched for: past its checkpoint lag its answers are stale, though every heartbeat
/// still vouches for the state, and they are fresh again once a checkpoint covers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_no_quorum_signs_within_the_checkpoint_lag_makes_answers_stale() {
    let mut cluster = Cluster::start_with(3, fast).await;
    keys_bound(&cluster, 3).await;
    let c = cluster.client(leader(&cluster).await);
    let keys = trusted_keys(&c).await;
    let first = c
        .clone()
        .revoke(revoke_range("cp", 0..3))
        .await
        .unwrap()
        .into_inner();
    witnessed(&c, first.version).await;
    let sub = subscriber_with(&cluster, "svc-lag", |c| {
        c.checkpoint_keys = Some(keys);
        c.checkpoint_lag = Duration::from_secs(2);
    })
    .await;
    until(
        &sub,
        "every change the subscriber holds to be covered",
        |s| s.witnessed_version >= first.version && s.unwitnessed_ms.is_none(),
    )
    .await;
    assert!(!sub.check_key(Kind::Token, ISSUER, "clean").stale);

    for n in [2, 3] {
        cluster.stop(n).await;
        cluster
            .restart_with(n, |c| c.checkpoint_interval = Duration::from_secs(3600))
            .await;
    }
    let c = cluster.client(leader(&cluster).await);
    let unsigned = c
        .clone()
        .revoke(revoke_range("unsigned", 0..3))
        .await
        .unwrap()
        .into_inner();
    eventually(
        "answers to turn stale past the checkpoint lag",
        PATIENCE,
        || async {
            let a = sub.check_key(Kind::Token, ISSUER, "clean");
            let s = sub.status();
            if s.version >= unsigned.version && a.stale {
                Ok((a, s))
            } else {
                Err(format!("{a:?} {s:?}"))
            }
        },
    )
    .await;
    let s = sub.status();
    assert!(s.synced && s.node.is_some(), "nodes still vouch: {s:?}");
    assert!(s.unwitnessed_ms.is_some_and(|ms| ms > 2_000), "{s:?}");
    assert!(s.witnessed_version < unsigned.version, "{s:?}");
    let a = sub.check_key(Kind::Token, ISSUER, "clean");
    assert!(a.stale && a.revoked, "fail-closed refuses: {a:?}");

    // Signing again: the next checkpoint covers the change, and answers are fresh.
    cluster.stop(2).await;
    cluster.restart_with(2, fast).await;
    until(&sub, "a checkpoint to cover the change again", |s| {
        s.witnessed_version >= unsigned.version && s.unwitnessed_ms.is_none()
    })
    .await;
    let a = sub.check_key(Kind::Token, ISSUER, "clean");
    assert!(!a.stale && !a.revoked, "{a:?}");
    assert!(sub.check_key(Kind::Token, ISSUER, "unsigned-1").revoked);
    sub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_given_the_audit_keys_file_reports_the_checkpoints_it_matched() {
    let procs = Procs::start(3, &[]);
    keys_bound(&procs, 3).await;
    let cluster = procs.addr(leader(&procs).await).to_string();
    let keys = recall(&cluster, &["audit", "keys"]).await;
    assert!(keys.ok, "{}", keys.stderr);
    let w = recall(
        &cluster,
        &["revoke", "--kind", "token", "--ns", ISSUER, "witnessed-1"],
    )
    .await;
    assert!(w.ok, "{}", w.stderr);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.txt");
    std::fs::write(&file, &keys.stdout).unwrap();
    let side = Sidecar::spawn(
        &procs,
        "checkpoint-sidecar",
        &["--checkpoint-keys", file.to_str().unwrap()],
    );
    let url = format!("http://{}/v1/status", side.http);
    let s: serde_json::Value =
        eventually("the sidecar to match a checkpoint", PATIENCE, || async {
            let body = reqwest::get(&url)
                .await
                .map_err(|e| e.to_string())?
                .text()
                .await
                .map_err(|e| e.to_string())?;
            let s: serde_json::Value =
                serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
            if s["witnessed_version"].as_u64().unwrap_or(0) > 0 && s["unwitnessed_ms"].is_null() {
                Ok(s)
            } else {
                Err(body)
            }
        })
        .await;
    assert_eq!(s["witness_verified"], true, "{s}");
    assert_eq!(s["witness_refusals"], 0, "{s}");
    assert!(
        s["unwitnessed_ms"].is_null(),
        "every change is covered: {s}"
    );
    let metrics = reqwest::get(format!("http://{}/metrics", side.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("recall_sidecar_witnessed_version "))
        .unwrap_or_else(|| panic!("no witnessed version in:\n{metrics}"));
    assert_ne!(line, "recall_sidecar_witnessed_version 0", "{}", side.log());
    assert!(
        metrics.contains("\nrecall_sidecar_unwitnessed_seconds 0\n"),
        "{metrics}"
    );

    // A keys file that is not one is refused at start, saying what to do.
    std::fs::write(&file, "node 1 is trusted\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_recall"))
        .args([
            "sidecar",
            "--cluster",
            &cluster,
            "--id",
            "checkpoint-sidecar",
        ])
        .arg("--checkpoint-keys")
        .arg(&file)
        .arg("--data-dir")
        .arg(dir.path().join("refused"))
        .arg("--pki")
        .arg(crate::fixture::pki().dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--checkpoint-keys") && err.contains("recall audit keys"),
        "{err}"
    );
}
