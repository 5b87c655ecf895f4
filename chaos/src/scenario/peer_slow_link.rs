//! The link between the leader and one follower adds latency to every chunk, both ways, from
//! before the first write until every revocation is acknowledged, and for at least as long as
//! a fault between nodes holds ([`super::peer_fault::hold`]). The leader commits through the
//! other follower; the slow one applies late, and every sidecar, its own included, must still
//! refuse each acknowledged revocation within the staleness bound. openraft gives an
//! AppendEntries one heartbeat interval to be answered, so a latency of half the heartbeat or
//! more each way means the slow follower's answers never arrive in time: it hears the leader
//! but stops catching up, and must stop vouching for its state. A node dates what it hears by
//! its receipt, so the staleness bound holds there to within the link's one-way latency: this
//! scenario can show "bound" violations of up to that much (seed 11, 10k revocations, 3
//! sidecars, a 3 s bound: 39 answers allowed up to 46 ms past it). Evidence: the chunks the two
//! links delivered late.

use super::FaultCtx;
use super::peer_fault::{hold, leader_and_follower};
use crate::links::LinkFault;
use crate::report::model::FaultRecord;

/// Slows the link at once; heals once every revocation is acknowledged and the hold has passed.
pub async fn inject(ctx: &FaultCtx) -> anyhow::Result<Vec<FaultRecord>> {
    let (leader, follower) = leader_and_follower(ctx).await?;
    let fault = LinkFault::slow(&ctx.authority, leader, follower, ctx.latency);
    let at_ms = ctx.elapsed_ms();
    let started = tokio::time::Instant::now();
    ctx.progress.reached(ctx.total).await;
    tokio::time::sleep_until(started + hold(ctx)).await;
    let what = fault.what().to_owned();
    let effect = fault.heal();
    Ok(vec![FaultRecord {
        what: format!(
            "{what}, until every write was acknowledged and {} ms had passed (node {leader} led)",
            hold(ctx).as_millis()
        ),
        at_ms,
        healed_ms: Some(ctx.elapsed_ms()),
        proof: format!("peer links {effect}"),
        took_effect: effect.delayed > 0,
    }])
}
