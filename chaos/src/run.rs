//! A whole chaos run: every chosen scenario against recall, then against etcd and Redis where
//! they take part, all drawn from one seed, in one process, on one machine.

use std::path::PathBuf;
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::baseline::{self, BaselineConfig};
use crate::report::model::{RunReport, SystemRun};
use crate::scenario::Scenario;
use crate::scenario::runner::{self, Plan, RecallSettings};
use crate::workload::Workload;

/// A system the run puts through the scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum System {
    /// recall: the 3-node authority and its sidecars.
    Recall,
    /// etcd: 3 members, subscribers as watchers.
    Etcd,
    /// Redis: SET plus PUBLISH, subscribers on SUBSCRIBE.
    Redis,
}

/// Everything a run needs.
#[derive(Clone)]
pub struct RunConfig {
    /// The seed of every random choice.
    pub seed: u64,
    /// Revocations per scenario.
    pub revocations: u64,
    /// The scenarios, in order.
    pub scenarios: Vec<Scenario>,
    /// The systems.
    pub systems: Vec<System>,
    /// recall's settings (sidecars, batch, timing, ...).
    pub recall: RecallSettings,
    /// The etcd binary.
    pub etcd_bin: PathBuf,
    /// The redis-server binary.
    pub redis_bin: PathBuf,
    /// The command line, for the report.
    pub command: String,
}

/// Runs every scenario on every system; a system that fails to run a scenario gets a result
/// that says why, and the run goes on.
pub async fn run(cfg: &RunConfig) -> RunReport {
    let started = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let machine = machine();
    let workload = Workload::new(cfg.seed, cfg.revocations);
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x5ce0_a210_0000_0002);
    let s = &cfg.recall;
    let mut results = Vec::new();
    for &scenario in &cfg.scenarios {
        let plan = Plan::draw(&mut rng, s.sidecars, workload.len());
        if cfg.systems.contains(&System::Recall) {
            let r = runner::run(s, scenario, &workload, plan, &mut rng).await;
            results.push(r.unwrap_or_else(|e| failed("recall", scenario, &workload, e)));
        }
        let Some(fault) = scenario.baseline(plan.victim, plan.after, s.hold) else {
            continue;
        };
        for system in [System::Etcd, System::Redis] {
            if !cfg.systems.contains(&system) {
                continue;
            }
            let bc = BaselineConfig {
                subscribers: s.sidecars,
                batch: s.batch,
                in_flight: s.in_flight,
                settle: s.settle,
                work_dir: s
                    .dir
                    .join(format!("{system:?}-{}", scenario.name()).to_lowercase()),
                progress: s.progress.clone(),
            };
            let r = match system {
                System::Etcd => baseline::etcd::run(&bc, fault, &workload, &cfg.etcd_bin).await,
                System::Redis => baseline::redis::run(&bc, fault, &workload, &cfg.redis_bin).await,
                System::Recall => unreachable!("recall is not a baseline"),
            };
            let name = format!("{system:?}").to_lowercase();
            results.push(r.unwrap_or_else(|e| failed(&name, scenario, &workload, e)));
        }
    }
    RunReport {
        seed: cfg.seed,
        revocations: cfg.revocations,
        subscribers: s.sidecars,
        batch: s.batch,
        in_flight: s.in_flight,
        staleness_bound_ms: s.staleness_bound.as_secs_f64() * 1e3,
        started,
        machine,
        command: cfg.command.clone(),
        results,
    }
}

fn failed(system: &str, scenario: Scenario, workload: &Workload, e: anyhow::Error) -> SystemRun {
    SystemRun {
        system: system.into(),
        scenario: scenario.name().into(),
        revocations: workload.len(),
        write_ms: 0.0,
        exposure: None,
        converged: false,
        subscribers: Vec::new(),
        convergence_ms: None,
        cluster_view_ms: None,
        views_max_diff_ms: None,
        lost: 0,
        checks: None,
        history: None,
        faults: Vec::new(),
        failures: vec![format!("the scenario could not run: {e:#}")],
    }
}

/// Cores and load, as far as this process can tell.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into());
    format!("{cores} cores, load {load} at start")
}

/// Whether every recall result passed.
pub fn recall_passed(report: &RunReport) -> bool {
    report
        .results
        .iter()
        .filter(|r| r.system == "recall")
        .all(|r| r.failures.is_empty())
}

/// The default settle time: generous enough for the largest runs on two busy cores.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(60);
