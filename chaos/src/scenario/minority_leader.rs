//! The leader is isolated from both followers mid-recall, while its own sidecars (and the
//! harness) still reach it: a minority leader. The followers elect a leader of their own and the
//! writes move there; the old leader still holds its state and its sidecars' streams, but no
//! quorum acknowledges it any more, so within two election timeouts its heartbeats stop
//! vouching, its sidecars count the silence from its last quorum acknowledgement (they report
//! stale rather than answer for revocations it never saw), and after ten it ends their streams
//! so they move to the majority. Evidence: the bytes its peer links swallowed, and a new leader
//! among the followers while it is isolated.

use std::time::Duration;

use tokio::time::Instant;

use super::FaultCtx;
use super::peer_fault::{hold, record};
use crate::authority::Authority;
use crate::links::LinkFault;
use crate::report::model::FaultRecord;

/// Isolates the leader once `ctx.after` revocations are acknowledged; heals after
/// [`hold`].
pub async fn inject(ctx: &FaultCtx) -> anyhow::Result<Vec<FaultRecord>> {
    ctx.progress.reached(ctx.after).await;
    let (leader, _) = super::peer_fault::leader_and_follower(ctx).await?;
    let a = &ctx.authority;
    let at_ms = ctx.elapsed_ms();
    let started = Instant::now();
    let fault = LinkFault::isolate(a, leader);
    ctx.progress.release();
    let held = hold(ctx);
    let elected = majority_leader(a, leader, started + held).await;
    tokio::time::sleep_until(started + held).await;
    let words = match elected {
        Some((id, after)) => format!(
            "; nodes {:?} elected node {id} {} ms after node {leader} was isolated",
            a.others(leader),
            after.as_millis()
        ),
        None => format!(
            "; nodes {:?} elected no leader of their own while node {leader} was isolated",
            a.others(leader)
        ),
    };
    Ok(vec![record(
        ctx,
        fault,
        held,
        at_ms,
        Some((elected.is_some(), words)),
    )])
}

/// Waits until `deadline` for the nodes other than `old` to agree on a leader among themselves
/// that answers as leader; the leader and how long it took.
async fn majority_leader(a: &Authority, old: u64, deadline: Instant) -> Option<(u64, Duration)> {
    let started = Instant::now();
    let others = a.others(old);
    while Instant::now() < deadline {
        let mut seen = Vec::new();
        for id in &others {
            seen.push(a.status(*id).await.ok().and_then(|s| s.leader_id));
        }
        if let Some(Some(l)) = seen.first().copied()
            && seen.iter().all(|s| *s == Some(l))
            && others.contains(&l)
        {
            return Some((l, started.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}
