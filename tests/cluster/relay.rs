//! Relays (`recall relay`): a chain node → relay → relay → subscriber converges with equal
//! digests; when the middle relay dies its subscriber moves to the next one and resumes from
//! the deltas it holds, nothing skipped; and the cluster's convergence counts every subscriber
//! behind the relays, naming the path to each.

use std::collections::BTreeMap;

use recall::proto as pb;
use recall::relay::{Relay, RelayConfig};
use recall::subscriber::{Subscriber, SubscriberConfig};
use recall::transport::{DEV_TRUST_DOMAIN, Identity};
use recall_core::Kind;
use tokio::net::TcpListener;

use crate::fixture::{
    Client, Cluster, ISSUER, PATIENCE, converged, eventually, leader, revoke_range, security,
};

/// A relay `id` following `upstream`.
async fn relay(id: &str, upstream: Vec<String>) -> Relay {
    let config = SubscriberConfig::new(
        upstream,
        id,
        security(&Identity::relay(DEV_TRUST_DOMAIN, id)),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    Relay::start(RelayConfig::new(config), listener)
        .await
        .unwrap()
}

/// Every node's client address.
fn node_addrs(cluster: &Cluster) -> Vec<String> {
    cluster
        .ids()
        .iter()
        .map(|&n| cluster.addr(n).to_string())
        .collect()
}

/// The cluster's convergence towards `version`.
async fn wave(c: &Client, version: u64) -> pb::Convergence {
    let req = pb::StatusRequest {
        version: Some(version),
        local_only: false,
    };
    c.clone()
        .status(req)
        .await
        .unwrap()
        .into_inner()
        .convergence
        .unwrap()
}

/// Waits until the cluster reports `version` applied at exactly `ids`; each one's path.
async fn landed(c: &Client, version: u64, ids: &[&str]) -> BTreeMap<String, String> {
    eventually("the wave to land at every subscriber", PATIENCE, || async {
        let w = wave(c, version).await;
        if !w.converged || w.subscribers_total as usize != ids.len() {
            return Err(format!("{w:?}"));
        }
        // Every subscriber lags a version far ahead: the laggards name them all, with paths.
        let all = wave(c, version + 1_000_000).await;
        let paths: BTreeMap<String, String> = all
            .laggards
            .into_iter()
            .map(|l| (l.subscriber_id, l.via))
            .collect();
        if paths.keys().map(String::as_str).eq(ids.iter().copied()) {
            Ok(paths)
        } else {
            Err(format!("subscribers {paths:?}, expected {ids:?}"))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_chain_converges_survives_its_middle_relay_and_is_counted() {
    let cluster = Cluster::start(3).await;
    let nodes = node_addrs(&cluster);
    let c = cluster.client(leader(&cluster).await);
    let first = c
        .clone()
        .revoke(revoke_range("before", 0..50))
        .await
        .unwrap()
        .into_inner();

    let a = relay("edge-a", nodes.clone()).await;
    let b = relay("edge-b", vec![a.addr().to_string()]).await;
    // A relay serves nobody before it has synced (its subscribers would try the next).
    b.subscriber().wait_synced(PATIENCE).await.unwrap();
    let mut config = SubscriberConfig::new(
        nodes,
        "svc-behind",
        security(&Identity::subscriber(DEV_TRUST_DOMAIN, "svc-behind")),
    );
    config.upstream = vec![b.addr().to_string(), a.addr().to_string()];
    let sub = Subscriber::start(config).await.unwrap();
    sub.wait_version(first.version, PATIENCE).await.unwrap();
    assert_eq!(sub.status().node.as_deref(), Some(&*b.addr().to_string()));

    let second = c
        .clone()
        .revoke(revoke_range("during", 0..50))
        .await
        .unwrap()
        .into_inner();
    let paths = landed(&c, second.version, &["edge-a", "edge-b", "svc-behind"]).await;
    assert_eq!(paths["edge-a"], "", "attached to a node directly");
    assert_eq!(paths["edge-b"], "edge-a");
    assert_eq!(paths["svc-behind"], "edge-a > edge-b");
    let nodes_state = converged(&cluster, second.version).await;
    let node = nodes_state.values().next().unwrap();
    let s = sub.status();
    assert_eq!(
        (s.version, s.digest.0),
        (node.applied_version, node.digest),
        "{s:?}"
    );
    let answer = sub.check_key(Kind::Token, ISSUER, "during-7");
    assert!(answer.revoked && !answer.stale, "{answer:?}");
    assert_eq!(s.snapshots, 1, "one snapshot, at the start: {s:?}");

    // The middle relay dies: its subscriber moves to the next upstream and resumes from the
    // deltas that relay holds (no new snapshot), and the cluster forgets the dead relay.
    b.shutdown().await;
    let third = c
        .clone()
        .revoke(revoke_range("after", 0..50))
        .await
        .unwrap()
        .into_inner();
    let paths = landed(&c, third.version, &["edge-a", "svc-behind"]).await;
    assert_eq!(paths["svc-behind"], "edge-a");
    let nodes_state = converged(&cluster, third.version).await;
    let node = nodes_state.values().next().unwrap();
    let s = sub.status();
    assert_eq!(
        (s.version, s.digest.0),
        (node.applied_version, node.digest),
        "{s:?}"
    );
    assert_eq!(s.node.as_deref(), Some(&*a.addr().to_string()), "{s:?}");
    assert_eq!(
        (s.snapshots, s.digest_mismatches),
        (1, 0),
        "resumed from deltas: {s:?}"
    );
    assert!(sub.check_key(Kind::Token, ISSUER, "after-49").revoked);
    assert!(sub.check_key(Kind::Token, ISSUER, "before-0").revoked);
    assert!(!sub.check_key(Kind::Token, ISSUER, "never").revoked);
    sub.shutdown().await;
    a.shutdown().await;
}

/// A sidecar that holds the nodes' checkpoint keys and follows a relay verifies the checkpoints
/// the relay passes on as if they came from a node: signed by a quorum of those keys, matching
/// its own set, covering every change it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_pass_through_a_relay_and_verify_against_the_node_keys() {
    use crate::fixture::{keys_bound, trusted_keys};

    let cluster = Cluster::start_with(3, |c| {
        c.checkpoint_interval = std::time::Duration::from_millis(100)
    })
    .await;
    keys_bound(&cluster, 3).await;
    let nodes = node_addrs(&cluster);
    let c = cluster.client(leader(&cluster).await);
    let keys = trusted_keys(&c).await;
    let a = relay("edge-cp", nodes.clone()).await;
    a.subscriber().wait_synced(PATIENCE).await.unwrap();
    let mut config = SubscriberConfig::new(
        nodes,
        "svc-cp",
        security(&Identity::subscriber(DEV_TRUST_DOMAIN, "svc-cp")),
    );
    config.upstream = vec![a.addr().to_string()];
    config.checkpoint_keys = Some(keys);
    let sub = Subscriber::start(config).await.unwrap();
    let w = c
        .clone()
        .revoke(revoke_range("signed", 0..10))
        .await
        .unwrap()
        .into_inner();
    eventually(
        "the sidecar to verify a checkpoint covering the write",
        PATIENCE,
        || async {
            let s = sub.status();
            if s.witnessed_version >= w.version && s.unwitnessed_ms.is_none() {
                Ok(s)
            } else {
                Err(format!("{s:?}"))
            }
        },
    )
    .await;
    let s = sub.status();
    assert_eq!(s.node.as_deref(), Some(&*a.addr().to_string()), "{s:?}");
    assert!(s.witness_verified && s.witness_refusals == 0, "{s:?}");
    let answer = sub.check_key(Kind::Token, ISSUER, "signed-3");
    assert!(answer.revoked && !answer.stale, "{answer:?}");
    sub.shutdown().await;
    a.shutdown().await;
}

/// The binaries as an operator runs them: `recall relay` between the cluster and a sidecar
/// (`recall sidecar --upstream`), the relay's certificate issued with `recall pki issue`; a
/// revocation's `--wait-converged` counts the sidecar behind the relay, which answers revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recall_relay_serves_a_sidecar_that_the_cluster_counts() {
    use std::ffi::OsStr;
    use std::process::Command;

    use crate::cli::recall;
    use crate::fixture::{Procs, pki};
    use crate::sidecar_proc::{Sidecar, cluster, free_addr, spawn_logged};

    let procs = Procs::start(3, &[]);
    let leader_addr = procs.addr(leader(&procs).await).to_string();
    let issued = Command::new(env!("CARGO_BIN_EXE_recall"))
        .args(["pki", "issue"])
        .arg(pki().dir.path())
        .arg("spiffe://recall.local/relay/edge-proc")
        .output()
        .unwrap();
    assert!(
        issued.status.success(),
        "{}",
        String::from_utf8_lossy(&issued.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let (listen, http) = (free_addr(), free_addr());
    let (data, upstream) = (dir.path().join("relay"), cluster(&procs));
    let args: Vec<&OsStr> = [
        "relay",
        "--upstream",
        &upstream,
        "--id",
        "edge-proc",
        "--listen",
        &listen,
        "--http",
        &http,
    ]
    .into_iter()
    .map(OsStr::new)
    .chain([OsStr::new("--data-dir"), data.as_os_str()])
    .collect();
    let relay = spawn_logged(&args, &dir.path().join("relay.log"));
    let revoke = |args: &[&str]| {
        let all: Vec<String> = ["revoke", "--kind", "token", "--ns", ISSUER]
            .iter()
            .chain(args)
            .map(|a| a.to_string())
            .collect();
        let leader = leader_addr.clone();
        async move {
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            recall(&leader, &all).await
        }
    };
    let relay_log = || std::fs::read_to_string(dir.path().join("relay.log")).unwrap_or_default();
    let get = |url: String| async move {
        let r = reqwest::get(&url).await.map_err(|e| e.to_string())?;
        let ok = r.status().is_success();
        let body = r.text().await.map_err(|e| e.to_string())?;
        if ok { Ok(body) } else { Err(body) }
    };
    eventually("the relay to sync with the cluster", PATIENCE, || {
        get(format!("http://{http}/readyz"))
    })
    .await;

    // The relay first, a node after it.
    let fallback = procs.addr(procs.ids()[0]).to_string();
    let upstreams = format!("{listen},{fallback}");
    let side = Sidecar::spawn(&procs, "behind-relay", &["--upstream", &upstreams]);
    let status = format!("http://{}/v1/status", side.http);
    eventually("the sidecar to follow the relay", PATIENCE, || async {
        let body = get(status.clone()).await?;
        let s: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        if s["synced"] == true && s["node"] == listen.as_str() {
            Ok(())
        } else {
            Err(format!("{body}\n{}", side.log()))
        }
    })
    .await;

    // `recall status` counts the sidecar behind the relay once the relay has reported it.
    let counted = |what: &'static str, ok: fn(&serde_json::Value) -> bool| {
        let leader = leader_addr.clone();
        async move {
            eventually(what, PATIENCE, || async {
                let out = recall(&leader, &["status", "--json"]).await;
                let s: serde_json::Value =
                    serde_json::from_str(&out.stdout).map_err(|e| e.to_string())?;
                if ok(&s["convergence"]) {
                    Ok(())
                } else {
                    Err(out.stdout)
                }
            })
            .await
        }
    };
    counted("the cluster to count the sidecar behind the relay", |c| {
        c["subscribers_total"] == 2
    })
    .await;
    let out = revoke(&["relayed-1", "--wait-converged=30s"]).await;
    assert!(out.ok, "{}\n{}", out.stderr, relay_log());
    assert!(out.stdout.contains("converged: 2/2"), "{}", out.stdout);
    let check = format!("http://{}/v1/check?iss={ISSUER}&jti=relayed-1", side.http);
    let answer: serde_json::Value = serde_json::from_str(&get(check).await.unwrap()).unwrap();
    assert_eq!(answer["revoked"], true, "{answer}");
    let relayed: serde_json::Value =
        serde_json::from_str(&get(format!("http://{http}/v1/status")).await.unwrap()).unwrap();
    assert_eq!(relayed["subscribers_total"], 1, "{relayed}");
    assert_eq!(relayed["subscribers"][0]["id"], "behind-relay", "{relayed}");

    // An operator who expects more subscribers than the cluster knows of is told so.
    let out = revoke(&[
        "expect-more",
        "--wait-converged=1s",
        "--expect-subscribers=3",
    ])
    .await;
    assert!(!out.ok, "{}", out.stdout);
    assert!(
        out.stderr.contains("2 live subscribers applied version")
            && out.stderr.contains("of the 3 you expect"),
        "{}",
        out.stderr
    );

    // The relay is SIGKILLed: the sidecar moves to the node after it and resumes from its
    // deltas, nothing skipped, and the cluster counts it there.
    drop(relay);
    let out = revoke(&[
        "after-kill",
        "--wait-converged=30s",
        "--expect-subscribers=1",
    ])
    .await;
    // Without the expectation this could say "converged: 0/0" while the sidecar reconnects.
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stdout.contains("converged: 1/1"), "{}", out.stdout);
    let check = format!("http://{}/v1/check?iss={ISSUER}&jti=after-kill", side.http);
    eventually(
        "the sidecar to apply the revocation after its relay died",
        PATIENCE,
        || async {
            let answer: serde_json::Value =
                serde_json::from_str(&get(check.clone()).await?).map_err(|e| e.to_string())?;
            if answer["revoked"] == true && answer["stale"] == false {
                Ok(())
            } else {
                Err(format!("{answer}\n{}", side.log()))
            }
        },
    )
    .await;
    counted("the cluster to count the sidecar at the node", |c| {
        c["subscribers_total"] == 1 && c["converged"] == true
    })
    .await;
    let s: serde_json::Value = serde_json::from_str(&get(status).await.unwrap()).unwrap();
    assert_eq!(s["node"], fallback.as_str(), "{s}");
    assert_eq!(
        s["snapshots"],
        1,
        "resumed from the node's deltas: {s}\n{}",
        side.log()
    );
}
