//! Check throughput of one sidecar: HTTP `/v1/check` and gRPC `CheckBatch`, against the embedded
//! subscriber's own `check` in the same run (what the servers add on top of the filter). The
//! clients run in the same process, so "per CPU second" counts client and server together: the
//! server alone does better.
//!
//! The sidecar follows the node over mutual TLS; its check APIs are plaintext on loopback (the
//! default, `check_tls: None`), as measured here.
//!
//! Run: `cargo bench --bench sidecar` (RECALL_BENCH_SECS per measurement, default 3).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Creds, cpu_secs};
use recall::proto as pb;
use recall::proto::check_client::CheckClient;
use recall::sidecar::{RunningSidecar, SidecarConfig};
use recall::subscriber::SubscriberConfig;
use tokio::net::TcpListener;

/// Runs `tasks` copies of `one` (each returns how many checks it did) for `secs`; checks per
/// second and per CPU second.
async fn measure<F, Fut>(tasks: usize, secs: u64, one: F) -> (f64, f64)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = u64> + Send,
{
    let done = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + Duration::from_secs(secs);
    let (t0, c0) = (Instant::now(), cpu_secs());
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (done, one) = (done.clone(), one.clone());
            tokio::spawn(async move {
                while Instant::now() < stop {
                    done.fetch_add(one().await, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    let n = done.load(Ordering::Relaxed) as f64;
    (
        n / t0.elapsed().as_secs_f64(),
        n / (cpu_secs() - c0).max(1e-9),
    )
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let secs: u64 = std::env::var("RECALL_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("sidecar check throughput: load average {}", load.trim());
    let dir = tempfile::tempdir().unwrap();
    let creds = Creds::tls().unwrap();
    let (_node, addr) = common::start_node(dir.path(), &creds, |_| {})
        .await
        .unwrap();
    let mut op = common::connect(&creds.operator_dialer().unwrap(), &addr)
        .await
        .unwrap();
    let items: Vec<pb::Revocation> = (0..100_000)
        .map(|i| pb::Revocation {
            key: Some(pb::RevocationKey {
                kind: pb::Kind::Token as i32,
                namespace: "https://bench".into(),
                value: format!("t{i}"),
            }),
            expires_at_ms: None,
        })
        .collect();
    op.revoke(pb::RevokeRequest {
        items,
        actor: "bench".into(),
        reason: String::new(),
        wait: None,
    })
    .await
    .unwrap();

    let (http, grpc) = (
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
    );
    let id = "bench-sidecar";
    let security = creds.subscriber(id).unwrap();
    let mut sc = SidecarConfig::new(SubscriberConfig::new(vec![addr.clone()], id, security));
    sc.http_listen = http.local_addr().unwrap().to_string();
    sc.grpc_listen = Some(grpc.local_addr().unwrap().to_string());
    let sidecar = Arc::new(RunningSidecar::start(sc, http, Some(grpc)).await.unwrap());
    sidecar
        .subscriber()
        .wait_synced(Duration::from_secs(30))
        .await
        .unwrap();

    println!("{:<34} {:>14} {:>16}", "path", "checks/s", "checks/CPU-s");
    let s = sidecar.clone();
    let (rate, per_cpu) = measure(1, secs, move || {
        let s = s.clone();
        async move {
            for i in 0..1000u64 {
                let jti = format!("x{i}");
                let facts = recall_core::TokenFacts {
                    iss: "https://bench",
                    jti: Some(&jti),
                    ..Default::default()
                };
                std::hint::black_box(s.subscriber().check(&facts));
            }
            1000
        }
    })
    .await;
    println!(
        "{:<34} {:>14.0} {:>16.0}",
        "baseline: embedded check (1 task)", rate, per_cpu
    );

    let url = format!(
        "http://{}/v1/check?iss=https://bench&jti=t42",
        sidecar.http_addr()
    );
    let client = reqwest::Client::new();
    let (rate, per_cpu) = measure(16, secs, move || {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let r = client.get(&url).send().await.unwrap();
            assert!(r.status().is_success());
            r.bytes().await.unwrap();
            1
        }
    })
    .await;
    println!(
        "{:<34} {:>14.0} {:>16.0}",
        "HTTP GET /v1/check (16 clients)", rate, per_cpu
    );

    let grpc_addr = format!("http://{}", sidecar.grpc_addr().unwrap());
    let check = CheckClient::connect(grpc_addr).await.unwrap();
    let batch: Vec<pb::TokenFacts> = (0..1000)
        .map(|i| pb::TokenFacts {
            iss: "https://bench".into(),
            jti: Some(format!("t{}", i * 7)),
            ..Default::default()
        })
        .collect();
    let (rate, per_cpu) = measure(4, secs, move || {
        let (mut check, batch) = (check.clone(), batch.clone());
        async move {
            let r = check
                .check_batch(pb::CheckBatchRequest { facts: batch })
                .await
                .unwrap();
            r.into_inner().replies.len() as u64
        }
    })
    .await;
    println!(
        "{:<34} {:>14.0} {:>16.0}",
        "gRPC CheckBatch x1000 (4 clients)", rate, per_cpu
    );
}
