//! The cost of mutual TLS (issue 10), measured in one run against a plaintext transport that only
//! this benchmark builds (the `bench-plaintext` feature adds `Security::Plaintext`: no TLS, no
//! identities, no authorization).
//!
//! Each round starts a fresh 3-node cluster (in this process, each node on its own 2-worker
//! tokio runtime; 127.0.0.1; redb in a temporary directory, fsync on commit) once with mutual
//! TLS on every link and once in plaintext, the order alternating between rounds (mTLS then
//! plaintext, then plaintext then mTLS, ...) so that drift in the machine's load falls on both.
//! In each cluster it measures:
//!
//! 1. import throughput: one Import client stream of fresh revocations in chunks, to the leader
//!    (revocations/s, and CPU seconds of the whole process per 100k revocations);
//! 2. single-revocation latency: one-key Revoke calls one after the other, to the leader, p50
//!    and p99 (not to a follower: the plaintext build cannot forward writes, see below);
//! 3. one revocation applied at 10 subscribers (embedded `Subscriber`s, the core of a sidecar,
//!    attached round-robin to the three nodes): from sending the Revoke until every subscriber
//!    has applied its version, and until the Revoke's reply when it asks to wait for convergence
//!    (`wait`), p50 and p99;
//!
//! and, for information, a Status round trip (`local_only`) on an open connection, and a new
//! operator connection (TCP and, with TLS, the handshake) with its first call. Then it prints
//! the medians, p99s and mTLS/plaintext ratios (target: within 10%): percentiles of every
//! sample of a transport, with each cluster's own and the ratio of their medians in the notes
//! (one slow cluster moves a pooled p99 a lot).
//!
//! Writes sent to a follower are not measured: on the plaintext build the leader refuses every
//! forwarded write (it parses the write's actor as a SPIFFE ID, and a caller without identity
//! has none), and the follower retries until its write timeout. The peer links' TLS is still in
//! every measurement: a commit needs a follower's AppendEntries reply, and most of the
//! subscribers are attached to followers.
//!
//! Run: `cargo bench --bench transport --features bench-plaintext` (results in BENCHMARKS.md).
//! Environment (defaults in brackets): `RECALL_BENCH_ROUNDS` rounds, each one mTLS and one
//! plaintext cluster [6]; `RECALL_BENCH_IMPORT` revocations per import run [200000];
//! `RECALL_BENCH_CHUNK` items per Import chunk [1000]; `RECALL_BENCH_IMPORT_RUNS` import runs
//! per cluster [2]; `RECALL_BENCH_LATENCY` sequential revocations to the leader per cluster
//! [400]; `RECALL_BENCH_WAVES` revocations waited for at the subscribers per cluster [100];
//! `RECALL_BENCH_SIDECARS` subscribers [10]; `RECALL_BENCH_RTT` Status round trips per cluster
//! [500]; `RECALL_BENCH_CONNECTS` new connections per cluster [50]; `RECALL_BENCH_LOG=<filter>`
//! prints the nodes' tracing to stderr.

mod common;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use common::{
    ACTOR, ClusterNode, CpuMark, Creds, Failures, Target, batches, cpu_model, env_usize,
    import_stream, in_one_hour, loadavg, median, ms, nproc, peak_rss, percentile, rate, revocation,
    sequential_latency,
};
use recall::node::rate::WriteRate;
use recall::proto as pb;
use recall::proto::operator_client::OperatorClient;
use recall::subscriber::{Subscriber, SubscriberConfig};
use tonic::transport::Channel;

/// Nodes per cluster.
const NODES: u64 = 3;
/// How long a wave may take before the benchmark gives up on it.
const WAVE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a Revoke with `wait` waits for convergence, at most.
const CONVERGENCE_WAIT_MS: u32 = 5_000;

/// The run's size, from the environment.
#[derive(Clone, Copy, Debug)]
struct Settings {
    rounds: usize,
    import_n: usize,
    chunk: usize,
    import_runs: usize,
    latency_n: usize,
    waves: usize,
    sidecars: usize,
    connects: usize,
    rtts: usize,
}

impl Settings {
    fn from_env() -> Self {
        Self {
            rounds: env_usize("RECALL_BENCH_ROUNDS", 6).max(1),
            import_n: env_usize("RECALL_BENCH_IMPORT", 200_000).max(1),
            chunk: env_usize("RECALL_BENCH_CHUNK", 1_000).max(1),
            import_runs: env_usize("RECALL_BENCH_IMPORT_RUNS", 2).max(1),
            latency_n: env_usize("RECALL_BENCH_LATENCY", 400).max(2),
            waves: env_usize("RECALL_BENCH_WAVES", 100).max(1),
            sidecars: env_usize("RECALL_BENCH_SIDECARS", 10).max(1),
            connects: env_usize("RECALL_BENCH_CONNECTS", 50),
            rtts: env_usize("RECALL_BENCH_RTT", 500),
        }
    }
}

/// The two transports compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Tls,
    Plain,
}

impl Mode {
    fn creds(self) -> anyhow::Result<Creds> {
        match self {
            Mode::Tls => Creds::tls(),
            Mode::Plain => Ok(Creds::Plaintext),
        }
    }
}

/// Everything measured with one transport, over every round.
#[derive(Default)]
struct Results {
    /// Revocations/s, one per import run.
    import_rates: Vec<f64>,
    /// CPU seconds of the process per 100k imported revocations, one per import run.
    import_cpu: Vec<f64>,
    /// Cores other processes used during the import runs.
    import_others: Vec<f64>,
    /// Status (`local_only`) on an open connection.
    rtt: Vec<Duration>,
    /// New connection + first Status.
    connect: Vec<Duration>,
    /// Sequential one-key Revoke to the leader, every sample.
    leader: Vec<Duration>,
    /// Revoke sent → applied at every subscriber.
    applied: Vec<Duration>,
    /// Revoke sent → reply, with `wait` for convergence.
    converged: Vec<Duration>,
    /// Per cluster: the p50 and p99 of each latency measure (leader, applied, converged).
    per_cluster: Vec<[[Duration; 2]; 3]>,
    /// Waves whose reply did not report every subscriber converged.
    not_converged: usize,
    /// Clusters that had an election after the first leader.
    elections: usize,
    failures: Failures,
}

fn main() -> anyhow::Result<()> {
    if let Ok(filter) = std::env::var("RECALL_BENCH_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let s = Settings::from_env();
    let load_start = loadavg();
    println!(
        "recall transport benchmark: the cost of mutual TLS against plaintext, 3-node clusters \
         on 127.0.0.1, redb with fsync on commit"
    );
    println!(
        "machine: nproc {}, {}, load average {load_start} (1/5/15 min) at start",
        nproc(),
        cpu_model()
    );
    println!("settings: {s:?}");
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("client")
        .enable_all()
        .build()?;
    let started = Instant::now();
    let (mut tls, mut plain) = (Results::default(), Results::default());
    for round in 0..s.rounds {
        let order = if round % 2 == 0 {
            [Mode::Tls, Mode::Plain]
        } else {
            [Mode::Plain, Mode::Tls]
        };
        for mode in order {
            let out = if mode == Mode::Tls {
                &mut tls
            } else {
                &mut plain
            };
            let creds = mode.creds()?;
            println!(
                "\nround {}/{}, {} (load average {}):",
                round + 1,
                s.rounds,
                creds.label(),
                loadavg()
            );
            if let Err(e) = cluster_run(&creds, &s, round, &client_rt, out) {
                println!(
                    "  the {} cluster of round {} failed",
                    creds.label(),
                    round + 1
                );
                out.failures.record(e);
            }
        }
    }
    client_rt.shutdown_timeout(Duration::from_secs(5));
    println!(
        "\ndone in {:.0} s; load average {load_start} at the start, {} at the end; peak memory {}",
        started.elapsed().as_secs_f64(),
        loadavg(),
        peak_rss()
    );
    report(&s, &tls, &plain);
    Ok(())
}

/// One cluster with `creds`: starts it, measures everything, stops it.
fn cluster_run(
    creds: &Creds,
    s: &Settings,
    round: usize,
    client_rt: &tokio::runtime::Runtime,
    out: &mut Results,
) -> anyhow::Result<()> {
    let root = tempfile::Builder::new()
        .prefix("recall-bench-transport-")
        .tempdir()?;
    // The write rate limit is not what this benchmark measures.
    let nodes = common::start_cluster(root.path(), creds, NODES, |config| {
        config.write_rate = WriteRate {
            items_per_second: 1 << 40,
            burst: 1 << 40,
        };
    })?;
    let tag = format!("r{round}-{}", creds.label());
    let result = client_rt.block_on(measure(creds, &nodes, s, &tag, out));
    common::stop_cluster(nodes);
    result
}

async fn measure(
    creds: &Creds,
    nodes: &[ClusterNode],
    s: &Settings,
    tag: &str,
    out: &mut Results,
) -> anyhow::Result<()> {
    let dialer = creds.operator_dialer()?;
    let members = common::targets(nodes, &dialer)?;
    let started = Instant::now();
    let (leader, _, term) = common::roles(&members).await?;
    println!(
        "  leader node {} after {:.2} s (term {term})",
        leader.id,
        started.elapsed().as_secs_f64()
    );

    // Warm every path up (the first write also fixes the cluster's fingerprint seed).
    sequential_latency(&leader, &format!("{tag}-warm-leader"), 50).await?;
    let mut client = leader.connect().await?;
    import_stream(
        &mut client,
        batches(&format!("{tag}-warm-import"), s.chunk * 10, s.chunk),
    )
    .await?;
    common::wait_applied(&members, &leader).await?;

    // For information: a round trip on an open connection, and a new connection's first one.
    let status = pb::StatusRequest {
        local_only: true,
        ..Default::default()
    };
    let mut rtts = Vec::with_capacity(s.rtts);
    for i in 0..s.rtts + 50 {
        let t = Instant::now();
        client.status(status).await?;
        if i >= 50 {
            rtts.push(t.elapsed());
        }
    }
    let mut connects = Vec::with_capacity(s.connects);
    for _ in 0..s.connects {
        let t = Instant::now();
        leader.connect().await?.status(status).await?;
        connects.push(t.elapsed());
    }
    rtts.sort_unstable();
    connects.sort_unstable();
    println!(
        "  Status round trip: p50 {}, p99 {}; new connection + first Status: p50 {}, p99 {}",
        ms(percentile(&rtts, 0.5)),
        ms(percentile(&rtts, 0.99)),
        ms(percentile(&connects, 0.5)),
        ms(percentile(&connects, 0.99))
    );
    out.rtt.extend(rtts);
    out.connect.extend(connects);

    // 1. Import throughput.
    for run in 0..s.import_runs {
        common::wait_applied(&members, &leader).await?;
        let work = batches(&format!("{tag}-import-{run}"), s.import_n, s.chunk);
        let mut client = leader.connect().await?;
        let term = common::max_term(&members).await;
        let mark = CpuMark::now();
        let (elapsed, added) = match import_stream(&mut client, work).await {
            Ok(done) => done,
            Err(e) => {
                println!("  import run {} failed", run + 1);
                out.failures.record(e);
                continue;
            }
        };
        let used = mark.since();
        if added != s.import_n as u64 {
            bail!("import: {added} of {} fresh keys added", s.import_n);
        }
        let r = s.import_n as f64 / elapsed.as_secs_f64();
        let cpu = used.own_secs / s.import_n as f64 * 1e5;
        let new_term = common::max_term(&members).await;
        println!(
            "  import {} of {} in {}-item chunks: {:.2} s = {}; {cpu:.2} CPU-s per 100k; bench \
             {:.2} cores, others {:.2} cores{}",
            run + 1,
            s.import_n,
            s.chunk,
            elapsed.as_secs_f64(),
            rate(r),
            used.own_cores,
            used.other_cores,
            if new_term != term {
                format!("; ELECTION (term {term} → {new_term})")
            } else {
                String::new()
            }
        );
        out.import_rates.push(r);
        out.import_cpu.push(cpu);
        out.import_others.push(used.other_cores);
    }

    // 2. Single-revocation latency.
    common::wait_applied(&members, &leader).await?;
    let (lat_leader, failed) =
        sequential_latency(&leader, &format!("{tag}-latency-leader"), s.latency_n).await?;
    out.failures.add(failed);
    println!(
        "  Revoke 1 key → leader ({}): p50 {}, p99 {}",
        lat_leader.len(),
        ms(percentile(&lat_leader, 0.5)),
        ms(percentile(&lat_leader, 0.99)),
    );

    // 3. One revocation applied at every subscriber.
    let subs = start_subscribers(creds, nodes, s.sidecars).await?;
    let waves = waves(&leader, &subs, s.waves, tag).await;
    for sub in subs {
        sub.shutdown().await;
    }
    let (mut applied, mut converged, not_converged) = waves?;
    applied.sort_unstable();
    converged.sort_unstable();
    println!(
        "  1 key at {} subscribers ({} waves): applied at all p50 {}, p99 {}; reply with wait \
         p50 {}, p99 {}{}",
        s.sidecars,
        applied.len(),
        ms(percentile(&applied, 0.5)),
        ms(percentile(&applied, 0.99)),
        ms(percentile(&converged, 0.5)),
        ms(percentile(&converged, 0.99)),
        if not_converged > 0 {
            format!("; {not_converged} replies NOT converged")
        } else {
            String::new()
        }
    );
    out.not_converged += not_converged;

    let end_term = common::max_term(&members).await;
    if end_term != term {
        println!("  ELECTION during this cluster's run: term {term} → {end_term}");
        out.elections += 1;
    }
    let p50_p99 = |sorted: &[Duration]| [percentile(sorted, 0.5), percentile(sorted, 0.99)];
    out.per_cluster
        .push([p50_p99(&lat_leader), p50_p99(&applied), p50_p99(&converged)]);
    out.leader.extend(lat_leader);
    out.applied.extend(applied);
    out.converged.extend(converged);
    Ok(())
}

/// `n` subscribers `bench-sidecar-<i>`, each with its own credentials, the i-th dialling node
/// `i mod 3` first; waits until each has synced.
async fn start_subscribers(
    creds: &Creds,
    nodes: &[ClusterNode],
    n: usize,
) -> anyhow::Result<Vec<Subscriber>> {
    let addrs: Vec<String> = nodes.iter().map(|n| n.client.clone()).collect();
    let mut subs = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("bench-sidecar-{i}");
        let mut cluster = addrs.clone();
        cluster.rotate_left(i % addrs.len());
        let config = SubscriberConfig::new(cluster, id.clone(), creds.subscriber(&id)?);
        subs.push(Subscriber::start(config).await?);
    }
    for sub in &subs {
        sub.wait_synced(Duration::from_secs(30)).await?;
    }
    let mut attached: Vec<String> = subs
        .iter()
        .map(|s| s.status().node.unwrap_or_else(|| "none".into()))
        .collect();
    attached.sort();
    attached.dedup_by(|a, b| a == b);
    println!("  {n} subscribers synced, attached to {attached:?}");
    Ok(subs)
}

/// `n` waves: one fresh key revoked at the leader with `wait`, timed until every subscriber has
/// applied it and until the reply. Returns both series and how many replies were not converged.
async fn waves(
    leader: &Target,
    subs: &[Subscriber],
    n: usize,
    tag: &str,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>, usize)> {
    let mut client = leader.connect().await?;
    let exp = in_one_hour();
    let (mut applied, mut replied, mut not_converged) = (Vec::new(), Vec::new(), 0);
    // Two waves to warm the streams up, not counted.
    for i in 0..n + 2 {
        let (a, r, converged) = wave(&mut client, subs, format!("{tag}-wave-{i:06}"), exp)
            .await
            .with_context(|| format!("wave {i}"))?;
        if i >= 2 {
            applied.push(a);
            replied.push(r);
            not_converged += usize::from(!converged);
        }
    }
    Ok((applied, replied, not_converged))
}

/// One wave: (sent → applied at every subscriber, sent → reply, whether the reply says every
/// subscriber converged).
async fn wave(
    client: &mut OperatorClient<Channel>,
    subs: &[Subscriber],
    value: String,
    exp: i64,
) -> anyhow::Result<(Duration, Duration, bool)> {
    let mut watches: Vec<_> = subs.iter().map(|s| s.watch()).collect();
    let before = watches
        .iter()
        .map(|w| w.borrow().version)
        .min()
        .unwrap_or(0);
    let req = pb::RevokeRequest {
        items: vec![revocation(value, Some(exp))],
        actor: ACTOR.into(),
        reason: "wave".into(),
        wait: Some(pb::WaitConverged {
            timeout_ms: CONVERGENCE_WAIT_MS,
            min_subscribers: 0,
        }),
    };
    let t = Instant::now();
    let send = async {
        let reply = client.revoke(req).await;
        (reply, t.elapsed())
    };
    // The version is known only from the reply, which comes after convergence: meanwhile, time
    // each subscriber's first version past the one before the wave, and check it afterwards.
    let seen = async {
        let mut seen = Vec::with_capacity(watches.len());
        for w in &mut watches {
            let v = w.wait_for(|s| s.version > before).await.map(|s| s.version);
            seen.push((v.ok(), t.elapsed()));
        }
        seen
    };
    let ((reply, replied), seen) = tokio::join!(send, tokio::time::timeout(WAVE_TIMEOUT, seen));
    let reply = reply?.into_inner();
    let seen = seen.context("not applied at every subscriber in time")?;
    let mut applied = seen.iter().map(|(_, at)| *at).max().unwrap_or_default();
    if seen
        .iter()
        .any(|(v, _)| v.is_none_or(|v| v < reply.version))
    {
        // Something else was applied first: wait for the wave's own version.
        for w in &mut watches {
            tokio::time::timeout(WAVE_TIMEOUT, w.wait_for(|s| s.version >= reply.version))
                .await
                .context("not applied at every subscriber in time")??;
        }
        applied = t.elapsed();
    }
    let converged = reply
        .convergence
        .is_some_and(|c| c.converged && c.subscribers_total as usize >= subs.len());
    Ok((applied, replied, converged))
}

// ---------------------------------------------------------------------------------------------
// The report.

/// One row: the name, plaintext and mTLS values, and whether higher is better.
struct Row {
    what: String,
    plain: f64,
    tls: f64,
    unit: Unit,
    /// Whether the 10% target applies.
    target: bool,
    note: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Unit {
    /// Per second: higher is better.
    Rate,
    /// Milliseconds: lower is better.
    Ms,
    /// CPU seconds: lower is better.
    CpuSecs,
}

impl Unit {
    fn show(self, x: f64) -> String {
        match self {
            Unit::Rate => rate(x),
            Unit::Ms => format!("{x:.3} ms"),
            Unit::CpuSecs => format!("{x:.2} CPU-s"),
        }
    }
}

fn ms_f(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn sorted(mut v: Vec<Duration>) -> Vec<Duration> {
    v.sort_unstable();
    v
}

/// Percentile `q` (0: p50, 1: p99) of measure `i` in each cluster, in the order run, in ms.
fn per_cluster(r: &Results, i: usize, q: usize) -> Vec<f64> {
    r.per_cluster.iter().map(|p| ms_f(p[i][q])).collect()
}

/// `per_cluster` as a list, and the median of it.
fn spread(r: &Results, i: usize, q: usize) -> String {
    let xs = per_cluster(r, i, q);
    let list: Vec<String> = xs.iter().map(|x| format!("{x:.2}")).collect();
    format!("{} (median {:.2})", list.join(", "), median(xs))
}

fn report(s: &Settings, tls: &Results, plain: &Results) {
    let mut rows = Vec::new();
    let list = |xs: &[f64], unit: Unit| -> String {
        xs.iter()
            .map(|x| unit.show(*x))
            .collect::<Vec<_>>()
            .join(", ")
    };
    rows.push(Row {
        what: format!(
            "import: Import stream of {}k in {}-item chunks → leader, median",
            s.import_n / 1000,
            s.chunk
        ),
        plain: median(plain.import_rates.clone()),
        tls: median(tls.import_rates.clone()),
        unit: Unit::Rate,
        target: true,
        note: format!(
            "runs: plaintext {}; mTLS {}",
            list(&plain.import_rates, Unit::Rate),
            list(&tls.import_rates, Unit::Rate)
        ),
    });
    rows.push(Row {
        what: "import: CPU of the process (3 nodes + client) per 100k revocations, median".into(),
        plain: median(plain.import_cpu.clone()),
        tls: median(tls.import_cpu.clone()),
        unit: Unit::CpuSecs,
        target: true,
        note: format!(
            "other processes: {:.2} cores (plaintext runs), {:.2} (mTLS runs), medians",
            median(plain.import_others.clone()),
            median(tls.import_others.clone())
        ),
    });
    let series = [
        (
            "latency: 1-key Revoke → leader, sequential",
            &plain.leader,
            &tls.leader,
            Some(0),
        ),
        (
            "1 revocation applied at all subscribers (sent → last applied)",
            &plain.applied,
            &tls.applied,
            Some(1),
        ),
        (
            "1 revocation, Revoke with wait: sent → converged reply",
            &plain.converged,
            &tls.converged,
            Some(2),
        ),
        (
            "Status round trip on an open connection (no target)",
            &plain.rtt,
            &tls.rtt,
            None,
        ),
        (
            "new operator connection + first Status (no target)",
            &plain.connect,
            &tls.connect,
            None,
        ),
    ];
    for (what, p, t, i) in series {
        let (p, t) = (sorted(p.clone()), sorted(t.clone()));
        let what = if i == Some(1) || i == Some(2) {
            format!("{what}, {} subscribers", s.sidecars)
        } else {
            what.to_string()
        };
        for (q, name, k) in [(0.5, "p50", 0), (0.99, "p99", 1)] {
            rows.push(Row {
                what: format!("{what}: {name}"),
                plain: ms_f(percentile(&p, q)),
                tls: ms_f(percentile(&t, q)),
                unit: Unit::Ms,
                target: i.is_some(),
                note: match i {
                    Some(i) => {
                        let (mp, mt) = (
                            median(per_cluster(plain, i, k)),
                            median(per_cluster(tls, i, k)),
                        );
                        format!(
                            "{} plaintext + {} mTLS samples; {name} per cluster (ms): plaintext \
                             {}; mTLS {}; ratio of the medians {:.3}",
                            p.len(),
                            t.len(),
                            spread(plain, i, k),
                            spread(tls, i, k),
                            if mp > 0.0 { mt / mp } else { f64::NAN }
                        )
                    }
                    None if k == 0 => format!("{} + {} samples", p.len(), t.len()),
                    None => String::new(),
                },
            });
        }
    }

    println!();
    println!("| measurement | plaintext | mTLS | mTLS / plaintext | within 10%? | notes |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for r in &rows {
        let ratio = if r.plain > 0.0 {
            r.tls / r.plain
        } else {
            f64::NAN
        };
        let ok = match r.unit {
            _ if !r.target => "–",
            Unit::Rate if ratio >= 0.9 => "yes",
            Unit::Ms | Unit::CpuSecs if ratio <= 1.1 => "yes",
            _ => "**no**",
        };
        println!(
            "| {} | {} | {} | {ratio:.3} | {ok} | {} |",
            r.what,
            r.unit.show(r.plain),
            r.unit.show(r.tls),
            r.note
        );
    }
    for (label, r) in [("plaintext", plain), ("mTLS", tls)] {
        if r.not_converged > 0 || r.elections > 0 || r.failures.count > 0 {
            println!(
                "{label}: {} wave replies not converged, {} clusters with an election{}",
                r.not_converged,
                r.elections,
                r.failures.note()
            );
        }
    }
}
