//! The leader's wall clock jumps 5 s ahead mid-recall and, after ten election timeouts plus the
//! hold, 5 s back to true time (an operator fixing a host's clock). Every process of this
//! scenario runs under libfaketime ([`crate::clocks`]) with only `CLOCK_REALTIME` faked: the
//! monotonic clock, which drives Raft's timers, heartbeats, silence timeouts and the sidecars'
//! staleness, stays true, as it does on a real host whose wall clock is wrong.
//!
//! What a wrong wall clock on the leader touches: the time it stamps on every command it
//! proposes (the audit trail; replicas apply the stamp, never their own clock, so they stay
//! deterministic), and the "now" of its prune of expired entries (minus the grace). What must not
//! depend on it: staleness (each process measures silence on its own monotonic clock, and
//! heartbeats carry ages, not times), so the live history must keep every rule while the clock
//! is off and after it steps back, and the cluster must converge with equal digests. A
//! not-before rule is written through the skewed leader (its not-before from the harness's true
//! clock): every sidecar must enforce it by the end. Evidence: the rule's stamp in the audit
//! trail is ahead of the harness's clock by about the skew.

use std::time::Duration;

use anyhow::Context;
use recall::proto as pb;

use super::FaultCtx;
use super::peer_fault::{hold, leader_and_follower};
use crate::authority::{Authority, explain, node_name, timed};
use crate::clocks::TAKES_EFFECT;
use crate::observe::now_ms;
use crate::report::model::FaultRecord;
use crate::scenario::rule_partition::RULE_ISSUER;

/// How far the leader's wall clock jumps ahead.
pub const SKEW_S: i64 = 5;

/// Skews the leader's clock once `ctx.after` revocations are acknowledged; sets it back after
/// [`hold`].
pub async fn inject(ctx: &FaultCtx) -> anyhow::Result<Vec<FaultRecord>> {
    ctx.progress.reached(ctx.after).await;
    let clocks = ctx
        .clocks
        .as_ref()
        .context("the clock-skew scenario runs its processes under libfaketime")?;
    let a = &ctx.authority;
    let (leader, _) = leader_and_follower(ctx).await?;
    let name = node_name(leader);
    let at_ms = ctx.elapsed_ms();
    clocks.set(&name, SKEW_S)?;
    // Release the writes once the node has read its offset file again.
    tokio::time::sleep(TAKES_EFFECT).await;
    ctx.progress.release();
    let held = hold(ctx);
    let healed_at = tokio::time::Instant::now() + held;
    // A not-before rule written through the skewed leader: its stamp is the proof, and every
    // sidecar must enforce it by the end (its not-before is the harness's true time).
    let not_before = now_ms();
    let version = ctx.writer.recall_issuer(RULE_ISSUER, not_before).await?;
    let acked = now_ms();
    *ctx.rule.lock().expect("rule lock") = Some((version, not_before));
    let ahead = stamp_of(a, leader, version).await.map(|at| at - acked);
    tokio::time::sleep_until(healed_at).await;
    clocks.set(&name, 0)?;
    let words = match &ahead {
        Ok(ms) => format!(
            "a not-before rule on {RULE_ISSUER} committed at version {version}, stamped {ms} ms after the harness had its acknowledgement"
        ),
        Err(e) => format!("the rule at version {version}: {e:#}"),
    };
    Ok(vec![FaultRecord {
        what: format!(
            "node {leader}'s wall clock (the leader's) {SKEW_S} s ahead for {} ms, then back to true time",
            (held + TAKES_EFFECT).as_millis()
        ),
        at_ms,
        healed_ms: Some(ctx.elapsed_ms()),
        proof: words,
        // The stamp is later than the acknowledgement by most of the skew.
        took_effect: matches!(ahead, Ok(ms) if ms > (SKEW_S * 1000) / 2),
    }])
}

/// The time node `id` stamped on the command at `version` (Unix milliseconds, its clock).
async fn stamp_of(a: &Authority, id: u64, version: u64) -> anyhow::Result<i64> {
    let mut c = a.node(id).client.clone();
    let req = pb::AuditLogRequest {
        from_version: Some(version),
        limit: 1,
    };
    let explain = |s: tonic::Status| anyhow::anyhow!("AuditLog: {}", explain(&s));
    let mut stream = timed(Duration::from_secs(5), c.audit_log(req))
        .await
        .map_err(explain)?
        .into_inner();
    let r = timed(Duration::from_secs(5), stream.message())
        .await
        .map_err(explain)?
        .with_context(|| format!("no audit record at version {version}"))?;
    anyhow::ensure!(
        r.version == version,
        "the audit trail's first record from version {version} is version {}",
        r.version
    );
    Ok(r.at_ms)
}
