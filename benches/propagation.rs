//! End-to-end propagation on loopback: one node (fsync on) and N embedded subscribers, each on
//! its own stream. Measures, in one run:
//! - one revocation from the request to "applied" at all N subscribers (p50, p99, max), N = 1,
//!   10, 100, 1000 (RECALL_BENCH_NS, comma-separated), against the request-to-commit latency
//!   alone as the baseline, and the process CPU time per delta per subscriber;
//! - the same through a tier of relays (RECALL_BENCH_RELAYED, e.g. `4x250,10x1000`: R relays
//!   following the node, M subscribers following each), against N = R × M subscribers on the
//!   node directly in the same run when that N was measured;
//! - 1M revocations (imported in 10k batches) until all 16 subscribers have applied them.
//!
//! Every link is mutual TLS: the node, the operator and each subscriber have their own
//! certificate from a CA made in memory for the run.
//!
//! Run: `cargo bench --bench propagation` (RECALL_BENCH_WAVES sets the samples per N, default
//! 200; RECALL_BENCH_BULK the bulk size, default 1000000; RECALL_BENCH_RELAYED, default none).

mod common;

use std::time::{Duration, Instant};

use common::{Creds, env_usize as env};
use recall::proto as pb;
use recall::proto::operator_client::OperatorClient;
use recall::relay::{Relay, RelayConfig};
use recall::subscriber::{Subscriber, SubscriberConfig};

fn token(i: u64, tag: &str) -> pb::Revocation {
    pb::Revocation {
        key: Some(pb::RevocationKey {
            kind: pb::Kind::Token as i32,
            namespace: "https://bench".into(),
            value: format!("{tag}-{i}"),
        }),
        expires_at_ms: None,
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn fmt(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

async fn subscribers(creds: &Creds, addr: &str, n: usize) -> Vec<Subscriber> {
    let upstreams = vec![addr.to_string(); n];
    subscribers_of(creds, addr, &upstreams, "bench").await
}

/// One subscriber following each of `upstreams` (nodes or relays), synced.
async fn subscribers_of(
    creds: &Creds,
    node: &str,
    upstreams: &[String],
    tag: &str,
) -> Vec<Subscriber> {
    let mut subs = Vec::new();
    for (i, upstream) in upstreams.iter().enumerate() {
        let id = format!("{tag}-{i}");
        let security = creds.subscriber(&id).unwrap();
        let mut config = SubscriberConfig::new(vec![node.to_string()], id, security);
        config.upstream = vec![upstream.clone()];
        // No sightings reports: each would hold a second connection, and the process has
        // 20,000 file descriptors for every subscriber's both ends.
        config.sightings.interval = Duration::ZERO;
        subs.push(Subscriber::start(config).await.unwrap());
    }
    for s in &subs {
        s.wait_synced(Duration::from_secs(30)).await.unwrap();
    }
    subs
}

async fn wave(
    client: &mut OperatorClient<tonic::transport::Channel>,
    subs: &[Subscriber],
    i: u64,
) -> (Duration, Duration) {
    let mut watches: Vec<_> = subs.iter().map(|s| s.watch()).collect();
    let t = Instant::now();
    let r = client
        .revoke(pb::RevokeRequest {
            items: vec![token(i, "wave")],
            actor: "bench".into(),
            reason: String::new(),
            wait: None,
        })
        .await
        .unwrap()
        .into_inner();
    let commit = t.elapsed();
    for w in &mut watches {
        w.wait_for(|s| s.version >= r.version).await.unwrap();
    }
    (commit, t.elapsed())
}

/// `waves` single revocations to `subs`; their latencies and CPU as one line of the table.
async fn waves_at(
    client: &mut OperatorClient<tonic::transport::Channel>,
    subs: &[Subscriber],
    waves: usize,
    next: &mut u64,
) -> String {
    let (mut commits, mut alls) = (Vec::new(), Vec::new());
    let cpu = common::cpu_secs();
    for _ in 0..waves {
        *next += 1;
        let (c, a) = wave(client, subs, *next).await;
        commits.push(c);
        alls.push(a);
    }
    // Node, relays, sessions and subscribers share the process: the CPU of one delta reaching
    // one subscriber, every hop and the commit included.
    let per = (common::cpu_secs() - cpu) / (waves * subs.len()) as f64;
    commits.sort();
    alls.sort();
    format!(
        "{:>10} {:>10}  {:>10} {:>10} {:>10}  cpu/delta/subscriber {:.1} us",
        fmt(pct(&commits, 0.5)),
        fmt(pct(&commits, 0.99)),
        fmt(pct(&alls, 0.5)),
        fmt(pct(&alls, 0.99)),
        fmt(*alls.last().unwrap()),
        per * 1e6
    )
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "propagation benchmark: {} cores, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.trim()
    );
    let waves = env("RECALL_BENCH_WAVES", 200).max(1);
    let dir = tempfile::tempdir().unwrap();
    let creds = Creds::tls().unwrap();
    let (node, addr) = common::start_node(dir.path(), &creds, |config| {
        config.snapshot_after = 1_000_000;
        config.limits.max_batch = 100_000;
        config.state_machine.max_delta_entries = 4_000_000;
    })
    .await
    .unwrap();
    let dialer = creds.operator_dialer().unwrap();
    let mut client = common::connect(&dialer, &addr).await.unwrap();

    println!("\none revocation, request -> applied at every subscriber ({waves} samples each)");
    println!(
        "{:>5}  {:>10} {:>10}  {:>10} {:>10} {:>10}",
        "N", "commit p50", "commit p99", "all p50", "all p99", "all max"
    );
    let mut next = 0u64;
    let ns: Vec<usize> = std::env::var("RECALL_BENCH_NS")
        .unwrap_or_else(|_| "1,10,100,1000".into())
        .split(',')
        .map(|n| {
            n.trim()
                .parse()
                .expect("RECALL_BENCH_NS: comma-separated counts")
        })
        .collect();
    for n in ns {
        let subs = subscribers(&creds, &addr, n).await;
        let line = waves_at(&mut client, &subs, waves, &mut next).await;
        println!("{n:>5}  {line}");
        for s in subs {
            s.shutdown().await;
        }
    }

    let relayed: Vec<(usize, usize)> = std::env::var("RECALL_BENCH_RELAYED")
        .unwrap_or_default()
        .split(',')
        .filter(|t| !t.trim().is_empty())
        .map(|t| {
            let (r, m) = t
                .trim()
                .split_once('x')
                .expect("RECALL_BENCH_RELAYED: RxM,...");
            (r.parse().unwrap(), m.parse().unwrap())
        })
        .collect();
    for (r, m) in relayed {
        let mut relays = Vec::new();
        for k in 0..r {
            let id = format!("relay-{k}");
            let config = SubscriberConfig::new(vec![addr.clone()], &id, creds.relay(&id).unwrap());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let relay = Relay::start(RelayConfig::new(config), listener)
                .await
                .unwrap();
            relay
                .subscriber()
                .wait_synced(Duration::from_secs(30))
                .await
                .unwrap();
            relays.push(relay);
        }
        let upstreams: Vec<String> = (0..r * m)
            .map(|i| relays[i % r].addr().to_string())
            .collect();
        let subs = subscribers_of(&creds, &addr, &upstreams, &format!("behind-{r}x{m}")).await;
        let line = waves_at(&mut client, &subs, waves, &mut next).await;
        println!("{:>5}  {line}  ({r} relays x {m} subscribers)", r * m);
        for s in subs {
            s.shutdown().await;
        }
        for relay in relays {
            relay.shutdown().await;
        }
    }

    let bulk = env("RECALL_BENCH_BULK", 1_000_000) as u64;
    let subs = subscribers(&creds, &addr, 16).await;
    let mut watches: Vec<_> = subs.iter().map(|s| s.watch()).collect();
    let t = Instant::now();
    let mut version = 0;
    let mut i = 0;
    while i < bulk {
        let n = (bulk - i).min(10_000);
        let items = (i..i + n).map(|k| token(k, "bulk")).collect();
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
        i += n;
    }
    let committed = t.elapsed();
    for w in &mut watches {
        w.wait_for(|s| s.version >= version).await.unwrap();
    }
    let all = t.elapsed();
    println!(
        "\n{bulk} revocations in 10k batches: committed in {:.2} s ({:.0}/s); applied at all 16 subscribers after {:.2} s",
        committed.as_secs_f64(),
        bulk as f64 / committed.as_secs_f64(),
        all.as_secs_f64()
    );
    for s in subs {
        s.shutdown().await;
    }
    node.shutdown().await.unwrap();
}
