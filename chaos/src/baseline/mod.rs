//! What people use instead of recall, through the same workload on the same machine:
//! [`etcd`] (3 members on loopback; revocations as keys, subscribers as watchers) and [`redis`]
//! (SET plus PUBLISH; subscribers on SUBSCRIBE). Each subscriber keeps its own set of what it
//! received, behind its own fault-injecting proxy, and reports when it held everything.

pub mod etcd;
pub mod redis;
pub mod tally;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use indicatif::MultiProgress;
use tokio::time::Instant;

use crate::history::exposure::from_receipts;
use crate::proxy::{Blackhole, Link};
use crate::report::model::{FaultRecord, Percentiles, SubscriberRun, SystemRun};
use crate::workload::WriteProgress;
pub use tally::{Tally, WaveIndex};

/// The settings of a baseline run.
#[derive(Clone)]
pub struct BaselineConfig {
    /// Subscribers (watchers).
    pub subscribers: usize,
    /// Revocations per write request (etcd transaction, Redis pipeline).
    pub batch: usize,
    /// Write requests in flight.
    pub in_flight: usize,
    /// How long after the last write the subscribers get to hold everything.
    pub settle: Duration,
    /// Where servers keep their data (a fresh directory per run).
    pub work_dir: PathBuf,
    /// Where progress bars go.
    pub progress: MultiProgress,
}

/// The fault of a baseline scenario.
#[derive(Clone, Copy, Debug)]
pub enum BaselineFault {
    /// None.
    None,
    /// Subscriber `victim`'s link is blackholed both ways once `after` revocations are
    /// acknowledged, for `hold`, then healed.
    SubscriberPartition {
        /// Which subscriber.
        victim: usize,
        /// After how many acknowledged revocations.
        after: u64,
        /// How long the partition lasts.
        hold: Duration,
    },
}

impl BaselineFault {
    /// The write progress for this fault: gated at the partition point, so the partition
    /// lands mid-recall.
    pub fn progress(&self) -> WriteProgress {
        match self {
            BaselineFault::None => WriteProgress::default(),
            BaselineFault::SubscriberPartition { after, .. } => WriteProgress::gated(*after),
        }
    }

    /// The scenario's name, shared with recall's scenarios.
    pub fn scenario(&self) -> &'static str {
        match self {
            BaselineFault::None => "no-fault",
            BaselineFault::SubscriberPartition { .. } => "sidecar-partition",
        }
    }
}

/// Waits until every tally is complete or `deadline`.
pub async fn settle(tallies: &[Arc<Tally>], deadline: Instant) {
    while Instant::now() < deadline && tallies.iter().any(|t| t.complete_at().is_none()) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Partitions `link` for `hold` (releasing the writes `progress` held back), then heals it;
/// the record says what the proxy dropped.
pub async fn partition(
    link: &Link,
    hold: Duration,
    started: Instant,
    progress: &WriteProgress,
) -> FaultRecord {
    let before = link.counters();
    let at = started.elapsed();
    link.blackhole(Blackhole::Both);
    progress.release();
    tokio::time::sleep(hold).await;
    let during = link.counters();
    link.heal();
    let healed = started.elapsed();
    let dropped_up = during.dropped_up - before.dropped_up;
    let dropped_down = during.dropped_down - before.dropped_down;
    FaultRecord {
        what: format!(
            "blackhole {} both ways for {} ms",
            link.name(),
            hold.as_millis()
        ),
        at_ms: ms(at),
        healed_ms: Some(ms(healed)),
        proof: format!(
            "proxy dropped {dropped_up} B up, {dropped_down} B down, held {} connection(s)",
            during.held - before.held
        ),
        took_effect: dropped_up + dropped_down > 0 || during.held > before.held,
    }
}

/// Milliseconds of `d`, as a float.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The result of a baseline run from its tallies and the writer's acknowledgements.
#[allow(clippy::too_many_arguments)]
pub fn result(
    system: &str,
    fault: BaselineFault,
    expected: u64,
    started: Instant,
    write_done: Instant,
    tallies: &[Arc<Tally>],
    progress: &WriteProgress,
    faults: Vec<FaultRecord>,
) -> SystemRun {
    let since = |at: Instant| ms(at.saturating_duration_since(started));
    let subscribers: Vec<SubscriberRun> = tallies
        .iter()
        .map(|t| SubscriberRun {
            id: t.id.clone(),
            converged_ms: t.complete_at().map(since),
            cluster_view_ms: None,
            missing: expected.saturating_sub(t.held() as u64),
            held: std::iter::once((0.0, 0.0))
                .chain(t.curve().into_iter().map(|(at, f)| (since(at), f)))
                .collect(),
        })
        .collect();
    let acks: Vec<(f64, usize)> = progress
        .acks_since(0)
        .iter()
        .filter_map(|a| {
            let index = tallies.first()?.index();
            Some((since(a.at), index.write_starting_at(a.range.start)))
        })
        .collect();
    let held: Vec<Vec<Option<f64>>> = tallies
        .iter()
        .map(|t| {
            t.writes_held()
                .into_iter()
                .map(|at| at.map(since))
                .collect()
        })
        .collect();
    let exposure = from_receipts(&acks, &held);
    let times: Vec<f64> = subscribers.iter().filter_map(|s| s.converged_ms).collect();
    let converged = times.len() == subscribers.len();
    let lost: u64 = subscribers.iter().map(|s| s.missing).sum();
    let mut failures = Vec::new();
    for f in faults.iter().filter(|f| !f.took_effect) {
        failures.push(format!(
            "fault did not take effect: {} ({})",
            f.what, f.proof
        ));
    }
    SystemRun {
        system: system.into(),
        scenario: fault.scenario().into(),
        revocations: expected,
        write_ms: ms(write_done - started),
        exposure: Some(exposure),
        converged,
        convergence_ms: if converged {
            Percentiles::of(&times)
        } else {
            None
        },
        subscribers,
        cluster_view_ms: None,
        views_max_diff_ms: None,
        lost,
        checks: None,
        history: None,
        faults,
        failures,
    }
}
