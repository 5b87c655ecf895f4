//! Bearer-token checks per core at the faces proxies call: forward-auth (`GET /v1/auth`) over
//! HTTP keep-alive, and Envoy's gRPC ext_authz, against the claims query (`GET /v1/check`) and
//! `recall.v1.Check` measured the same way in the same run.
//!
//! `recall dev` (authority and sidecar, the release binary) runs pinned to core 0 with `taskset`
//! and one tokio worker (`TOKIO_WORKER_THREADS=1`);
//! the load runs on core 1: `wrk` (from Debian) for HTTP, a tonic client in this process for
//! gRPC. Each figure is requests per second of wall time and per CPU second of the `recall dev`
//! process (read from /proc), the fair "per core" number when the server does not fill its core.
//! The token is the same for every request, as one client's session presents it (its
//! verification is remembered; the revocation check runs every time).
//!
//! Run: `cargo bench --bench faces` (needs `wrk` and `taskset`: `bash scripts/deps.sh`).
//! Environment: `RECALL_BENCH_SECS` per measurement [10], `RECALL_BENCH_CONNS` HTTP
//! connections and gRPC requests in flight [64].

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use recall::proto as pb;
use recall::proto::check_client::CheckClient;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// CPU seconds (user + system) a process has used.
fn cpu_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, s)| s).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

struct Dev(Child);

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A measured rate: per wall second and per CPU second of the server.
struct Rate {
    wall: f64,
    per_cpu: f64,
    cpu_share: f64,
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>9.0}/s  {:>9.0}/CPU-s  (server used {:.0}% of its core)",
            self.wall,
            self.per_cpu,
            self.cpu_share * 100.0
        )
    }
}

fn measured(done: f64, wall: f64, cpu: f64) -> Rate {
    Rate {
        wall: done / wall,
        per_cpu: done / cpu.max(1e-9),
        cpu_share: cpu / wall,
    }
}

/// `wrk` against `url` with `header`: requests per second, and the server's CPU meanwhile.
fn wrk(pid: u32, url: &str, header: Option<&str>, secs: u64, conns: u64) -> anyhow::Result<Rate> {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "1", "wrk", "-t1"])
        .arg(format!("-c{conns}"))
        .arg(format!("-d{secs}s"));
    if let Some(h) = header {
        cmd.args(["-H", h]);
    }
    let (t0, c0) = (Instant::now(), cpu_of(pid));
    let out = cmd
        .arg(url)
        .output()
        .context("running wrk (bash scripts/deps.sh installs it)")?;
    let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_of(pid) - c0);
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("Non-2xx") {
        bail!("wrk saw non-2xx answers: {text}");
    }
    let total: f64 = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse().ok())
        .with_context(|| format!("no request count in wrk's output: {text}"))?;
    Ok(measured(total, wall, cpu))
}

/// `conns` gRPC calls in flight (over 4 channels) for `secs`: calls per second and CPU.
async fn grpc<F, Fut>(pid: u32, secs: u64, conns: u64, call: F) -> Rate
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let done = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + Duration::from_secs(secs);
    let (t0, c0) = (Instant::now(), cpu_of(pid));
    let tasks: Vec<_> = (0..conns as usize)
        .map(|i| {
            let (done, call) = (done.clone(), call.clone());
            tokio::spawn(async move {
                while Instant::now() < stop {
                    assert!(call(i).await, "a check was refused");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_of(pid) - c0);
    measured(done.load(Ordering::Relaxed) as f64, wall, cpu)
}

fn main() -> anyhow::Result<()> {
    let secs = env("RECALL_BENCH_SECS", 10);
    let conns = env("RECALL_BENCH_CONNS", 64);
    let me = std::process::id().to_string();
    Command::new("taskset")
        .args(["-cp", "1", &me])
        .stdout(Stdio::null())
        .status()
        .context("taskset (util-linux)")?;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let (client, peer, http, grpc_port) = (free_port(), free_port(), free_port(), free_port());
    let bin = env!("CARGO_BIN_EXE_recall");
    let child = Command::new("taskset")
        .args(["-c", "0", bin, "dev", "--data-dir"])
        .arg(&data)
        .args(["--listen", &format!("127.0.0.1:{client}")])
        .args(["--peer-listen", &format!("127.0.0.1:{peer}")])
        .args(["--http", &format!("127.0.0.1:{http}")])
        .args(["--grpc", &format!("127.0.0.1:{grpc_port}")])
        .env("RUST_LOG", "warn")
        // One core, one worker: no thread of the server waits for the other on the same core.
        .env("TOKIO_WORKER_THREADS", "1")
        .stdout(Stdio::null())
        .spawn()
        .context("starting recall dev")?;
    let dev = Dev(child);
    let pid = dev.0.id();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let ready = format!("http://127.0.0.1:{http}/readyz");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = reqwest::get(&ready).await
                && r.status().is_success()
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("recall dev was not ready within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::Ok(())
    })?;
    let out = Command::new(bin)
        .args(["token", "mint", "--jti", "bench-1", "--ttl", "1h", "--dir"])
        .arg(data.join("dev-issuer"))
        .output()?;
    let token = String::from_utf8(out.stdout)?.trim().to_string();
    if token.is_empty() {
        bail!(
            "recall token mint: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let bearer = format!("Authorization: Bearer {token}");
    println!(
        "faces: recall dev pinned to core 0, load on core 1; {secs} s each, {conns} connections \
         / calls in flight; load average {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let base = format!("http://127.0.0.1:{http}");
    let auth = wrk(pid, &format!("{base}/v1/auth"), Some(&bearer), secs, conns)?;
    let query = format!("{base}/v1/check?iss=https://login.example&jti=bench-1&sub=alice&iat=1");
    let claims = wrk(pid, &query, None, secs, conns)?;
    println!("HTTP forward-auth  /v1/auth (bearer)   {auth}");
    println!("HTTP claims query  /v1/check           {claims}");

    let grpc_addr = format!("http://127.0.0.1:{grpc_port}");
    rt.block_on(async {
        let mut ext = Vec::new();
        let mut chk = Vec::new();
        for _ in 0..4 {
            let ch = tonic::transport::Endpoint::from_shared(grpc_addr.clone())?
                .connect()
                .await?;
            ext.push(AuthorizationClient::new(ch.clone()));
            chk.push(CheckClient::new(ch));
        }
        let request = CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(Request {
                    http: Some(HttpRequest {
                        method: "GET".into(),
                        path: "/".into(),
                        headers: [("authorization".to_string(), format!("Bearer {token}"))].into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        };
        let ext_rate = grpc(pid, secs, conns, move |i| {
            let mut c = ext[i % ext.len()].clone();
            let req = request.clone();
            async move {
                let r = c.check(req).await.unwrap().into_inner();
                r.status.is_some_and(|s| s.code == 0)
            }
        })
        .await;
        let facts = pb::CheckRequest {
            facts: Some(pb::TokenFacts {
                iss: "https://login.example".into(),
                jti: Some("bench-1".into()),
                sub: Some("alice".into()),
                iat: Some(1),
                ..Default::default()
            }),
        };
        let chk_rate = grpc(pid, secs, conns, move |i| {
            let mut c = chk[i % chk.len()].clone();
            let req = facts.clone();
            async move {
                let r = c.check(req).await.unwrap().into_inner();
                r.verdict == pb::Verdict::Allowed as i32
            }
        })
        .await;
        println!("gRPC ext_authz     Authorization/Check {ext_rate}");
        println!("gRPC claims        recall.v1.Check     {chk_rate}");
        anyhow::Ok(())
    })?;
    Ok(())
}
