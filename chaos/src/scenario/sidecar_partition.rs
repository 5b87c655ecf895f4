//! One sidecar is cut off from every node mid-recall (both ways), then healed. It must notice
//! the silence, keep reconnecting, and on heal resume from the version it holds. Evidence: the
//! bytes its proxies swallowed.

use super::FaultCtx;
use crate::proxy::Blackhole;
use crate::report::model::FaultRecord;

/// Partitions the victim once `ctx.after` revocations are acknowledged; heals after the hold.
pub async fn inject(ctx: &FaultCtx) -> anyhow::Result<Vec<FaultRecord>> {
    ctx.progress.reached(ctx.after).await;
    Ok(vec![partition(ctx, || async {}).await])
}

/// Partitions the victim, runs `during` (while it is cut off), waits out the hold, heals.
pub async fn partition<F, Fut>(ctx: &FaultCtx, during: F) -> FaultRecord
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let sidecar = &ctx.fleet.sidecars[ctx.victim];
    let links = sidecar.links();
    let before: Vec<_> = links.iter().map(|l| l.counters()).collect();
    let at_ms = ctx.elapsed_ms();
    for l in &links {
        l.blackhole(Blackhole::Both);
    }
    ctx.progress.release();
    let held = tokio::time::Instant::now();
    during().await;
    tokio::time::sleep_until(held + ctx.hold).await;
    let after: Vec<_> = links.iter().map(|l| l.counters()).collect();
    for l in &links {
        l.heal();
    }
    let (mut up, mut down, mut conns) = (0, 0, 0);
    for (b, a) in before.iter().zip(&after) {
        up += a.dropped_up - b.dropped_up;
        down += a.dropped_down - b.dropped_down;
        conns += a.held - b.held;
    }
    FaultRecord {
        what: format!(
            "blackhole {}'s links both ways for {} ms",
            sidecar.id,
            ctx.hold.as_millis()
        ),
        at_ms,
        healed_ms: Some(ctx.elapsed_ms()),
        proof: format!("proxies dropped {up} B up, {down} B down; held {conns} new connection(s)"),
        took_effect: down > 0,
    }
}
