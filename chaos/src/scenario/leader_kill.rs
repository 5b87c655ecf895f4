//! The leader is SIGKILLed mid-recall. The writes move to the new leader, the sidecars that
//! followed the dead node move to a live one, and after the hold the node is restarted on the
//! same data and catches up. Evidence: the exit status, and a new leader other than the dead one.

use std::time::Duration;

use anyhow::{Context, bail};

use super::FaultCtx;
use crate::report::model::FaultRecord;

/// Kills the leader once `ctx.after` revocations are acknowledged; restarts it after the hold.
pub async fn inject(ctx: &FaultCtx) -> anyhow::Result<Vec<FaultRecord>> {
    ctx.progress.reached(ctx.after).await;
    let a = &ctx.authority;
    let leader = a
        .wait_for_leader(Duration::from_secs(10))
        .await
        .context("no leader to kill")?;
    let at_ms = ctx.elapsed_ms();
    let exit = a
        .node(leader)
        .proc
        .lock()
        .expect("node process lock")
        .kill()?;
    ctx.progress.release();
    let after_kill = tokio::time::Instant::now();
    let elected = a
        .wait_for_leader(Duration::from_secs(10))
        .await
        .context("no new leader after the kill")?;
    let election_ms = crate::baseline::ms(after_kill.elapsed());
    if elected == leader {
        bail!("node {leader} is still reported leader after SIGKILL");
    }
    tokio::time::sleep(ctx.hold).await;
    let pid = a
        .node(leader)
        .proc
        .lock()
        .expect("node process lock")
        .restart()?;
    Ok(vec![FaultRecord {
        what: format!(
            "SIGKILL node {leader} (the leader), restart after {} ms",
            ctx.hold.as_millis()
        ),
        at_ms,
        healed_ms: Some(ctx.elapsed_ms()),
        proof: format!(
            "{exit}; node {elected} led {election_ms:.0} ms later; restarted as pid {pid}"
        ),
        took_effect: true,
    }])
}
