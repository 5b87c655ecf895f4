//! One scenario against recall, start to finish: a fresh 3-node authority and M sidecars, the
//! observers and the live checkers ([`super::live`]), the fault injected while the mass recall
//! is written, the wait until every sidecar holds everything (by its own report and by the
//! cluster's ack view), then the checks and the judgement of the live history.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;

use super::landing::Wave;
use super::live::Live;
use super::{FaultCtx, Scenario};
use crate::authority::{Authority, RaftTiming, Writer};
use crate::baseline::ms;
use crate::clocks::Clocks;
use crate::fleet::{Fleet, sidecar_ids};
use crate::history::live::LiveConfig;
use crate::observe::{Observer, POLL, Seen, now_ms};
use crate::pki::Pki;
use crate::report::model::{Percentiles, SubscriberRun, SystemRun};
use crate::verify::verify;
use crate::workload::{ISSUER, Workload, WriteProgress, pipelined};

/// The settings of recall scenarios.
#[derive(Clone)]
pub struct RecallSettings {
    /// The `recall` binary.
    pub recall_bin: PathBuf,
    /// Where this run keeps data, logs and its PKI (`DIR/pki`, made by the first scenario).
    pub dir: PathBuf,
    /// Sidecars.
    pub sidecars: usize,
    /// Revocations per write request.
    pub batch: usize,
    /// Write requests in flight.
    pub in_flight: usize,
    /// The authority's Raft timing.
    pub timing: RaftTiming,
    /// How long after the last write the sidecars get to hold everything.
    pub settle: Duration,
    /// How long a fault lasts.
    pub hold: Duration,
    /// The latency of a slow link.
    pub latency: Duration,
    /// Revoked and clean tokens checked per sidecar.
    pub sample: usize,
    /// The sidecars' staleness bound (the live history judges answers by it).
    pub staleness_bound: Duration,
    /// How the live checkers ask the sidecars while the wave lands.
    pub live: LiveConfig,
    /// Where progress bars go.
    pub progress: MultiProgress,
}

/// Where a scenario injects its fault: the victim and the acknowledged count to wait for.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// The sidecar a sidecar fault hits.
    pub victim: usize,
    /// Inject after this many revocations are acknowledged.
    pub after: u64,
}

impl Plan {
    /// Draws the plan from the run's random stream: a victim, and a point between a quarter and
    /// a half of the recall.
    pub fn draw(rng: &mut ChaCha8Rng, sidecars: usize, total: u64) -> Self {
        Self {
            victim: rng.random_range(0..sidecars.max(1)),
            after: (total as f64 * rng.random_range(0.25..0.5)) as u64,
        }
    }
}

fn bar(mp: &MultiProgress, len: u64, label: String) -> ProgressBar {
    let b = mp.add(ProgressBar::new(len));
    b.set_style(
        ProgressStyle::with_template("{prefix:>34} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    b.set_prefix(label);
    b
}

/// Runs `scenario` against recall.
pub async fn run(
    settings: &RecallSettings,
    scenario: Scenario,
    workload: &Workload,
    plan: Plan,
    rng: &mut ChaCha8Rng,
) -> anyhow::Result<SystemRun> {
    let dir = settings.dir.join(format!("recall-{}", scenario.name()));
    std::fs::create_dir_all(&dir)?;
    let mp = &settings.progress;
    // One PKI for the whole run (every scenario's cluster trusts the same CA).
    let pki = Pki::ensure(
        &settings.dir.join("pki"),
        3,
        &sidecar_ids(settings.sidecars),
    )
    .context("the run's certificates")?;
    let clocks = if scenario.skews_clocks() {
        Some(Arc::new(Clocks::new(&dir)?))
    } else {
        None
    };
    let authority = Arc::new(
        Authority::start(
            &settings.recall_bin,
            &dir,
            settings.timing,
            &pki,
            clocks.as_deref(),
        )
        .await
        .context("starting the authority")?,
    );
    let fleet = Arc::new(
        Fleet::start(
            &settings.recall_bin,
            &dir,
            &authority,
            settings.sidecars,
            &pki,
            settings.staleness_bound,
            clocks.as_deref(),
        )
        .await
        .context("starting the sidecars")?,
    );
    let systems = Systems {
        authority: &authority,
        fleet: &fleet,
        clocks,
    };
    let result = measure(settings, scenario, workload, plan, rng, systems).await;
    fleet.stop();
    authority.stop();
    result
        .map_err(|e| {
            e.context(format!(
                "recall {} (logs in {})",
                scenario.name(),
                dir.display()
            ))
        })
        .inspect(|_| {
            let _ = mp.println(format!("recall {}: done", scenario.name()));
        })
}

/// The running systems of one scenario.
struct Systems<'a> {
    authority: &'a Arc<Authority>,
    fleet: &'a Arc<Fleet>,
    clocks: Option<Arc<Clocks>>,
}

async fn measure(
    settings: &RecallSettings,
    scenario: Scenario,
    workload: &Workload,
    plan: Plan,
    rng: &mut ChaCha8Rng,
    systems: Systems<'_>,
) -> anyhow::Result<SystemRun> {
    let Systems {
        authority,
        fleet,
        clocks,
    } = systems;
    let n = workload.len();
    let m = fleet.sidecars.len();
    let writer = Writer::new(authority.clone(), Duration::from_secs(60));
    let mut observer = Observer::start(authority.clone(), fleet.clone());
    // Every sidecar must be known to the cluster before the clock starts.
    let deadline = Instant::now() + Duration::from_secs(30);
    while observer.cluster_versions().len() < m {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the cluster lists {} of {m} sidecars after 30 s",
            observer.cluster_versions().len()
        );
        tokio::time::sleep(POLL).await;
    }

    // A mid-recall fault holds the writes at its point until it is in place.
    let progress = if scenario.mid_recall() {
        WriteProgress::gated(plan.after)
    } else {
        WriteProgress::default()
    };
    let writes = bar(
        &settings.progress,
        n,
        format!("recall {}: writes", scenario.name()),
    );
    let started = Instant::now();
    let t0 = now_ms();
    let ctx = Arc::new(FaultCtx {
        authority: authority.clone(),
        fleet: fleet.clone(),
        writer: writer.clone(),
        progress: progress.clone(),
        started,
        after: plan.after,
        victim: plan.victim,
        hold: settings.hold,
        latency: settings.latency,
        total: n,
        staleness_bound: settings.staleness_bound,
        rule: Mutex::new(None),
        clocks,
    });
    let mut live = Live::start(
        settings.live,
        settings.staleness_bound,
        rng.random(),
        workload,
        &ctx,
    );
    let fault = {
        let (ctx, progress) = (ctx.clone(), progress.clone());
        tokio::spawn(async move {
            let r = scenario.inject(ctx).await;
            // A fault that failed before it released the writes must not hold them forever.
            progress.release();
            r
        })
    };
    let ticker = {
        let (progress, writes) = (progress.clone(), writes.clone());
        tokio::spawn(async move {
            loop {
                writes.set_position(progress.written());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let versions = pipelined(
        workload,
        settings.batch,
        settings.in_flight,
        &progress,
        |ids, range| {
            let writer = writer.clone();
            async move {
                let start = range.start;
                writer.revoke(ISSUER, &ids, range).await.map(|v| (start, v))
            }
        },
    )
    .await;
    let write_done = Instant::now();
    ticker.abort();
    writes.set_position(progress.written());
    writes.finish_with_message(format!("in {:.0} ms", ms(write_done - started)));
    let versions: std::collections::HashMap<usize, u64> = versions?.into_iter().collect();
    let faults = fault.await.context("the fault task panicked")??;
    let lifted = live.lifts_done().await.context("the lift cycles")?;
    let rule = *ctx.rule.lock().expect("rule lock");
    // The wave: the revocations and the scenario's rule. Convergence is measured to it; the
    // live checkers' lift cycles are not part of it (the baselines write none), but every
    // sidecar must hold them too before the end state is checked.
    let wave_target = versions
        .values()
        .copied()
        .chain(rule.map(|(v, _)| v))
        .max()
        .unwrap_or(0);
    let target = wave_target.max(lifted);

    // Wait for both views to show every sidecar at the target.
    let converging = bar(
        &settings.progress,
        m as u64,
        format!("recall {}: sidecars", scenario.name()),
    );
    let deadline = write_done + settings.settle;
    loop {
        let own = observer.own_versions();
        let acked = observer.cluster_versions();
        let done = |v: &std::collections::HashMap<String, u64>| {
            fleet
                .sidecars
                .iter()
                .filter(|s| v.get(&s.id).is_some_and(|x| *x >= target))
                .count()
        };
        converging.set_position(done(&own) as u64);
        if (done(&own) == m && done(&acked) == m) || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    converging.finish_and_clear();
    writes.finish_and_clear();
    settings.progress.remove(&writes);
    observer.stop().await;
    let (history, history_failures) = live.finish(&versions, fleet).await;
    let acks = progress.acks_since(0);
    let wave = Wave {
        acks: &acks,
        versions: &versions,
        started,
        t0,
    };
    let timelines: Vec<Vec<Seen>> = fleet
        .sidecars
        .iter()
        .map(|s| observer.own_timeline(&s.id))
        .collect();

    let mut failures: Vec<String> = faults
        .iter()
        .filter(|f| !f.took_effect)
        .map(|f| format!("fault did not take effect: {} ({})", f.what, f.proof))
        .collect();
    let since = |at: i64| (at - t0) as f64;
    let mut subscribers: Vec<SubscriberRun> = fleet
        .sidecars
        .iter()
        .zip(&timelines)
        .map(|(s, line)| SubscriberRun {
            id: s.id.clone(),
            converged_ms: observer.own_reached(&s.id, wave_target).map(since),
            cluster_view_ms: observer.cluster_reached(&s.id, wave_target).map(since),
            missing: 0,
            held: wave.held(line),
        })
        .collect();
    let own: Vec<f64> = subscribers.iter().filter_map(|s| s.converged_ms).collect();
    let view: Vec<f64> = subscribers
        .iter()
        .filter_map(|s| s.cluster_view_ms)
        .collect();
    let converged = own.len() == m && view.len() == m;
    if !converged {
        failures.push(format!(
            "not converged {} s after the last write: {}/{m} sidecars report version {wave_target}, the cluster saw {}/{m} acks",
            settings.settle.as_secs(),
            own.len(),
            view.len()
        ));
    }
    // The two views must tell the same story: an ack leaves right after the apply, so they
    // differ by a link's latency (twice that when the link is slowed), plus scheduling noise.
    // The cluster dates an ack by the wall clock of the node that got it, so a skewed node's
    // sidecars differ by its skew as well.
    let tolerance = 100.0 + 2.0 * ms(settings.latency) + ms(scenario.clock_skew());
    let diffs: Vec<f64> = subscribers
        .iter()
        .filter_map(|s| Some((s.converged_ms? - s.cluster_view_ms?).abs()))
        .collect();
    let max_diff = diffs
        .iter()
        .copied()
        .fold(None, |m: Option<f64>, d| Some(m.map_or(d, |m| m.max(d))));
    if let Some(d) = max_diff
        && d > tolerance
    {
        failures.push(format!(
            "the sidecars' reports and the cluster's acks differ by up to {d:.0} ms (tolerance {tolerance:.0} ms)"
        ));
    }

    let verified = verify(
        authority,
        fleet,
        workload,
        rng,
        settings.sample,
        target,
        rule.map(|(_, nb)| nb),
    )
    .await
    .context("verifying")?;
    for (s, missing) in subscribers.iter_mut().zip(&verified.missing) {
        s.missing = *missing;
    }
    failures.extend(verified.failures);
    failures.extend(history_failures);
    let lost = subscribers.iter().map(|s| s.missing).sum();
    Ok(SystemRun {
        system: "recall".into(),
        scenario: scenario.name().into(),
        revocations: n,
        write_ms: ms(write_done - started),
        exposure: Some(wave.exposure(&timelines)),
        converged,
        convergence_ms: if converged {
            Percentiles::of(&own)
        } else {
            None
        },
        cluster_view_ms: if converged {
            Percentiles::of(&view)
        } else {
            None
        },
        views_max_diff_ms: max_diff,
        lost,
        checks: Some(verified.checks),
        history: Some(history),
        subscribers,
        faults,
        failures,
    })
}
