//! The sidecar's HTTP face, against a real node: a revocation is reported revoked, readiness
//! waits for the first full sync, bad queries get a 400 that says what to fix, and with the
//! cluster gone past the staleness bound the policy decides.

use std::time::Duration;

use recall::node::{RunningNode, clock};
use recall::subscriber::StalePolicy;
use serde_json::json;

use crate::fixture::{OneNode, fast_config, revoke, token};
use crate::sidecar_fixture::{
    check, cluster_gone, get_json, get_text, start_sidecar, url, wait_until,
};
use recall_chaos::proxy::Proxy;

const ISS: &str = "https://login.example";

/// A revoked token is allowed before the revocation and revoked after it, with what matched,
/// the version and a fresh staleness; `/v1/status` shows the node's digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_is_reported_revoked_over_http() {
    let node = OneNode::start().await;
    let sidecar = start_sidecar(node.subscriber_config("sc-http-1")).await;
    sidecar
        .subscriber()
        .wait_synced(Duration::from_secs(10))
        .await
        .unwrap();
    let facts = [("iss", ISS), ("jti", "t-1"), ("iat", "1700000000")];
    let (code, before) = check(&sidecar, &facts).await;
    assert_eq!(code, 200, "{before}");
    assert_eq!(before["status"], "allowed", "{before}");
    assert_eq!(before["revoked"], false, "{before}");

    let v = revoke(&mut node.client().await, vec![token(ISS, "t-1")]).await;
    sidecar
        .subscriber()
        .wait_version(v, Duration::from_secs(5))
        .await
        .unwrap();
    let (code, after) = check(&sidecar, &facts).await;
    assert_eq!(code, 200, "{after}");
    assert_eq!(after["revoked"], true, "{after}");
    assert_eq!(after["status"], "revoked", "{after}");
    assert_eq!(
        after["matches"],
        json!([{"type": "entry", "kind": "token", "under": "issuer", "exact": true}])
    );
    assert!(after["version"].as_u64().unwrap() >= v, "{after}");
    assert_eq!(after["stale"], false, "{after}");
    assert!(after["staleness_ms"].is_u64(), "{after}");
    assert_eq!(after["policy"], "fail_closed", "{after}");

    let (code, status) = get_json(url(&sidecar, "/v1/status", &[])).await;
    assert_eq!(code, 200, "{status}");
    assert_eq!(status["id"], "sc-http-1");
    assert_eq!(status["synced"], true);
    assert_eq!(status["entries"], 1);
    assert_eq!(
        status["digest"],
        node.node.sm.applied().digest.to_string(),
        "{status}"
    );
    sidecar.shutdown().await.unwrap();
}

/// `/healthz` answers while the process runs; `/readyz` says 503 with a reason until the
/// sidecar has completed its first full sync, then 200. Meanwhile checks answer stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_waits_for_the_first_full_sync() {
    // The node's address is reserved, but nothing serves it yet.
    let dir = tempfile::tempdir().unwrap();
    let listeners = crate::fixture::listeners().await;
    let addr = listeners.client.local_addr().unwrap().to_string();
    let peer = listeners.peer.local_addr().unwrap().to_string();
    let mut sub = recall::subscriber::SubscriberConfig::new(
        vec![addr.clone()],
        "sc-ready-1",
        crate::fixture::subscriber_security("sc-ready-1"),
    );
    sub.backoff_min = Duration::from_millis(20);
    sub.backoff_max = Duration::from_millis(200);
    let sidecar = start_sidecar(sub).await;

    let (code, body) = get_text(url(&sidecar, "/healthz", &[])).await;
    assert_eq!((code, body.as_str()), (200, "ok"));
    let (code, reason) = get_text(url(&sidecar, "/readyz", &[])).await;
    assert_eq!(code, 503, "{reason}");
    assert!(reason.starts_with("not ready"), "{reason}");
    let (code, early) = check(&sidecar, &[("iss", ISS), ("jti", "t-1")]).await;
    assert_eq!(code, 200, "{early}");
    assert_eq!(
        (&early["stale"], &early["revoked"], &early["version"]),
        (&json!(true), &json!(true), &json!(0)),
        "an unsynced fail-closed sidecar refuses: {early}"
    );

    let node = RunningNode::start(
        fast_config(dir.path(), &peer),
        listeners,
        crate::fixture::node_security(1),
        clock::system(),
    )
    .await
    .unwrap();
    wait_until("/readyz is 200", Duration::from_secs(10), || async {
        get_text(url(&sidecar, "/readyz", &[])).await.0 == 200
    })
    .await;
    assert!(sidecar.subscriber().is_synced());
    sidecar.shutdown().await.unwrap();
    node.shutdown().await.unwrap();
}

/// What a case is, its query, and what the error must say.
type BadQuery<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

/// Each kind of malformed query gets a 400 whose JSON `error` names the problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_queries_get_a_400_that_names_the_problem() {
    let node = OneNode::start().await;
    let sidecar = start_sidecar(node.subscriber_config("sc-bad-1")).await;
    let long = "x".repeat(257);
    let cases: [BadQuery; 7] = [
        ("missing iss", &[("jti", "t-1")], "missing `iss`"),
        (
            "iat not an integer",
            &[("iss", ISS), ("iat", "yesterday")],
            "`iat` is \"yesterday\", not an integer",
        ),
        (
            "unknown parameter",
            &[("iss", ISS), ("jit", "t-1")],
            "unknown parameter `jit`",
        ),
        (
            "empty value",
            &[("iss", ISS), ("sub", "")],
            "`sub` is empty",
        ),
        (
            "value over 256 bytes",
            &[("iss", ISS), ("jti", &long)],
            "`jti` is 257 bytes, over the limit of 256",
        ),
        (
            "raw api key",
            &[("iss", ISS), ("api_key", "sk_live_abc")],
            "64 lowercase hex",
        ),
        (
            "repeated parameter",
            &[("iss", ISS), ("jti", "a"), ("jti", "b")],
            "`jti` is given more than once",
        ),
    ];
    for (what, params, says) in cases {
        let (code, body) = check(&sidecar, params).await;
        let error = body["error"].as_str().unwrap_or_default();
        assert!(
            code == 400 && error.contains(says),
            "{what}: expected 400 saying {says:?}, got {code} {body}"
        );
    }
    sidecar.shutdown().await.unwrap();
}

/// With the cluster gone past a 300 ms staleness bound, answers say stale: a fail-closed
/// sidecar refuses every token, a fail-open one keeps its local answer. (The sidecars reach the
/// node through a proxy so its links can be cut: see [`cluster_gone`].)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_answers_follow_the_policy_over_http() {
    let node = OneNode::start().await;
    let proxy = Proxy::start("subscriber→node", node.addr.parse().unwrap())
        .await
        .unwrap();
    let config = |id: &str, policy| {
        let mut c = node.subscriber_config(id);
        c.cluster = vec![proxy.addr().to_string()];
        c.staleness_bound = Duration::from_millis(300);
        c.policy = policy;
        c
    };
    let closed = start_sidecar(config("sc-closed-1", StalePolicy::FailClosed)).await;
    let open = start_sidecar(config("sc-open-1", StalePolicy::FailOpen)).await;
    let facts = [("iss", ISS), ("jti", "t-1")];
    for sc in [&closed, &open] {
        sc.subscriber()
            .wait_synced(Duration::from_secs(10))
            .await
            .unwrap();
        let (_, fresh) = check(sc, &facts).await;
        assert_eq!(
            (&fresh["stale"], &fresh["revoked"]),
            (&json!(false), &json!(false))
        );
    }

    cluster_gone(proxy, node).await;
    for sc in [&closed, &open] {
        wait_until("answers turn stale", Duration::from_secs(10), || async {
            check(sc, &facts).await.1["stale"] == true
        })
        .await;
    }
    let (_, c) = check(&closed, &facts).await;
    assert_eq!(
        (&c["stale"], &c["revoked"], &c["status"], &c["policy"]),
        (
            &json!(true),
            &json!(true),
            &json!("allowed"),
            &json!("fail_closed")
        ),
        "{c}"
    );
    assert!(c["staleness_ms"].as_u64().unwrap() > 300, "{c}");
    let (_, o) = check(&open, &facts).await;
    assert_eq!(
        (&o["stale"], &o["revoked"], &o["policy"]),
        (&json!(true), &json!(false), &json!("fail_open")),
        "{o}"
    );
    closed.shutdown().await.unwrap();
    open.shutdown().await.unwrap();
}
