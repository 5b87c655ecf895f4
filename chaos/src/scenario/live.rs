//! The live history of one recall scenario: the checkers and the lift cycles start with the
//! writes, and once the sidecars hold everything what they recorded is judged
//! ([`crate::history::check`]) and measured ([`crate::history::exposure`]) into the scenario's
//! [`HistoryReport`] and failures.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinHandle;

use super::FaultCtx;
use crate::baseline::ms;
use crate::fleet::Fleet;
use crate::history::check::check;
use crate::history::exposure::from_answers;
use crate::history::lifts::{self, LiftPlan};
use crate::history::live::{Checkers, Creds, LiftBoard, LiveConfig, Recorded, Shared, watched};
use crate::history::{History, Write, WriteKind};
use crate::report::model::{HistoryReport, ViolationRecord};
use crate::workload::Workload;

impl Drop for Live {
    fn drop(&mut self) {
        // A scenario that failed before judging must not leave lift cycles writing.
        if let Some(task) = &self.lifts {
            task.abort();
        }
    }
}

/// How many violations a scenario's failures spell out (the report lists more).
const SPELLED_OUT: usize = 5;

/// The checkers and lift cycles of a running scenario.
pub struct Live {
    shared: Arc<Shared>,
    checkers: Checkers,
    lifts: Option<JoinHandle<anyhow::Result<Vec<Write>>>>,
    lift_writes: Vec<Write>,
    bound: Duration,
}

impl Live {
    /// Starts them beside the writes of `workload`, on the scenario's fleet, writer and
    /// progress (`ctx`), with times from its first write.
    pub fn start(
        cfg: LiveConfig,
        bound: Duration,
        seed: u64,
        workload: &Workload,
        ctx: &FaultCtx,
    ) -> Self {
        let (fleet, progress, origin) = (&ctx.fleet, &ctx.progress, ctx.started);
        let creds = Arc::new(Creds::new(workload, cfg.clean_pool, cfg.lifts));
        let board = Arc::new(LiftBoard::default());
        let shared = Arc::new(Shared {
            cfg,
            creds: creds.clone(),
            progress: progress.clone(),
            board: board.clone(),
            origin,
            seed,
        });
        let checkers = Checkers::start(shared.clone(), &fleet.sidecars);
        let plan = LiftPlan {
            count: cfg.lifts,
            total: workload.len(),
            sidecars: fleet.sidecars.len() as u16,
            patience: Duration::from_secs(1),
        };
        let lifts = tokio::spawn(lifts::run(
            plan,
            ctx.writer.clone(),
            creds,
            board,
            progress.clone(),
            origin,
        ));
        Self {
            shared,
            checkers,
            lifts: Some(lifts),
            lift_writes: Vec::new(),
            bound,
        }
    }

    /// Waits for the lift cycles; the highest version they wrote.
    pub async fn lifts_done(&mut self) -> anyhow::Result<u64> {
        if let Some(task) = self.lifts.take() {
            self.lift_writes = task.await.context("the lift task panicked")??;
        }
        Ok(self
            .lift_writes
            .iter()
            .filter_map(|w| w.version)
            .max()
            .unwrap_or(0))
    }

    /// Stops the checkers and judges the history: the report, and the failures it found.
    /// `versions` maps each write's first index to the version it was acknowledged at.
    pub async fn finish(
        mut self,
        versions: &HashMap<usize, u64>,
        fleet: &Fleet,
    ) -> (HistoryReport, Vec<String>) {
        let checkers = std::mem::replace(&mut self.checkers, Checkers::none());
        let Recorded {
            answers,
            unanswered,
        } = checkers.stop().await;
        let s = &self.shared;
        let acks = s.progress.acks_since(0);
        let mut writes: Vec<Write> = acks
            .iter()
            .map(|a| Write {
                kind: WriteKind::Revoke,
                creds: s.creds.revoked(a.range.start)..s.creds.revoked(a.range.end),
                // The write was sent no later than it was acknowledged; only its ack matters.
                sent: a.at - s.origin,
                acked: Some(a.at - s.origin),
                version: versions.get(&a.range.start).copied(),
            })
            .collect();
        writes.extend(self.lift_writes.iter().cloned());
        let lifts = self
            .lift_writes
            .iter()
            .filter(|w| w.kind == WriteKind::Lift)
            .count() as u64;
        let history = History {
            bound: self.bound,
            full_mode: true,
            writes,
            answers,
        };
        let judged = check(&history);

        let sampled: Vec<_> = acks
            .iter()
            .flat_map(|a| watched(s.seed, &a.range, s.cfg.watch_per_ack))
            .collect();
        let exposure_checks = from_answers(&history, &sampled, fleet.sidecars.len() as u16);
        let first: Vec<ViolationRecord> = judged
            .first
            .iter()
            .map(|v| ViolationRecord {
                rule: v.rule,
                sidecar: fleet.sidecars[usize::from(v.answer.sidecar)].id.clone(),
                token: s.creds.id(v.answer.cred).to_string(),
                sent_ms: ms(v.answer.sent),
                received_ms: ms(v.answer.received),
                version: v.answer.version,
                stale: v.answer.stale,
                detail: v.detail.clone(),
            })
            .collect();
        let mut failures = Vec::new();
        let c = judged.violations;
        if c.total() > 0 {
            failures.push(format!(
                "the live history broke its rules {} times (bound {}, monotonic {}, versioned {}, never-revoked {}, policy {}); the first:",
                c.total(),
                c.bound,
                c.monotonic,
                c.versioned,
                c.never_revoked,
                c.policy
            ));
            for v in first.iter().take(SPELLED_OUT) {
                failures.push(format!(
                    "  {:.0}–{:.0} ms: {} on {}, token {}: {}",
                    v.sent_ms,
                    v.received_ms,
                    v.rule.name(),
                    v.sidecar,
                    v.token,
                    v.detail
                ));
            }
        }
        let a = judged.answers;
        let expect_lifted = s.cfg.lifts > 0;
        if a.revoked == 0 || a.never_revoked == 0 || (expect_lifted && a.lifted == 0) {
            failures.push(format!(
                "the live history is too thin to judge: {} answers for revoked, {} for never-revoked, {} for lifted credentials",
                a.revoked, a.never_revoked, a.lifted
            ));
        }
        let report = HistoryReport {
            bound_ms: ms(self.bound),
            period_ms: ms(s.cfg.period),
            answers: a,
            unanswered,
            lifts,
            violations: c,
            first,
            exposure_checks,
        };
        (report, failures)
    }
}
