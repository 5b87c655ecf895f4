//! Lifted credentials for the history: the mass recall never lifts, so a few cycles run beside
//! it, spread over its first half (so that they rarely outlast it and the convergence times
//! stay those of the recall). Each revokes one credential of its own, presents it once the
//! revocation is acknowledged, waits (with a deadline) until every sidecar refused it, and lifts
//! it. Both writes go into the history with their times and versions; a lift that took more
//! than one attempt has no version (an earlier attempt may have committed first).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::live::{Creds, LiftBoard};
use super::{Write, WriteKind};
use crate::authority::Writer;
use crate::workload::{ISSUER, WriteProgress};

/// Where the lift cycles run and how.
pub struct LiftPlan {
    /// Cycles.
    pub count: usize,
    /// Revocations in the whole recall (the cycles start at even fractions of its first half).
    pub total: u64,
    /// Sidecars that must refuse a credential before it is lifted.
    pub sidecars: u16,
    /// How long to wait for them before lifting anyway (a partitioned one never will).
    pub patience: Duration,
}

/// Runs the cycles; the writes, in order.
pub async fn run(
    plan: LiftPlan,
    writer: Writer,
    creds: Arc<Creds>,
    board: Arc<LiftBoard>,
    progress: WriteProgress,
    origin: Instant,
) -> anyhow::Result<Vec<Write>> {
    let mut writes = Vec::new();
    for k in 0..plan.count {
        progress
            .reached(plan.total * (k as u64 + 1) / (2 * plan.count as u64 + 2))
            .await;
        let c = creds.lifted(k);
        let id = creds.id(c).to_string();
        let sent = origin.elapsed();
        let version = writer
            .revoke(ISSUER, std::slice::from_ref(&id), 0..1)
            .await?;
        writes.push(Write {
            kind: WriteKind::Revoke,
            creds: c..c + 1,
            sent,
            acked: Some(origin.elapsed()),
            version: Some(version),
        });
        board.activate(c);
        let _ = tokio::time::timeout(plan.patience, board.refused_by_all(c, plan.sidecars)).await;
        let sent = origin.elapsed();
        let version = writer.lift(ISSUER, &id).await?;
        writes.push(Write {
            kind: WriteKind::Lift,
            creds: c..c + 1,
            sent,
            acked: Some(origin.elapsed()),
            version,
        });
    }
    Ok(writes)
}
