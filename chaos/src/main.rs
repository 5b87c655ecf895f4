//! `recall-chaos`: runs the chaos scenarios against recall, etcd and Redis, prints the table and
//! writes the JSON, markdown and charts. Exits non-zero when a recall scenario failed.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use indicatif::{MultiProgress, ProgressDrawTarget};
use recall_chaos::authority::RaftTiming;
use recall_chaos::history::live::LiveConfig;
use recall_chaos::run::{RunConfig, System, recall_passed};
use recall_chaos::scenario::Scenario;
use recall_chaos::scenario::runner::RecallSettings;

/// Mass revocations under injected faults: the time until every sidecar holds everything, side
/// by side with etcd watch and Redis pub/sub, measured in the same run.
#[derive(Debug, Parser)]
#[command(name = "recall-chaos", version)]
struct Args {
    /// Revocations per scenario.
    #[arg(long, default_value_t = 1_000_000)]
    revocations: u64,
    /// Sidecars (and etcd watchers, Redis subscribers).
    #[arg(long, default_value_t = 16)]
    sidecars: usize,
    /// Scenarios to run (comma-separated). Default: all.
    #[arg(long, value_enum, value_delimiter = ',')]
    scenarios: Vec<Scenario>,
    /// Systems to put through them (comma-separated). Default: all.
    #[arg(long, value_enum, value_delimiter = ',')]
    systems: Vec<System>,
    /// The seed of every random choice (printed; replays a run). Default: a random one.
    #[arg(long)]
    seed: Option<u64>,
    /// Revocations per write request.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Write requests in flight.
    #[arg(long, default_value_t = 4)]
    in_flight: usize,
    /// How long a fault lasts (partition, pause, time before a restart), in milliseconds. A fault
    /// between nodes lasts ten election timeouts (until a cut-off node ends its streams) plus this.
    #[arg(long, default_value_t = 2000)]
    hold_ms: u64,
    /// The latency a slow link adds to every chunk, in milliseconds (a sidecar's links in
    /// slow-link, the link between the leader and a follower in peer-slow-link).
    #[arg(long, default_value_t = 100)]
    latency_ms: u64,
    /// How long after the last write subscribers get to hold everything, in seconds.
    #[arg(long, default_value_t = 60)]
    settle_s: u64,
    /// Revoked and never-revoked tokens checked on every sidecar.
    #[arg(long, default_value_t = 10_000)]
    sample: usize,
    /// The sidecars' staleness bound, in milliseconds: the live history allows no "allowed"
    /// for a revocation acknowledged longer ago than this.
    #[arg(long, default_value_t = 10_000)]
    staleness_bound_ms: u64,
    /// How often the live checkers ask each sidecar, in milliseconds.
    #[arg(long, default_value_t = 10)]
    check_period_ms: u64,
    /// Revoke-then-lift cycles the live checkers write during each recall.
    #[arg(long, default_value_t = 4)]
    lifts: usize,
    /// The authority's Raft election timeout, in milliseconds.
    #[arg(long, default_value_t = 500)]
    election_timeout_ms: u64,
    /// Where to write results.json, results.md and the charts. Default: chaos-results/SEED.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The `recall` binary. Default: next to this one.
    #[arg(long)]
    recall_bin: Option<PathBuf>,
    /// The etcd binary.
    #[arg(long, default_value = "/usr/bin/etcd")]
    etcd_bin: PathBuf,
    /// The redis-server binary.
    #[arg(long, default_value = "/usr/bin/redis-server")]
    redis_bin: PathBuf,
    /// Keep the data directories, logs and the run's certificates (DIR/pki) (they are removed
    /// after a passing run).
    #[arg(long)]
    keep_data: bool,
    /// No progress bars (for logs and CI).
    #[arg(long)]
    quiet: bool,
}

fn recall_bin(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .context("this binary has no directory")?
            .join("recall"),
    };
    if !path.is_file() {
        bail!(
            "no recall binary at {}: build it (cargo build --release --bin recall) or pass --recall-bin",
            path.display()
        );
    }
    Ok(path)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let recall_bin = recall_bin(args.recall_bin.clone())?;
    let seed = args.seed.unwrap_or_else(rand::random);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("chaos-results").join(seed.to_string()));
    let data = tempfile::Builder::new().prefix("recall-chaos-").tempdir()?;
    let progress = if args.quiet {
        MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
    } else {
        MultiProgress::new()
    };
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    eprintln!(
        "recall-chaos: seed {seed} (replay with --seed {seed}); data in {}",
        data.path().display()
    );
    let cfg = RunConfig {
        seed,
        revocations: args.revocations,
        scenarios: if args.scenarios.is_empty() {
            Scenario::ALL.to_vec()
        } else {
            args.scenarios
        },
        systems: if args.systems.is_empty() {
            vec![System::Recall, System::Etcd, System::Redis]
        } else {
            args.systems
        },
        recall: RecallSettings {
            recall_bin,
            dir: data.path().to_path_buf(),
            sidecars: args.sidecars,
            batch: args.batch,
            in_flight: args.in_flight,
            timing: RaftTiming {
                election_timeout: Duration::from_millis(args.election_timeout_ms),
                ..RaftTiming::default()
            },
            settle: Duration::from_secs(args.settle_s),
            hold: Duration::from_millis(args.hold_ms),
            latency: Duration::from_millis(args.latency_ms),
            sample: args.sample,
            staleness_bound: Duration::from_millis(args.staleness_bound_ms),
            live: LiveConfig {
                period: Duration::from_millis(args.check_period_ms.max(1)),
                lifts: args.lifts,
                ..LiveConfig::default()
            },
            progress,
        },
        etcd_bin: args.etcd_bin,
        redis_bin: args.redis_bin,
        command,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(recall_chaos::run::run(&cfg));
    let files = recall_chaos::report::write::write_all(&report, &out)?;
    println!("{}", recall_chaos::report::table::markdown(&report));
    for f in &files {
        eprintln!("wrote {}", f.display());
    }
    let passed = recall_passed(&report);
    if args.keep_data || !passed {
        let kept = data.keep();
        eprintln!("data and logs kept in {}", kept.display());
    }
    if !passed {
        bail!("a recall scenario failed (see the failures above)");
    }
    Ok(())
}
