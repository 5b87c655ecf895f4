//! The leader and one follower are partitioned from each other mid-recall: nothing passes
//! between them, either way, while each still reaches the third node and every sidecar still
//! reaches every node. The leader keeps its quorum through the other follower, so the writes go
//! on; the cut-off follower no longer hears a leader, so within two election timeouts it stops
//! vouching for its frozen state, its sidecars count the silence against their staleness bound,
//! and after ten it ends their streams so they move to a node that is current. Evidence: the
//! bytes the two links swallowed.

use super::FaultCtx;
use super::peer_fault::{hold_and_heal, leader_and_follower};
use crate::links::LinkFault;
use crate::report::model::FaultRecord;

/// Partitions the leader from a follower once `ctx.after` revocations are acknowledged; heals
/// after [`super::peer_fault::hold`].
pub async fn inject(ctx: &FaultCtx) -> anyhow::Result<Vec<FaultRecord>> {
    ctx.progress.reached(ctx.after).await;
    let (leader, follower) = leader_and_follower(ctx).await?;
    let at_ms = ctx.elapsed_ms();
    let fault = LinkFault::partition(&ctx.authority, leader, follower);
    ctx.progress.release();
    let words = format!("; node {leader} led, node {follower} followed");
    Ok(vec![
        hold_and_heal(ctx, fault, at_ms, Some((true, words))).await,
    ])
}
