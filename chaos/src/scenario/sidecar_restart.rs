//! One sidecar is SIGKILLed mid-recall and restarted after the hold: it warm-starts from the
//! state it persisted and resumes from there. Evidence: the exit status and the new pid.

use super::FaultCtx;
use crate::report::model::FaultRecord;

/// Kills the victim once `ctx.after` revocations are acknowledged; restarts it after the hold.
pub async fn inject(ctx: &FaultCtx) -> anyhow::Result<Vec<FaultRecord>> {
    ctx.progress.reached(ctx.after).await;
    let sidecar = &ctx.fleet.sidecars[ctx.victim];
    let at_ms = ctx.elapsed_ms();
    let exit = sidecar.proc.lock().expect("sidecar process lock").kill()?;
    ctx.progress.release();
    let pid = ctx.fleet.restart_after(sidecar, ctx.hold).await?;
    Ok(vec![FaultRecord {
        what: format!(
            "SIGKILL {}, restart after {} ms",
            sidecar.id,
            ctx.hold.as_millis()
        ),
        at_ms,
        healed_ms: Some(ctx.elapsed_ms()),
        proof: format!("{exit}; restarted as pid {pid}, ready again"),
        took_effect: true,
    }])
}
