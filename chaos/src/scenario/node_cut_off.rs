//! A follower node is cut off mid-recall: every connection into it (its peers' Raft traffic on
//! its peer port, through both peers' links to it, and the harness's clients on its client
//! port) is blackholed, while its sidecars can still reach it. It no longer hears from the leader, so its state freezes; it must stop
//! vouching for that state (end its streams) so its sidecars move to a node that is current
//! instead of waiting for the heal. Evidence: the bytes its inbound proxies (peer links and
//! client) swallowed; the peer links' alone must be more than zero.

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
    let links = a.inbound(node.id);
    let before: Vec<_> = links.iter().map(|l| l.counters()).collect();
    let at_ms = ctx.elapsed_ms();
    for l in &links {
        l.blackhole(Blackhole::Both);
    }
    ctx.progress.release();
    let hold = recall::node::contact::out_of_touch_after(a.timing.election_timeout) + ctx.hold;
    tokio::time::sleep(hold).await;
    let during: Vec<_> = links.iter().map(|l| l.counters()).collect();
    for l in &links {
        l.heal();
    }
    let lost = |i: usize| {
        let (b, d) = (before[i], during[i]);
        let dropped = (d.dropped_up - b.dropped_up) + (d.dropped_down - b.dropped_down);
        (dropped, d.held - b.held)
    };
    // The client proxy is the last link; the peer links come before it.
    let client = lost(links.len() - 1);
    let peer = (0..links.len() - 1)
        .map(lost)
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    Ok(vec![FaultRecord {
        what: format!(
            "blackhole every connection into node {} (a follower; peer and client ports) for {} ms",
            node.id,
            hold.as_millis()
        ),
        at_ms,
        healed_ms: Some(ctx.elapsed_ms()),
        proof: format!(
            "its inbound proxies dropped {} B and held {} new connection(s): peer links {} B, {} held; client port {} B, {} held",
            peer.0 + client.0,
            peer.1 + client.1,
            peer.0,
            peer.1,
            client.0,
            client.1
        ),
        // The leader's AppendEntries go to the peer port: if nothing was dropped there, the
        // node was not cut off from the cluster.
        took_effect: peer.0 > 0,
    }])
}
