//! The authority cluster under load: a 3-node cluster (in this process, each node on its own
//! tokio runtime, as separate processes would be) on 127.0.0.1 with its redb files in temporary
//! directories, fsync on commit as in production. Measures, through the operator gRPC API:
//!
//! 1. committed revocations per second for a batched import (Revoke requests of 10k items, one
//!    or four in flight, and the Import client stream), sent to the leader and to a follower
//!    (forwarding); the median of several runs, each on fresh keys;
//! 2. the latency of a single revocation from request to commit, sequentially and with 8
//!    concurrent clients;
//! 3. the floor in the same run: an fdatasync and an fsync of a small write in the same
//!    directory, an empty redb transaction committed durably, and a loopback gRPC round trip (the
//!    Status RPC).
//!
//! Run: `cargo bench --bench authority` (results and conditions in BENCHMARKS.md).
//! Environment: `RECALL_BENCH_IMPORT` revocations per import run (default 500000),
//! `RECALL_BENCH_BATCH` items per request (default 10000), `RECALL_BENCH_RUNS` runs per import
//! row (default 3), `RECALL_BENCH_LATENCY` single revocations per latency row (default 2000);
//! `RECALL_BENCH_LOG=<filter>` prints the nodes' tracing to stderr (e.g. `openraft=warn`).
//!
//! Every link is mutual TLS, as in production: each node, and the benchmark as the operator
//! `admin`, has a certificate from a CA made in memory for the run. The cost of TLS itself is
//! measured by `benches/transport.rs`.

mod common;

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;
use common::{
    ACTOR, CpuMark, Creds, Failures, Target, batches, cpu_model, env_usize, import_stream,
    in_one_hour, loadavg, median, ms, nproc, peak_rss, percentile, rate, revoke_one,
    sequential_latency,
};
use futures::{StreamExt, TryStreamExt};
use recall::node::RunningNode;
use recall::proto as pb;

const NODES: u64 = 3;
/// How many clients the concurrent latency row runs.
const CLIENTS: usize = 8;
/// Samples per floor measurement.
const FLOOR_SAMPLES: usize = 2000;

/// The rows of the results table.
struct Table {
    rows: Vec<[String; 3]>,
}

impl Table {
    fn row(&mut self, what: impl Into<String>, result: impl Into<String>, note: impl Into<String>) {
        let row = [what.into(), result.into(), note.into()];
        println!("  {} | {} | {}", row[0], row[1], row[2]);
        self.rows.push(row);
    }

    fn print(&self) {
        println!();
        println!("| measurement | result | notes |");
        println!("| --- | --- | --- |");
        for [a, b, c] in &self.rows {
            println!("| {a} | {b} | {c} |");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The cluster (started with `common::start_cluster`).

/// Followers that did not catch up with the leader: a failure the benchmark reports rather than
/// one it stops on, so the other rows still run (a write commits with the leader and one
/// follower).
#[derive(Default)]
struct Lagging {
    /// Nodes found behind, with when and what was seen.
    stuck: BTreeMap<u64, (Instant, String)>,
    /// What happened, for the table.
    events: Vec<String>,
}

/// How long a node may take to apply what the leader has before it counts as stuck.
const PATIENCE: Duration = Duration::from_secs(60);
/// How long to wait for a node already found stuck.
const STUCK_PATIENCE: Duration = Duration::from_secs(5);

/// Waits until every node has applied what the leader has now. A node still behind after
/// [`PATIENCE`] (or [`STUCK_PATIENCE`] once found stuck) is recorded in `lagging` and left behind.
async fn wait_caught_up(
    nodes: &[Target],
    leader: &Target,
    lagging: &mut Lagging,
    when: &str,
) -> anyhow::Result<Vec<pb::StatusReply>> {
    let target = leader.status().await?.applied_version;
    let start = Instant::now();
    loop {
        let mut all = Vec::new();
        for node in nodes {
            all.push(node.status().await?);
        }
        let behind: Vec<&pb::StatusReply> =
            all.iter().filter(|s| s.applied_version < target).collect();
        for s in &all {
            if s.applied_version >= target
                && let Some((since, _)) = lagging.stuck.remove(&s.node_id)
            {
                let note = format!(
                    "node {} caught up again {:.0}s after it was found stuck (checked {when})",
                    s.node_id,
                    since.elapsed().as_secs_f64()
                );
                println!("  {note}");
                lagging.events.push(note);
            }
        }
        if behind.is_empty() {
            return Ok(all);
        }
        let known = behind
            .iter()
            .all(|s| lagging.stuck.contains_key(&s.node_id));
        let waited = start.elapsed();
        if (known && waited > STUCK_PATIENCE) || waited > PATIENCE {
            let view: Vec<(u64, u64)> = all
                .iter()
                .find(|s| s.leader_id == Some(s.node_id))
                .map(|s| {
                    s.members
                        .iter()
                        .map(|m| (m.node_id, m.applied_version))
                        .collect()
                })
                .unwrap_or_default();
            for s in behind {
                if lagging.stuck.contains_key(&s.node_id) {
                    continue;
                }
                let note = format!(
                    "node {} stuck {when}: applied version {} while the leader is at {target}; \
                     the leader's replication view (node, matched) {view:?}; not caught up \
                     within {}s",
                    s.node_id,
                    s.applied_version,
                    PATIENCE.as_secs()
                );
                println!("  FOLLOWER STUCK: {note}");
                lagging.events.push(note.clone());
                lagging.stuck.insert(s.node_id, (Instant::now(), note));
            }
            return Ok(all);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Workloads.

#[derive(Clone, Copy, Debug)]
enum ImportMode {
    /// Revoke requests, this many in flight.
    Revoke(usize),
    /// One Import client stream.
    Stream,
}

impl ImportMode {
    fn label(self) -> String {
        match self {
            ImportMode::Revoke(1) => "Revoke ×10k items, 1 in flight".into(),
            ImportMode::Revoke(k) => format!("Revoke ×10k items, {k} in flight"),
            ImportMode::Stream => "Import stream, 10k-item chunks".into(),
        }
    }
}

/// Sends every batch to `to` (on a new connection) as `mode` says and waits for the last commit;
/// returns the elapsed time and how many revocations the replies count as newly added.
async fn import_run(
    to: &Target,
    mode: ImportMode,
    batches: Vec<Vec<pb::Revocation>>,
) -> anyhow::Result<(Duration, u64)> {
    let client = to.connect().await?;
    match mode {
        ImportMode::Revoke(in_flight) => {
            let requests: Vec<pb::RevokeRequest> = batches
                .into_iter()
                .map(|items| pb::RevokeRequest {
                    items,
                    actor: ACTOR.into(),
                    reason: "import".into(),
                    wait: None,
                })
                .collect();
            let start = Instant::now();
            let added = futures::stream::iter(requests)
                .map(|req| {
                    let mut client = client.clone();
                    async move { client.revoke(req).await.map(|r| r.into_inner().added) }
                })
                .buffer_unordered(in_flight)
                .try_fold(0u64, |acc, added| async move { Ok(acc + added) })
                .await?;
            Ok((start.elapsed(), added))
        }
        ImportMode::Stream => {
            let mut client = client;
            import_stream(&mut client, batches).await
        }
    }
}

/// `clients` clients, each on its own connection, each sending `n / clients` single revocations
/// one after the other. Returns the sorted latencies and the wall time.
async fn concurrent_latency(
    to: &Target,
    tag: &str,
    n: usize,
    clients: usize,
) -> anyhow::Result<(Vec<Duration>, Duration, Failures)> {
    let mut conns = Vec::new();
    for _ in 0..clients {
        conns.push(to.connect().await?);
    }
    let exp = in_one_hour();
    let per_client = n / clients;
    let start = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(c, mut client)| {
            let tag = format!("{tag}-c{c}");
            tokio::spawn(async move {
                let mut out = Vec::with_capacity(per_client);
                let mut failures = Failures::default();
                for i in 0..per_client {
                    match revoke_one(&mut client, format!("{tag}-{i:010}"), exp).await {
                        Ok(d) => out.push(d),
                        Err(e) => failures.record(e),
                    }
                }
                (out, failures)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n);
    let mut failures = Failures::default();
    for t in tasks {
        let (out, failed) = t.await?;
        all.extend(out);
        failures.add(failed);
    }
    let wall = start.elapsed();
    all.sort_unstable();
    Ok((all, wall, failures))
}

// ---------------------------------------------------------------------------------------------
// The floor.

/// `n` small writes to one file in `dir`, each followed by `sync`; sorted times of write + sync.
fn sync_floor(
    dir: &Path,
    name: &str,
    n: usize,
    sync: impl Fn(&std::fs::File) -> std::io::Result<()>,
    append: bool,
) -> anyhow::Result<Vec<Duration>> {
    let path = dir.join(name);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)?;
    file.write_all(&[0u8; 4096])?;
    file.sync_all()?;
    let record = [0x5au8; 64];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        if append {
            file.write_all(&record)?;
        } else {
            file.write_all_at(&record, 0)?;
        }
        sync(&file)?;
        out.push(start.elapsed());
    }
    drop(file);
    std::fs::remove_file(path)?;
    out.sort_unstable();
    Ok(out)
}

/// `n` redb write transactions of one small row each, committed durably (as the Raft log's
/// appends are); sorted times of begin..commit.
fn redb_floor(dir: &Path, n: usize) -> anyhow::Result<Vec<Duration>> {
    const T: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("t");
    let path = dir.join("floor.redb");
    let db = redb::Database::create(&path)?;
    let value = [0x5au8; 100];
    let mut out = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let start = Instant::now();
        let txn = db.begin_write()?;
        txn.open_table(T)?.insert(i, value.as_slice())?;
        txn.commit()?;
        out.push(start.elapsed());
    }
    drop(db);
    std::fs::remove_file(path)?;
    out.sort_unstable();
    Ok(out)
}

/// Status round trips on one connection. `local_only`, so that the node answers by itself
/// (without it, Status asks every peer for its subscribers).
async fn status_rtt(to: &Target, n: usize) -> anyhow::Result<Vec<Duration>> {
    let mut client = to.connect().await?;
    let req = pb::StatusRequest {
        local_only: true,
        ..Default::default()
    };
    for _ in 0..50 {
        client.status(req).await?;
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        client.status(req).await?;
        out.push(start.elapsed());
    }
    out.sort_unstable();
    Ok(out)
}

// ---------------------------------------------------------------------------------------------

fn main() -> anyhow::Result<()> {
    if let Ok(filter) = std::env::var("RECALL_BENCH_LOG") {
        // Diagnostics only: the nodes' tracing (openraft's included) to stderr.
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let import_n = env_usize("RECALL_BENCH_IMPORT", 500_000);
    let batch = env_usize("RECALL_BENCH_BATCH", 10_000).max(1);
    let runs = env_usize("RECALL_BENCH_RUNS", 3).max(1);
    let latency_n = env_usize("RECALL_BENCH_LATENCY", 2000).max(CLIENTS);
    // `RECALL_BENCH_CHECKPOINTS=0`: nodes never sign checkpoints (the baseline of their cost).
    let checkpoints = env_usize("RECALL_BENCH_CHECKPOINTS", 1) != 0;

    println!(
        "recall authority benchmark: 3 nodes on 127.0.0.1, mutual TLS, redb with fsync on commit"
    );
    println!(
        "machine: nproc {}, {}, load average {} (1/5/15 min) at start",
        nproc(),
        cpu_model(),
        loadavg()
    );
    println!(
        "workload: {import_n} revocations per import run in requests of {batch}, {runs} runs per \
         row; {latency_n} single revocations per latency row"
    );

    let root = tempfile::Builder::new().prefix("recall-bench-").tempdir()?;
    println!("data: {}", root.path().display());
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("client")
        .enable_all()
        .build()?;

    let creds = Creds::tls()?;
    println!(
        "checkpoints: {}",
        if checkpoints {
            "every node signs one a second while its head moves"
        } else {
            "off (RECALL_BENCH_CHECKPOINTS=0)"
        }
    );
    let nodes = common::start_cluster(root.path(), &creds, NODES, |c| {
        if !checkpoints {
            c.checkpoint_interval = std::time::Duration::from_secs(24 * 3600);
        }
    })?;
    let dialer = creds.operator_dialer()?;
    let result = client_rt.block_on(async {
        let members = common::targets(&nodes, &dialer)?;
        measure(root.path(), &members, import_n, batch, runs, latency_n).await
    });
    let table = result.map(|(mut table, leader)| {
        if let Some(node) = nodes.iter().find(|n| n.id == leader) {
            stalls(&mut table, &node.running, &client_rt);
        }
        table
    });
    common::stop_cluster(nodes);
    println!(
        "load average {} at the end; peak memory of the benchmark process (3 nodes + clients) {}",
        loadavg(),
        peak_rss()
    );
    table?.print();
    Ok(())
}

/// Two pauses the leader takes while holding the state machine's lock (applying waits for it,
/// so every commit waits through them), timed on the leader's set as the benchmark left it: the
/// prune check the leader runs every `prune_interval` (the first item of the expiry index), and
/// what a snapshot build (every `snapshot_after` entries) does under the lock, with the time
/// it then takes off the lock, from a snapshot triggered here.
fn stalls(table: &mut Table, leader: &RunningNode, rt: &tokio::runtime::Runtime) {
    let now = recall_core::Timestamp::from_millis(in_one_hour() - 3_600_000);
    let (entries, scan, expired) = leader.sm.with_set(|s| {
        let start = Instant::now();
        let expired = s.has_expired(now);
        (s.len(), start.elapsed(), expired)
    });
    table.row(
        format!("stall: prune check (`has_expired`) on the leader, {entries} entries"),
        ms(scan),
        format!(
            "under the state read lock, on an async worker, every prune_interval (60 s); \
             found expired: {expired}"
        ),
    );
    let applied = leader.sm.applied().version;
    let timing = rt.block_on(async {
        leader.raft.trigger().snapshot().await?;
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            match leader.sm.last_snapshot() {
                Some(t) if t.version >= applied => return Ok(t),
                _ if Instant::now() > deadline => anyhow::bail!("no snapshot within 10 min"),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    match timing {
        Ok(t) => {
            table.row(
                format!(
                    "stall: snapshot build under the state lock, {} entries",
                    t.entries
                ),
                ms(t.locked),
                "the set frozen (layers shared, no entry copied), rules, commands' metadata \
                 and the small state copied; applying waits this long",
            );
            table.row(
                format!("snapshot build off the lock, {} entries", t.entries),
                ms(t.built),
                "merge the layers, sort, encode, store (fsync), on the blocking pool while \
                 applying goes on",
            );
        }
        Err(e) => table.row("stall: snapshot build", "failed", e.to_string()),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum To {
    Leader,
    Follower,
}

impl To {
    fn label(self) -> &'static str {
        match self {
            To::Leader => "leader",
            To::Follower => "follower",
        }
    }
}

async fn measure(
    dir: &Path,
    members: &[Target],
    import_n: usize,
    batch: usize,
    runs: usize,
    latency_n: usize,
) -> anyhow::Result<(Table, u64)> {
    let mut table = Table { rows: Vec::new() };
    let started = Instant::now();
    let (leader, follower, term_start) = common::roles(members).await?;
    let leader_id = leader.id;
    println!(
        "leader: node {leader_id} ({}) after {:.2}s, term {term_start}",
        leader.addr,
        started.elapsed().as_secs_f64()
    );
    // The first write also fixes the cluster's fingerprint seed; warm every path up.
    sequential_latency(&leader, "warm-leader", 100).await?;
    sequential_latency(&follower, "warm-follower", 20).await?;
    import_run(
        &leader,
        ImportMode::Stream,
        batches("warm-import", batch, batch),
    )
    .await?;
    let mut lagging = Lagging::default();
    wait_caught_up(members, &leader, &mut lagging, "after the warm-up").await?;

    // 3. The floor, first, while the cluster is idle.
    println!("\nfloor (cluster idle):");
    let fdatasync = sync_floor(
        dir,
        "fdatasync.bin",
        FLOOR_SAMPLES,
        |f| f.sync_data(),
        false,
    )?;
    table.row(
        "floor: 64 B pwrite + fdatasync (what redb calls)",
        format!("p50 {}", ms(percentile(&fdatasync, 0.5))),
        format!(
            "p99 {}, {FLOOR_SAMPLES} samples, same disk as the nodes",
            ms(percentile(&fdatasync, 0.99))
        ),
    );
    let fsync = sync_floor(dir, "fsync.bin", FLOOR_SAMPLES, |f| f.sync_all(), true)?;
    table.row(
        "floor: 64 B append + fsync",
        format!("p50 {}", ms(percentile(&fsync, 0.5))),
        format!("p99 {}", ms(percentile(&fsync, 0.99))),
    );
    let redb = redb_floor(dir, FLOOR_SAMPLES)?;
    table.row(
        "floor: redb transaction, 1 row, durable commit",
        format!("p50 {}", ms(percentile(&redb, 0.5))),
        format!("p99 {}", ms(percentile(&redb, 0.99))),
    );
    let rtt = status_rtt(&leader, FLOOR_SAMPLES).await?;
    table.row(
        "floor: loopback gRPC round trip (Status on the leader)",
        format!("p50 {}", ms(percentile(&rtt, 0.5))),
        format!("p99 {}", ms(percentile(&rtt, 0.99))),
    );
    let floor = percentile(&rtt, 0.5) * 2 + percentile(&redb, 0.5);
    table.row(
        "floor: one commit = 2 round trips + 1 durable commit",
        format!("≈ {}", ms(floor)),
        "client→leader, leader→follower (follower fsyncs in parallel with the leader)",
    );

    // 1. Import throughput.
    println!("\nimport throughput ({runs} runs × {import_n} revocations per row):");
    let rows = [
        (To::Leader, ImportMode::Revoke(1)),
        (To::Leader, ImportMode::Revoke(4)),
        (To::Leader, ImportMode::Stream),
        (To::Follower, ImportMode::Revoke(1)),
        (To::Follower, ImportMode::Stream),
    ];
    for (row, (to, mode)) in rows.into_iter().enumerate() {
        let (mut rates, mut cpu, mut elections) = (Vec::new(), Vec::new(), 0);
        let mut failures = Failures::default();
        for run in 0..runs {
            let work = batches(&format!("import-r{row}-{run}"), import_n, batch);
            // Each run starts with every node caught up (runs do not overlap), and goes to the
            // node that leads (or follows) now.
            let (leader, follower, _) = common::roles(members).await?;
            let when = format!("before {} → {} run {}", mode.label(), to.label(), run + 1);
            wait_caught_up(members, &leader, &mut lagging, &when).await?;
            let term = common::max_term(members).await;
            let addr = if to == To::Leader { &leader } else { &follower };
            let mark = CpuMark::now();
            let (elapsed, added) = match import_run(addr, mode, work).await {
                Ok(done) => done,
                Err(e) => {
                    println!(
                        "  {} → {}, run {}: failed after {:.2}s",
                        mode.label(),
                        to.label(),
                        run + 1,
                        mark.at.elapsed().as_secs_f64()
                    );
                    failures.record(e);
                    continue;
                }
            };
            let used = mark.since();
            if added != import_n as u64 {
                bail!(
                    "{} to the {}: {added} of {import_n} fresh keys added",
                    mode.label(),
                    to.label()
                );
            }
            let new_term = common::max_term(members).await;
            let r = import_n as f64 / elapsed.as_secs_f64();
            println!(
                "  {} → {}, run {}: {import_n} in {:.2}s = {}; CPU: bench {:.2} cores, \
                 others {:.2} cores{}",
                mode.label(),
                to.label(),
                run + 1,
                elapsed.as_secs_f64(),
                rate(r),
                used.own_cores,
                used.other_cores,
                if new_term != term {
                    format!("; ELECTION during the run (term {term} → {new_term})")
                } else {
                    String::new()
                }
            );
            elections += usize::from(new_term != term);
            rates.push(r);
            cpu.push(used);
        }
        let (lo, hi) = rates
            .iter()
            .fold((f64::MAX, 0f64), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
        let lo = lo.min(hi);
        let own = median(cpu.iter().map(|c| c.own_cores).collect());
        let other = median(cpu.iter().map(|c| c.other_cores).collect());
        table.row(
            format!("import: {} → {}", mode.label(), to.label()),
            if rates.is_empty() {
                "no run completed".to_string()
            } else {
                format!("{} revocations", rate(median(rates)))
            },
            format!(
                "median of {runs} (min {}, max {}); CPU: bench {own:.2} cores, other \
                 processes {other:.2} cores; runs with an election: {elections}{}",
                rate(lo),
                rate(hi),
                failures.note()
            ),
        );
    }
    let (leader, follower, _) = common::roles(members).await?;
    let entries = agreement(members, &leader, &mut lagging, "after the imports").await?;

    // 2. Single-revocation latency.
    println!("\nsingle-revocation latency (set of {entries} entries):");
    let term = common::max_term(members).await;
    let (seq, seq_failed) = sequential_latency(&leader, "single", latency_n).await?;
    table.row(
        format!("latency: 1 key Revoke → leader, sequential ({latency_n} calls)"),
        format!(
            "p50 {}, p99 {}",
            ms(percentile(&seq, 0.5)),
            ms(percentile(&seq, 0.99))
        ),
        format!(
            "p90 {}, max {}; p50 is {:.1}× the floor{}",
            ms(percentile(&seq, 0.9)),
            ms(percentile(&seq, 1.0)),
            percentile(&seq, 0.5).as_secs_f64() / floor.as_secs_f64(),
            seq_failed.note()
        ),
    );
    wait_caught_up(
        members,
        &leader,
        &mut lagging,
        "after the sequential latency row",
    )
    .await?;
    let mark = CpuMark::now();
    let (conc, wall, conc_failed) =
        concurrent_latency(&leader, "concurrent", latency_n, CLIENTS).await?;
    let used = mark.since();
    table.row(
        format!("latency: 1 key Revoke → leader, {CLIENTS} concurrent clients"),
        format!(
            "p50 {}, p99 {}",
            ms(percentile(&conc, 0.5)),
            ms(percentile(&conc, 0.99))
        ),
        format!(
            "p90 {}, max {}; {} commits; CPU: bench {:.2} cores, other processes {:.2} \
             cores{}",
            ms(percentile(&conc, 0.9)),
            ms(percentile(&conc, 1.0)),
            rate(conc.len() as f64 / wall.as_secs_f64()),
            used.own_cores,
            used.other_cores,
            conc_failed.note()
        ),
    );
    wait_caught_up(
        members,
        &leader,
        &mut lagging,
        "after the concurrent latency row",
    )
    .await?;
    let (seq_f, seq_f_failed) =
        sequential_latency(&follower, "single-follower", latency_n / 4).await?;
    table.row(
        format!(
            "latency: 1 key Revoke → follower, sequential ({} calls)",
            latency_n / 4
        ),
        format!(
            "p50 {}, p99 {}",
            ms(percentile(&seq_f, 0.5)),
            ms(percentile(&seq_f, 0.99))
        ),
        format!(
            "p90 {}, max {}{}",
            ms(percentile(&seq_f, 0.9)),
            ms(percentile(&seq_f, 1.0)),
            seq_f_failed.note()
        ),
    );
    let new_term = common::max_term(members).await;
    if new_term != term {
        table.row(
            "warning: election during the latency rows",
            format!("term {term} → {new_term}"),
            "the latency rows include it",
        );
    }

    let (end_leader, _, end_term) = common::roles(members).await?;
    agreement(members, &end_leader, &mut lagging, "at the end").await?;
    for event in &lagging.events {
        table.row("FOLLOWER STUCK / RECOVERED", "", event.clone());
    }
    for node in lagging.stuck.keys() {
        table.row(
            "FOLLOWER STILL BEHIND AT THE END",
            format!("node {node}"),
            "it never caught up while the benchmark ran",
        );
    }
    println!(
        "\nleader at the end: node {}, term {end_term} (start: node {leader_id}, term \
         {term_start})",
        end_leader.id
    );
    Ok((table, end_leader.id))
}

/// Waits for the nodes to catch up, then checks that those that did hold the same set (entries
/// and digest); returns the leader's entry count. Disagreement is fatal: it would be a bug.
async fn agreement(
    members: &[Target],
    leader: &Target,
    lagging: &mut Lagging,
    when: &str,
) -> anyhow::Result<u64> {
    let statuses = wait_caught_up(members, leader, lagging, when).await?;
    let target = leader.status().await?.applied_version;
    let current: Vec<&pb::StatusReply> = statuses
        .iter()
        .filter(|s| s.applied_version == target)
        .collect();
    let entries: Vec<(u64, u64)> = current.iter().map(|s| (s.node_id, s.entries)).collect();
    let digests: Vec<u64> = current.iter().map(|s| s.digest).collect();
    println!(
        "  {when}: at version {target}, (node, entries) {entries:?}, digests {digests:x?}{}",
        if current.len() < statuses.len() {
            " (a node behind is left out)"
        } else {
            ""
        }
    );
    if entries.windows(2).any(|w| w[0].1 != w[1].1) || digests.windows(2).any(|w| w[0] != w[1]) {
        bail!("the nodes disagree {when}: {entries:?} {digests:x?}");
    }
    Ok(entries.first().map_or(0, |e| e.1))
}
