//! The Redis mirror under a bulk import: one node (fsync on), a real `redis-server` on loopback
//! and the mirror following the node into it. Measures, in one run:
//! - the mirror's lag behind the cluster for every delta of a 1M import (10k batches, each
//!   expiring in an hour): from the leader accepting the command to Redis holding it
//!   (p50, p99, max);
//! - its throughput into Redis: revocations per second from the first write until Redis holds
//!   the import's last version, against the cluster's commit rate alone;
//! - a refill of the whole set from a snapshot after Redis is flushed.
//!
//! Run: `cargo bench --bench mirror` (RECALL_BENCH_BULK sets the import, default 1000000;
//! REDIS_SERVER the redis-server binary).

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Creds, env_usize as env};
use recall::mirror::{Mirror, MirrorConfig};
use recall::proto as pb;
use recall::subscriber::SubscriberConfig;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the redis-server when the benchmark ends, however it ends.
struct Redis(std::process::Child);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn redis_version(con: &mut redis::aio::MultiplexedConnection) -> u64 {
    redis::cmd("HGET")
        .arg("recall:mirror")
        .arg("version")
        .query_async::<Option<u64>>(con)
        .await
        .unwrap()
        .unwrap_or(0)
}

async fn wait_redis_at(con: &mut redis::aio::MultiplexedConnection, version: u64) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while redis_version(con).await < version {
        assert!(Instant::now() < deadline, "Redis never reached {version}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn pct(sorted: &[i64], p: f64) -> i64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // RUST_LOG=recall::mirror=info shows the mirror's reconnects and refills on stderr.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    println!(
        "mirror benchmark: {} cores ({}), load average {}",
        common::nproc(),
        common::cpu_model(),
        common::loadavg()
    );
    let bulk = env("RECALL_BENCH_BULK", 1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let bin = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
    let _redis = Redis(
        Command::new(&bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin} ({e}); run scripts/deps.sh")),
    );
    let url = format!("redis://127.0.0.1:{port}/");
    let creds = Creds::tls().unwrap();
    let (node, addr) = common::start_node(&dir.path().join("node"), &creds, |config| {
        config.snapshot_after = 1_000_000;
        config.limits.max_batch = 100_000;
        config.state_machine.max_delta_entries = 4_000_000;
    })
    .await
    .unwrap();
    let dialer = creds.operator_dialer().unwrap();
    let mut client = common::connect(&dialer, &addr).await.unwrap();

    let sub = SubscriberConfig::new(
        vec![addr.clone()],
        "mirror",
        creds.subscriber("mirror").unwrap(),
    );
    let mut config = MirrorConfig::new(sub, url.clone());
    config.record_lags = true;
    let mirror = Mirror::start(config, recall::node::clock::system())
        .await
        .unwrap();
    // FLUSHALL of a million keys takes longer than the crate's default 500 ms response timeout.
    let patient =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(60)));
    let mut con = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection_with_config(&patient)
        .await
        .unwrap();
    wait_redis_at(&mut con, node.sm.with_set(|s| s.version())).await;
    mirror
        .stats()
        .lags_ms
        .lock()
        .unwrap()
        .as_mut()
        .unwrap()
        .clear();

    let batches = common::batches("mirror", bulk, 10_000);
    let cpu = common::CpuMark::now();
    let t = Instant::now();
    let mut version = 0;
    for items in batches {
        version = client
            .revoke(pb::RevokeRequest {
                items,
                actor: "bench".into(),
                reason: String::new(),
                wait: None,
            })
            .await
            .unwrap()
            .into_inner()
            .version;
    }
    let committed = t.elapsed();
    wait_redis_at(&mut con, version).await;
    let mirrored = t.elapsed();
    let cpu = cpu.since();
    let mut lags = mirror.stats().lags_ms.lock().unwrap().take().unwrap();
    lags.sort_unstable();
    let stats = mirror.stats();
    println!(
        "\n{bulk} revocations in 10k batches (expiring in 1 h), one node, mirror in the same process"
    );
    println!(
        "committed in {:.2} s ({:.0}/s); in Redis after {:.2} s ({:.0}/s), {:.0} ms after the last commit",
        committed.as_secs_f64(),
        bulk as f64 / committed.as_secs_f64(),
        mirrored.as_secs_f64(),
        bulk as f64 / mirrored.as_secs_f64(),
        (mirrored - committed).as_secs_f64() * 1e3
    );
    println!(
        "mirror lag per delta ({} deltas, {} transactions): p50 {} ms, p99 {} ms, max {} ms",
        lags.len(),
        stats.writes.load(Ordering::Relaxed),
        pct(&lags, 0.5),
        pct(&lags, 0.99),
        lags.last().unwrap()
    );
    println!(
        "CPU over the import: this process (node + mirror) {:.2} cores, everything else (Redis \
         included) {:.2} cores; peak RSS {}",
        cpu.own_cores,
        cpu.other_cores,
        common::peak_rss()
    );

    // Redis loses everything under the mirror: the next change finds the version gone.
    redis::cmd("FLUSHALL")
        .query_async::<()>(&mut con)
        .await
        .unwrap();
    let t = Instant::now();
    common::revoke_one(&mut client, "after-flush".into(), common::in_one_hour())
        .await
        .unwrap();
    wait_redis_at(&mut con, node.sm.with_set(|s| s.version())).await;
    println!(
        "refill of {} entries from a snapshot after FLUSHALL: {:.2} s ({:.0}/s)",
        bulk + 1,
        t.elapsed().as_secs_f64(),
        (bulk + 1) as f64 / t.elapsed().as_secs_f64()
    );
    mirror.shutdown().await;
    node.shutdown().await.unwrap();
}
