//! What the scenarios that break links between nodes share: which follower a fault hits (drawn
//! from the run's seed), how long it holds, and the record of what it did.

use std::time::Duration;

use anyhow::Context;

use super::FaultCtx;
use crate::links::LinkFault;
use crate::report::model::FaultRecord;

/// The leader now, and the follower a two-node fault pairs it with: one of the two, by the
/// scenario's drawn victim, so the seed decides.
pub async fn leader_and_follower(ctx: &FaultCtx) -> anyhow::Result<(u64, u64)> {
    let a = &ctx.authority;
    let leader = a
        .wait_for_leader(Duration::from_secs(10))
        .await
        .context("no leader")?;
    let followers = a.others(leader);
    Ok((leader, followers[ctx.victim % followers.len()]))
}

/// How long a fault between nodes lasts: long enough for a node that no longer hears a leader to
/// give up and end its streams (so its sidecars must move), plus the hold.
pub fn hold(ctx: &FaultCtx) -> Duration {
    recall::node::contact::out_of_touch_after(ctx.authority.timing.election_timeout) + ctx.hold
}

/// Holds `fault` for [`hold`], heals it, and records it: it took effect when its links dropped
/// bytes (and `also` holds, with its own words appended to the proof).
pub async fn hold_and_heal(
    ctx: &FaultCtx,
    fault: LinkFault,
    at_ms: f64,
    also: Option<(bool, String)>,
) -> FaultRecord {
    let held = hold(ctx);
    tokio::time::sleep(held).await;
    record(ctx, fault, held, at_ms, also)
}

/// Heals `fault`, which was in place for `held` from `at_ms`, and records it.
pub fn record(
    ctx: &FaultCtx,
    fault: LinkFault,
    held: Duration,
    at_ms: f64,
    also: Option<(bool, String)>,
) -> FaultRecord {
    let what = format!("{} for {} ms", fault.what(), held.as_millis());
    let effect = fault.heal();
    let (ok, words) = also.unwrap_or((true, String::new()));
    FaultRecord {
        what,
        at_ms,
        healed_ms: Some(ctx.elapsed_ms()),
        proof: format!("peer links {effect}{words}"),
        took_effect: effect.dropped > 0 && ok,
    }
}
