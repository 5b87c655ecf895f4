//! Lite mode that can be trusted, black-box: a `recall sidecar --mode lite` process (Bloom
//! filters only) in front of three `recall server` processes. A Bloom hit is confirmed with a
//! node (`Check` from its exact state) and says so; a repeated hit is answered from the cache
//! until a change lands; a miss never reaches a node (the nodes' `recall_check_calls_total`
//! counts every call); a shard filled past its design rate by deltas is rebuilt from a snapshot
//! (`recall_sidecar_lite_rebuilds_total`); confirmation fails over past a killed node, and with
//! every node gone a hit stays `possibly_revoked` and says the cluster could not be reached.

use recall::proto as pb;
use serde_json::Value;

use crate::fixture::{
    ISSUER, PATIENCE, Procs, converged, eventually, leader, revoke, revoke_range, token,
};
use crate::sidecar_proc::Sidecar;

async fn get(url: &str) -> Result<String, String> {
    let r = reqwest::get(url).await.map_err(|e| e.to_string())?;
    let status = r.status();
    let body = r.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{url}: {status}: {body}"));
    }
    Ok(body)
}

/// The sidecar's answer for the token `jti` of [`ISSUER`], or why there is none.
async fn try_check(sidecar: &str, jti: &str) -> Result<Value, String> {
    let url = reqwest::Url::parse_with_params(
        &format!("http://{sidecar}/v1/check"),
        [("iss", ISSUER), ("jti", jti)],
    )
    .unwrap();
    let body = get(url.as_str()).await?;
    serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))
}

/// The sidecar's answer for the token `jti` of [`ISSUER`].
async fn check(sidecar: &str, jti: &str) -> Value {
    try_check(sidecar, jti).await.expect("the sidecar answers")
}

/// The value of the series `name` (with its labels, as exposed) at `/metrics` of `http`; 0 when
/// it is not exposed yet.
async fn metric(http: &str, series: &str) -> u64 {
    let body = get(&format!("http://{http}/metrics"))
        .await
        .expect("serves /metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |v| v.trim().parse::<f64>().expect("a number") as u64)
}

/// `Check` calls answered by every running node of `procs`.
async fn check_calls(procs: &Procs, running: &[u64]) -> u64 {
    let mut n = 0;
    for &id in running {
        n += metric(procs.http(id), "recall_check_calls_total{rpc=\"check\"}").await;
    }
    n
}

fn summary(a: &Value) -> (bool, &str, &str) {
    (
        a["revoked"].as_bool().expect("revoked"),
        a["status"].as_str().expect("status"),
        a["source"].as_str().expect("source"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lite_sidecar_confirms_hits_with_the_cluster_and_never_sends_a_miss() {
    let mut procs = Procs::start(3, &[]);
    let l = leader(&procs).await;
    let mut lead = procs.client(l);
    let v = lead
        .revoke(revoke_range("lite", 0..50))
        .await
        .unwrap()
        .into_inner()
        .version;
    converged(&procs, v).await;

    let side = Sidecar::spawn(
        &procs,
        "lite-sidecar",
        &["--mode", "lite", "--confirm-timeout-ms", "1500"],
    );
    let sidecar = side.http.clone();
    let all = procs.ids();
    let sidecar_log = || side.log();

    eventually("the lite sidecar to sync", PATIENCE, || async {
        let a = try_check(&sidecar, "never-revoked").await?;
        (a["stale"] == false).then_some(()).ok_or(a.to_string())
    })
    .await;

    // A revoked token: the Bloom hit is confirmed by a node, exactly.
    let before = check_calls(&procs, &all).await;
    let a = check(&sidecar, "lite-0").await;
    assert_eq!(
        summary(&a),
        (true, "revoked", "confirmed_by_cluster"),
        "{a}"
    );
    assert_eq!(a["matches"][0]["exact"], true, "{a}");
    assert_eq!(check_calls(&procs, &all).await, before + 1);

    // Asked again, the confirmation comes from the cache: no call.
    let a = check(&sidecar, "lite-0").await;
    assert_eq!(summary(&a), (true, "revoked", "confirmed_cached"), "{a}");
    assert_eq!(check_calls(&procs, &all).await, before + 1);

    // Tokens never revoked: every one allowed, and only the Bloom hits among them (false
    // positives) reach a node; the misses never do.
    let mut hits = 0;
    for i in 0..1000 {
        let a = check(&sidecar, &format!("never-{i}")).await;
        match summary(&a) {
            (false, "allowed", "local") => {}
            (false, "allowed", "confirmed_by_cluster") => hits += 1,
            other => panic!("never-{i}: {other:?}: {a}"),
        }
    }
    assert!(
        hits < 50,
        "{hits} Bloom hits in 1000 is far over the design rate"
    );
    assert_eq!(check_calls(&procs, &all).await, before + 1 + hits);

    // A lifted token still hits the Bloom filter (it cannot unset bits): the cluster says it is
    // not revoked. Revoked again, the cached "not revoked" does not hide it.
    let lifted = lead
        .lift(pb::LiftRequest {
            keys: token("lite-1").key.into_iter().collect(),
            actor: "tests".into(),
            reason: "lite mode".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .version;
    converged(&procs, lifted).await;
    let a = eventually("the sidecar to apply the lift", PATIENCE, || async {
        let a = check(&sidecar, "lite-1").await;
        (a["revoked"] == false)
            .then_some(a.clone())
            .ok_or(a.to_string())
    })
    .await;
    assert_eq!(
        summary(&a),
        (false, "allowed", "confirmed_by_cluster"),
        "{a}"
    );
    assert_eq!(
        summary(&check(&sidecar, "lite-1").await),
        (false, "allowed", "confirmed_cached")
    );
    let again = lead
        .revoke(revoke(vec![token("lite-1")]))
        .await
        .unwrap()
        .into_inner()
        .version;
    converged(&procs, again).await;
    let a = eventually(
        "the sidecar to apply the new revocation",
        PATIENCE,
        || async {
            let a = check(&sidecar, "lite-1").await;
            (a["revoked"] == true)
                .then_some(a.clone())
                .ok_or(a.to_string())
        },
    )
    .await;
    assert_eq!(
        summary(&a),
        (true, "revoked", "confirmed_by_cluster"),
        "{a}"
    );

    // Deltas fill shards past what the snapshot sized them for (16 fingerprints each at 50
    // entries): the sidecar fetches a snapshot and rebuilds them.
    let mut last = 0;
    for batch in 0..10 {
        last = lead
            .revoke(revoke_range("fill", batch * 1000..(batch + 1) * 1000))
            .await
            .unwrap()
            .into_inner()
            .version;
    }
    converged(&procs, last).await;
    eventually("a fill-triggered rebuild", PATIENCE, || async {
        let n = metric(&sidecar, "recall_sidecar_lite_rebuilds_total").await;
        (n >= 1).then_some(()).ok_or(n.to_string())
    })
    .await;
    assert!(
        sidecar_log().contains("filled past its design false-positive rate"),
        "{}",
        sidecar_log()
    );
    eventually("the rebuilt sidecar to answer", PATIENCE, || async {
        let a = check(&sidecar, "fill-9999").await;
        (summary(&a) == (true, "revoked", "confirmed_by_cluster"))
            .then_some(())
            .ok_or(a.to_string())
    })
    .await;

    // One node gone (not the leader, so the others still vouch for their state): confirmations
    // fail over to the others.
    let l = leader(&procs).await;
    let gone = *all.iter().find(|&&id| id != l).unwrap();
    procs.kill(gone);
    let a = check(&sidecar, "lite-2").await;
    assert_eq!(
        summary(&a),
        (true, "revoked", "confirmed_by_cluster"),
        "{a}"
    );

    // Every node gone: the hit stays possibly revoked (a refusal) and says why.
    for id in all.iter().filter(|&&id| id != gone) {
        procs.kill(*id);
    }
    let a = check(&sidecar, "lite-3").await;
    assert_eq!(
        summary(&a),
        (true, "possibly_revoked", "cluster_unreachable"),
        "{a}"
    );
    assert_eq!(a["matches"][0]["exact"], false, "{a}");
    assert!(
        metric(
            &sidecar,
            "recall_sidecar_confirmations_total{result=\"unreachable\"}"
        )
        .await
            >= 1
    );
    assert!(
        metric(
            &sidecar,
            "recall_sidecar_confirmations_total{result=\"revoked\"}"
        )
        .await
            >= 3
    );
}
