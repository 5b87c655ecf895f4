//! `/metrics` as an operator's monitoring sees it: three `recall server` processes and a
//! `recall sidecar` process, scraped by a real Prometheus (Debian's, installed by
//! `scripts/deps.sh`). After a revocation and a check, Prometheus answers queries for the
//! versions, the subscriber, the commit and wave histograms and the check verdicts, and
//! `promtool check metrics` accepts every exposition as it is served.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::fixture::{ISSUER, PATIENCE, Procs, converged, eventually, leader, revoke_range};
use crate::sidecar_proc::{Killed, Sidecar, free_addr};

fn installed(binary: &str) -> String {
    for dir in ["/usr/bin", "/usr/local/bin", "/bin"] {
        let p = Path::new(dir).join(binary);
        if p.exists() {
            return p.display().to_string();
        }
    }
    panic!("{binary} is not installed: run `bash scripts/deps.sh` (bash scripts/test.sh does)")
}

async fn get(url: &str) -> Result<String, String> {
    let r = reqwest::get(url).await.map_err(|e| e.to_string())?;
    let status = r.status();
    let body = r.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{url}: {status}: {body}"));
    }
    Ok(body)
}

/// `promtool check metrics` on `exposition`: its complaints, if any.
fn promtool(exposition: &str) -> Result<(), String> {
    use std::io::Write;
    let mut child = Command::new(installed("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(exposition.as_bytes())
        .expect("writes the exposition");
    let out = child.wait_with_output().expect("promtool ends");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The value of the one series `query` returns in Prometheus at `api`.
async fn query(api: &str, query: &str) -> Result<f64, String> {
    let url = reqwest::Url::parse_with_params(&format!("{api}/api/v1/query"), [("query", query)])
        .map_err(|e| e.to_string())?;
    let r = reqwest::get(url).await.map_err(|e| e.to_string())?;
    let body: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
    let result = &body["data"]["result"];
    match result.as_array().map(|a| a.as_slice()) {
        Some([one]) => one["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{query}: no value in {one}")),
        _ => Err(format!("{query}: expected one series, got {body}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_every_node_and_sidecar_and_answers_queries() {
    let procs = Procs::start(3, &[]);
    let l = leader(&procs).await;
    let mut lead = procs.client(l);
    let v = lead
        .revoke(revoke_range("metrics", 0..3))
        .await
        .unwrap()
        .into_inner()
        .version;
    converged(&procs, v).await;

    // A real sidecar process, following every node.
    let root = tempfile::tempdir().unwrap();
    let sidecar = Sidecar::spawn(&procs, "metrics-sidecar", &[]);
    let sidecar_http = sidecar.http.clone();
    let check = format!("http://{sidecar_http}/v1/check?iss={ISSUER}&jti=metrics-1");
    eventually("the synced sidecar to answer revoked", PATIENCE, || async {
        let body = get(&check).await?;
        (body.contains("\"revoked\":true") && body.contains("\"stale\":false"))
            .then_some(())
            .ok_or(body)
    })
    .await;

    // A wave that reaches the subscribed sidecar.
    let v = lead
        .revoke(revoke_range("wave", 0..1))
        .await
        .unwrap()
        .into_inner()
        .version;
    let check = format!("http://{sidecar_http}/v1/check?iss={ISSUER}&jti=wave-0");
    eventually("the sidecar to apply the wave", PATIENCE, || async {
        let body = get(&check).await?;
        (body.contains("\"revoked\":true") && body.contains("\"stale\":false"))
            .then_some(())
            .ok_or(body)
    })
    .await;

    // Every exposition passes promtool as served.
    let mut targets = vec![sidecar_http.clone()];
    targets.extend(procs.ids().iter().map(|n| procs.http(*n).to_string()));
    for t in &targets {
        let body = get(&format!("http://{t}/metrics")).await.unwrap();
        if let Err(e) = promtool(&body) {
            panic!("promtool check metrics refused {t}/metrics: {e}\n{body}");
        }
    }
    let leader_metrics = get(&format!("http://{}/metrics", procs.http(l)))
        .await
        .unwrap();
    assert!(
        leader_metrics.contains("recall_raft_is_leader 1"),
        "{leader_metrics}"
    );
    let sidecar_metrics = get(&format!("http://{sidecar_http}/metrics"))
        .await
        .unwrap();
    assert!(
        sidecar_metrics.contains("recall_checks_total{face=\"claims\",verdict=\"revoked\"}"),
        "{sidecar_metrics}"
    );

    // A real Prometheus scraping all four.
    let web = free_addr();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n  - job_name: \
         recall-nodes\n    static_configs:\n      - targets: [{}]\n  - job_name: recall-sidecars\n    \
         static_configs:\n      - targets: ['{sidecar_http}']\n",
        targets[1..]
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    std::fs::write(root.path().join("prometheus.yml"), config).unwrap();
    let _prometheus = Killed(
        Command::new(installed("prometheus"))
            .arg(format!(
                "--config.file={}",
                root.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                root.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(root.path().join("prometheus.log")).unwrap())
            .spawn()
            .expect("spawns prometheus"),
    );
    let api = format!("http://{web}");
    let v = v as f64;
    for (q, want) in [
        ("count(up == 1)", Some(4.0)),
        (
            "min(recall_last_change_version{job=\"recall-nodes\"})",
            Some(v),
        ),
        ("recall_sidecar_applied_version >= bool 0", Some(1.0)),
        ("recall_sidecar_synced", Some(1.0)),
        ("sum(recall_subscribers)", Some(1.0)),
        ("sum(recall_raft_is_leader)", Some(1.0)),
        ("sum(recall_commit_seconds_count) > 0", None),
        ("sum(recall_wave_seconds_count) > 0", None),
        (
            "sum(recall_checks_total{face=\"claims\",verdict=\"revoked\"}) > 0",
            None,
        ),
        ("max(recall_revocations)", Some(4.0)),
    ] {
        let got = eventually(&format!("Prometheus to answer {q}"), PATIENCE, || {
            let api = api.clone();
            async move {
                let got = query(&api, q).await?;
                match want {
                    Some(w) if (got - w).abs() > f64::EPSILON => Err(format!("{q} = {got}")),
                    _ => Ok(got),
                }
            }
        })
        .await;
        assert!(got.is_finite(), "{q} = {got}");
    }
    let sidecar_version = query(&api, "recall_sidecar_applied_version").await.unwrap();
    assert!(
        sidecar_version >= v,
        "the sidecar applied {sidecar_version}, the revocation is {v}"
    );
}
