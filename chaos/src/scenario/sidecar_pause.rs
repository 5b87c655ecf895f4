//! One sidecar is frozen with SIGSTOP mid-recall and thawed with SIGCONT after the hold: its
//! connections stay open but nothing is read, so the node's stream backs up. Evidence: the
//! process state the kernel reports.

use super::FaultCtx;
use crate::report::model::FaultRecord;

/// Pauses the victim once `ctx.after` revocations are acknowledged; resumes it after the hold.
pub async fn inject(ctx: &FaultCtx) -> anyhow::Result<Vec<FaultRecord>> {
    ctx.progress.reached(ctx.after).await;
    let sidecar = &ctx.fleet.sidecars[ctx.victim];
    let at_ms = ctx.elapsed_ms();
    let paused = sidecar.proc.lock().expect("sidecar process lock").pause()?;
    ctx.progress.release();
    tokio::time::sleep(ctx.hold).await;
    let resumed = sidecar
        .proc
        .lock()
        .expect("sidecar process lock")
        .resume()?;
    Ok(vec![FaultRecord {
        what: format!(
            "SIGSTOP {}, SIGCONT after {} ms",
            sidecar.id,
            ctx.hold.as_millis()
        ),
        at_ms,
        healed_ms: Some(ctx.elapsed_ms()),
        proof: format!("{paused}; then {resumed}"),
        took_effect: true,
    }])
}
