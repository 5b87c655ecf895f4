//! A follower node is cut off mid-recall: every connection into it (its peers' Raft traffic, the
//! harness's clients) is blackholed, while its sidecars can still reach it. It no longer hears
//! from the leader, so its state freezes; it must stop vouching for that state (end its streams)
//! so its sidecars move to a node that is current instead of waiting for the heal. Evidence: the
//! bytes its inbound proxy swallowed.

use std::time::Duration;

use anyhow::Context;

use super::FaultCtx;
use crate::proxy::Blackhole;
use crate::report::model::FaultRecord;

/// Cuts off a follower once `ctx.after` revocations are acknowledged, for as long as the node
/// takes to give up on the leader plus the hold; then heals.
pub async fn inject(ctx: &FaultCtx) -> anyhow::Result<Vec<FaultRecord>> {
    ctx.progress.reached(ctx.after).await;
    let a = &ctx.authority;
    let leader = a
        .wait_for_leader(Duration::from_secs(10))
        .await
        .context("no leader")?;
    let node = a
        .nodes
        .iter()
        .find(|n| n.id != leader)
        .context("no follower")?;
    let link = node.link();
    let before = link.counters();
    let at_ms = ctx.elapsed_ms();
    link.blackhole(Blackhole::Both);
    ctx.progress.release();
    let hold = recall::node::contact::out_of_touch_after(a.timing.election_timeout) + ctx.hold;
    tokio::time::sleep(hold).await;
    let during = link.counters();
    link.heal();
    let dropped =
        (during.dropped_up - before.dropped_up) + (during.dropped_down - before.dropped_down);
    Ok(vec![FaultRecord {
        what: format!(
            "blackhole every connection into node {} (a follower) for {} ms",
            node.id,
            hold.as_millis()
        ),
        at_ms,
        healed_ms: Some(ctx.elapsed_ms()),
        proof: format!(
            "its inbound proxy dropped {dropped} B and held {} new connection(s)",
            during.held - before.held
        ),
        took_effect: dropped > 0,
    }])
}
