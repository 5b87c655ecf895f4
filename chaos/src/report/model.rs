//! What a chaos run measured, per system and scenario: the data behind the markdown table, the
//! JSON file and the chart.

use serde::Serialize;

use crate::history::check::{AnswerCounts, Rule, RuleCounts};
use crate::history::exposure::Windows;

/// A whole run: its settings and every (system, scenario) result, in the order they ran.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// The seed every random choice came from (`--seed` replays the run).
    pub seed: u64,
    /// Revocations per scenario.
    pub revocations: u64,
    /// Subscribers (sidecars, watchers) per scenario.
    pub subscribers: usize,
    /// Items per write request (a recall batch, an etcd transaction, a Redis pipeline).
    pub batch: usize,
    /// Write requests in flight.
    pub in_flight: usize,
    /// The staleness bound recall's sidecars ran with, in milliseconds: an exposure window
    /// longer than this (or one that never ends) is a revocation some subscriber let through
    /// past the bound, whatever the system.
    pub staleness_bound_ms: f64,
    /// When the run started (RFC 3339, UTC).
    pub started: String,
    /// The machine, as far as the harness can tell (cores, load average at start).
    pub machine: String,
    /// The command line that reproduces the run.
    pub command: String,
    /// One entry per system and scenario.
    pub results: Vec<SystemRun>,
}

/// One system through one scenario.
#[derive(Clone, Debug, Serialize)]
pub struct SystemRun {
    /// `recall`, `etcd` or `redis`.
    pub system: String,
    /// The scenario's name (`no-fault`, `leader-kill`, ...).
    pub scenario: String,
    /// Revocations written.
    pub revocations: u64,
    /// From the first write sent until the last write acknowledged, in milliseconds.
    pub write_ms: f64,
    /// Per acknowledged write: from its acknowledgement until every subscriber held it, by
    /// the subscribers' own reports (recall: the version each sidecar applied; etcd and Redis:
    /// the receipt of every key of the write). `None` when not measured.
    pub exposure: Option<Windows>,
    /// Every subscriber holds everything written.
    pub converged: bool,
    /// Per subscriber: when it held everything, and what it missed.
    pub subscribers: Vec<SubscriberRun>,
    /// Over subscribers, from their own reports: time from the first write until each held
    /// everything. `None` when not every subscriber converged.
    pub convergence_ms: Option<Percentiles>,
    /// The same, from the cluster's view of the acks (recall only).
    pub cluster_view_ms: Option<Percentiles>,
    /// The largest difference between a subscriber's own report and the cluster's view of it,
    /// in milliseconds (recall only).
    pub views_max_diff_ms: Option<f64>,
    /// Revocations missing at the end, summed over subscribers.
    pub lost: u64,
    /// The correctness checks (recall only: sampled checks on every sidecar, digests).
    pub checks: Option<Checks>,
    /// The live history: every answer checked while the wave landed, and the exposure windows
    /// (recall only).
    pub history: Option<HistoryReport>,
    /// The faults injected, each with the proof it took effect.
    pub faults: Vec<FaultRecord>,
    /// Why the scenario failed; empty when it passed.
    pub failures: Vec<String>,
}

/// One subscriber's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct SubscriberRun {
    /// Its id.
    pub id: String,
    /// From the first write until it held everything, by its own report.
    pub converged_ms: Option<f64>,
    /// The same, from the cluster's view of its acks (recall only).
    pub cluster_view_ms: Option<f64>,
    /// Revocations it is missing at the end.
    pub missing: u64,
    /// How much of the wave it held over time: (milliseconds since the first write, fraction
    /// of the wave's revocations held), from (0, 0), each time it held more.
    pub held: Vec<(f64, f64)>,
}

/// p50, p99 and max of a set of durations, in milliseconds.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Percentiles {
    /// The median.
    pub p50: f64,
    /// The 99th percentile (nearest rank).
    pub p99: f64,
    /// The largest.
    pub max: f64,
}

impl Percentiles {
    /// Of `values` (nearest-rank percentiles); `None` when empty.
    pub fn of(values: &[f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let r = (p * v.len() as f64).ceil() as usize;
            v[r.clamp(1, v.len()) - 1]
        };
        Some(Self {
            p50: rank(0.50),
            p99: rank(0.99),
            max: v[v.len() - 1],
        })
    }
}

/// The correctness checks of a recall scenario; every count is summed over the sidecars.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Checks {
    /// Revoked keys checked (the same sample on every sidecar).
    pub revoked_sampled: u64,
    /// Of those, answers that were not "revoked", over all sidecars (must be 0).
    pub revoked_missed: u64,
    /// Never-revoked keys checked (the same sample on every sidecar).
    pub clean_sampled: u64,
    /// Of those, answers that were "revoked", over all sidecars.
    pub false_positives: u64,
    /// The false positives the filter's stated rate allows, over all sidecars.
    pub false_positives_allowed: u64,
    /// Every sidecar's digest equals the authority's.
    pub digests_equal: bool,
    /// Token facts covered by the rule of a rule scenario that were checked.
    pub rule_sampled: u64,
    /// Of those, answers that were not "revoked" (must be 0).
    pub rule_missed: u64,
}

/// The live history of a recall scenario, judged.
#[derive(Clone, Debug, Serialize)]
pub struct HistoryReport {
    /// The sidecars' staleness bound, in milliseconds.
    pub bound_ms: f64,
    /// How often each sidecar was asked, in milliseconds.
    pub period_ms: f64,
    /// What was answered.
    pub answers: AnswerCounts,
    /// Checks that failed or timed out (a killed, paused or partitioned sidecar).
    pub unanswered: u64,
    /// Revoke-then-lift cycles written.
    pub lifts: u64,
    /// Violations per rule (must all be 0).
    pub violations: RuleCounts,
    /// The earliest violations.
    pub first: Vec<ViolationRecord>,
    /// Exposure windows of the watched revocations, from the live answers (those of every
    /// write, from the sidecars' own reports, are [`SystemRun::exposure`]).
    pub exposure_checks: Windows,
}

/// One violation as the report shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ViolationRecord {
    /// The rule.
    pub rule: Rule,
    /// The sidecar that answered.
    pub sidecar: String,
    /// The token id presented.
    pub token: String,
    /// When the check was sent, in milliseconds after the first write.
    pub sent_ms: f64,
    /// When the answer arrived.
    pub received_ms: f64,
    /// The version that answered.
    pub version: u64,
    /// Whether the answer said stale.
    pub stale: bool,
    /// What was wrong.
    pub detail: String,
}

/// One fault and its proof.
#[derive(Clone, Debug, Serialize)]
pub struct FaultRecord {
    /// What was done (`SIGKILL node 2 (the leader)`, `blackhole sidecar-3's links`, ...).
    pub what: String,
    /// When, in milliseconds after the first write.
    pub at_ms: f64,
    /// When it was undone (restart, heal), if it was.
    pub healed_ms: Option<f64>,
    /// The evidence that it took effect (`exit by signal 9`, `dropped 1.2 MB up, 3.4 MB down`).
    pub proof: String,
    /// Whether the evidence shows it took effect.
    pub took_effect: bool,
}
