//! A follower node is frozen with SIGSTOP mid-recall while the wave keeps landing on the other
//! two, for ten election timeouts plus the hold or the sidecars' staleness bound plus the hold,
//! whichever is longer (7 s at the CI settings: past the staleness bound and the sidecars'
//! silence timeout), then thawed with SIGCONT. Its connections stay
//! open but nothing answers on them: its sidecars must notice the silence and answer stale
//! (failing closed) or move to another node, never "allowed", fresh, for a revocation
//! acknowledged longer ago than the bound. Once thawed it must catch up (from the leader's log or
//! a snapshot) to the version the cluster had reached, with the same digest (the end-of-scenario
//! check compares every node's). Evidence: the process state the kernel reported, how far behind
//! it was when thawed, and how long it took to catch up.

use std::time::Duration;

use anyhow::Context;
use tokio::time::Instant;

use super::FaultCtx;
use super::peer_fault::{hold, leader_and_follower};
use crate::authority::Authority;
use crate::report::model::FaultRecord;

/// How long a thawed follower gets to catch up before the fault counts as not healed.
const CATCH_UP: Duration = Duration::from_secs(30);

/// Pauses a follower once `ctx.after` revocations are acknowledged; resumes it after
/// [`paused_for`] and waits until it has caught up with the leader.
pub async fn inject(ctx: &FaultCtx) -> anyhow::Result<Vec<FaultRecord>> {
    ctx.progress.reached(ctx.after).await;
    let a = &ctx.authority;
    let (leader, follower) = leader_and_follower(ctx).await?;
    let before = a
        .status(follower)
        .await
        .map(|s| s.applied_version)
        .unwrap_or(0);
    let at_ms = ctx.elapsed_ms();
    let paused = a
        .node(follower)
        .proc
        .lock()
        .expect("node process lock")
        .pause()?;
    ctx.progress.release();
    let held = paused_for(ctx);
    tokio::time::sleep(held).await;
    // What the cluster reached while it slept: the version it has to catch up to.
    let target = cluster_version(a, follower).await;
    let resumed = a
        .node(follower)
        .proc
        .lock()
        .expect("node process lock")
        .resume()?;
    let thawed = Instant::now();
    let caught_up = loop {
        match a.status(follower).await {
            Ok(s) if s.applied_version >= target => break Some(thawed.elapsed()),
            _ if thawed.elapsed() >= CATCH_UP => break None,
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let behind = target.saturating_sub(before);
    let words = match caught_up {
        Some(t) => format!(
            "caught up to version {target} ({behind} versions past where it stopped, {before}) {} ms after SIGCONT",
            t.as_millis()
        ),
        None => format!(
            "not at version {target} {} s after SIGCONT",
            CATCH_UP.as_secs()
        ),
    };
    Ok(vec![FaultRecord {
        what: format!(
            "SIGSTOP node {follower} (a follower of node {leader}), SIGCONT after {} ms",
            held.as_millis()
        ),
        at_ms,
        healed_ms: Some(ctx.elapsed_ms()),
        proof: format!("{paused}; then {resumed}; {words}"),
        // The writes went on without it: it had something to catch up on, and did.
        took_effect: caught_up.is_some() && behind > 0,
    }])
}

/// How long the follower stays frozen: longer than the staleness bound (so its sidecars must
/// stop vouching for what it last sent them) and than ten election timeouts (so it misses
/// elections' worth of heartbeats), by the hold.
pub fn paused_for(ctx: &FaultCtx) -> Duration {
    hold(ctx).max(ctx.staleness_bound + ctx.hold)
}

/// The highest version the nodes other than `paused` have applied.
async fn cluster_version(a: &Authority, paused: u64) -> u64 {
    let mut best = 0;
    for id in a.others(paused) {
        if let Ok(s) = a.status(id).await.context("status") {
            best = best.max(s.applied_version);
        }
    }
    best
}
