//! Mid-recall, every byte one follower sends the leader is lost, while everything the leader
//! sends it still arrives: the follower hears the leader's heartbeats and entries, but the
//! leader never hears its answers, so it cannot tell how far the follower got and the follower's
//! log stops growing. The leader commits through the other follower. The follower still hears a
//! leader, so silence alone does not make it stop vouching: knowing the cluster committed what it
//! has not applied must. Evidence: the bytes the follower's answers lost, and the bytes of the
//! leader's that still reached it.

use super::FaultCtx;
use super::peer_fault::{hold_and_heal, leader_and_follower};
use crate::links::LinkFault;
use crate::report::model::FaultRecord;

/// Cuts what a follower sends the leader once `ctx.after` revocations are acknowledged; heals
/// after [`super::peer_fault::hold`].
pub async fn inject(ctx: &FaultCtx) -> anyhow::Result<Vec<FaultRecord>> {
    ctx.progress.reached(ctx.after).await;
    let (leader, follower) = leader_and_follower(ctx).await?;
    let at_ms = ctx.elapsed_ms();
    let fault = LinkFault::one_way(&ctx.authority, follower, leader);
    let toward = ctx.authority.link(leader, follower).counters().bytes_up;
    ctx.progress.release();
    let mut record = hold_and_heal(ctx, fault, at_ms, None).await;
    let reached = ctx.authority.link(leader, follower).counters().bytes_up - toward;
    record.proof.push_str(&format!(
        "; node {leader}'s requests still delivered {reached} B to node {follower}"
    ));
    record.took_effect &= reached > 0;
    Ok(vec![record])
}
