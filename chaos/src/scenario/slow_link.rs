//! One sidecar's links add latency to every chunk, both ways, from before the first write to the
//! end of the scenario. Evidence: the chunks its proxies delivered late.

use super::FaultCtx;
use crate::report::model::FaultRecord;

/// Slows the victim's links at once; returns when every revocation is acknowledged.
pub async fn inject(ctx: &FaultCtx) -> anyhow::Result<Vec<FaultRecord>> {
    let sidecar = &ctx.fleet.sidecars[ctx.victim];
    let links = sidecar.links();
    let before: u64 = links.iter().map(|l| l.counters().delayed_chunks).sum();
    for l in &links {
        l.set_latency(ctx.latency);
    }
    let at_ms = ctx.elapsed_ms();
    ctx.progress.reached(ctx.total).await;
    let delayed = links
        .iter()
        .map(|l| l.counters().delayed_chunks)
        .sum::<u64>()
        - before;
    Ok(vec![FaultRecord {
        what: format!(
            "add {} ms to every chunk on {}'s links, both ways",
            ctx.latency.as_millis(),
            sidecar.id
        ),
        at_ms,
        healed_ms: None,
        proof: format!("proxies delivered {delayed} chunk(s) late during the writes"),
        took_effect: delayed > 0,
    }])
}
