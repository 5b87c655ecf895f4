//! A mass not-before recall written while the leader is isolated: mid-recall the leader is cut
//! off from both followers (its sidecars and the harness still reach it, as in
//! `minority-leader`), and at once two rules are written. One, on [`MINORITY_ISSUER`], goes
//! straight to the isolated leader: with no quorum it must not be acknowledged (if it is, it
//! must be committed, and every sidecar must enforce it after the heal). The other, on
//! [`RULE_ISSUER`], goes through the careful writer, which moves on to the majority once the
//! isolated node fails it: it is acknowledged by the new leader, and after the heal every sidecar
//! must enforce it (the end-of-scenario check presents tokens of that issuer issued before it).
//! From its acknowledgement until the heal plus the staleness bound, every sidecar is asked about
//! tokens the rule covers every 50 ms: once the bound has passed since the acknowledgement, none
//! may answer "allowed" (the isolated leader's sidecars must say stale, failing closed, until they
//! move to the majority), and each must refuse them, fresh, by the end. Evidence: the bytes the
//! peer links swallowed, what the isolated leader answered, when the majority committed the rule
//! (before the heal), and per sidecar how long after the acknowledgement it first refused the
//! rule's tokens fresh.

use std::time::Duration;

use anyhow::{Context, bail};
use recall::proto as pb;
use tokio::time::Instant;

use super::FaultCtx;
use super::peer_fault::{hold, record};
use crate::authority::{explain, issuer_rule, timed};
use crate::fleet::Fleet;
use crate::links::LinkFault;
use crate::observe::now_ms;
use crate::report::model::FaultRecord;
use crate::scenario::rule_partition::RULE_ISSUER;

/// The issuer of the rule written straight to the isolated leader.
pub const MINORITY_ISSUER: &str = "https://minority.chaos.recall.invalid";

/// How long every sidecar gets to enforce a rule the isolated leader acknowledged.
const ENFORCE_WITHIN: Duration = Duration::from_secs(30);

/// How often the watch asks every sidecar about the majority's rule.
const WATCH_PERIOD: Duration = Duration::from_millis(50);

/// Tokens of the rule's issuer the watch presents (issued a minute before its not-before).
const PROBES: usize = 20;

/// Isolates the leader once `ctx.after` revocations are acknowledged, writes both rules, heals
/// after [`hold`].
pub async fn inject(ctx: &FaultCtx) -> anyhow::Result<Vec<FaultRecord>> {
    ctx.progress.reached(ctx.after).await;
    let (leader, _) = super::peer_fault::leader_and_follower(ctx).await?;
    let a = &ctx.authority;
    let at_ms = ctx.elapsed_ms();
    let started = Instant::now();
    let held = hold(ctx);
    let fault = LinkFault::isolate(a, leader);
    ctx.progress.release();

    let not_before = now_ms();
    let (acked_tx, acked_rx) = tokio::sync::watch::channel(None);
    let (until_tx, until_rx) = tokio::sync::watch::channel(None);
    let majority = {
        let writer = ctx.writer.clone();
        tokio::spawn(async move {
            let version = writer.recall_issuer(RULE_ISSUER, not_before).await?;
            let acked = Instant::now();
            let _ = acked_tx.send(Some(acked));
            anyhow::Ok((version, acked))
        })
    };
    let fault_side = async {
        // Straight to the isolated node, for as long as it stays isolated.
        let mut client = a.node(leader).client.clone();
        let within = held.saturating_sub(Duration::from_secs(1));
        let minority = timed(
            within,
            client.add_rule(issuer_rule(MINORITY_ISSUER, not_before)),
        )
        .await
        .map(|r| r.into_inner().version);
        tokio::time::sleep_until(started + held).await;
        let rec = record(ctx, fault, held, at_ms, None);
        let healed = Instant::now();
        // The watch goes on until the bound has passed since the heal as well.
        let _ = until_tx.send(Some(healed + ctx.staleness_bound));
        (minority, rec, healed)
    };
    let ((minority, mut rec, healed), watch) =
        tokio::join!(fault_side, watch_rule(ctx, not_before, acked_rx, until_rx));
    let (version, acked) = majority.await.context("the majority's writer panicked")??;
    *ctx.rule.lock().expect("rule lock") = Some((version, not_before));
    let before_heal = acked < healed;
    let watched = watch.words(ctx, acked);

    let answered = match &minority {
        Ok(v) => {
            // Acknowledged: then it is committed, and every sidecar must enforce it.
            enforced_everywhere(ctx, MINORITY_ISSUER, not_before).await?;
            format!("acknowledged it at version {v} (and every sidecar enforces it after the heal)")
        }
        Err(s) => format!("did not acknowledge it ({})", explain(s)),
    };
    rec.what = format!(
        "{}, with a not-before rule written to it meanwhile and another through the majority",
        rec.what
    );
    let when = if before_heal {
        format!(
            "{} ms after the isolation, {} ms before the heal",
            acked.duration_since(started).as_millis(),
            healed.duration_since(acked).as_millis()
        )
    } else {
        format!(
            "only {} ms after the heal",
            acked.duration_since(healed).as_millis()
        )
    };
    rec.proof = format!(
        "{}; node {leader}, isolated, {answered}; the majority committed the rule on {RULE_ISSUER} at version {version} {when}; {watched}",
        rec.proof
    );
    // The majority acknowledged the rule while the leader was cut off, and no sidecar let its
    // tokens through past the bound.
    rec.took_effect &= before_heal && watch.kept(ctx.fleet.sidecars.len());
    Ok(vec![rec])
}

/// What the watch of the majority's rule saw.
struct Watch {
    /// Per sidecar: when it first refused every probe, fresh, at or after the acknowledgement.
    enforced: Vec<Option<Instant>>,
    /// Answers "allowed" sent once the staleness bound had passed since the acknowledgement:
    /// (sidecar, milliseconds past the acknowledgement).
    late_allowed: Vec<(String, u128)>,
    /// Answers judged.
    answers: u64,
    /// Of them, stale.
    stale: u64,
    /// Checks that failed (a sidecar that did not answer).
    errors: u64,
}

impl Watch {
    fn kept(&self, sidecars: usize) -> bool {
        self.late_allowed.is_empty()
            && self.enforced.len() == sidecars
            && self.enforced.iter().all(Option::is_some)
    }

    fn words(&self, ctx: &FaultCtx, acked: Instant) -> String {
        let firsts: Vec<String> = ctx
            .fleet
            .sidecars
            .iter()
            .zip(&self.enforced)
            .map(|(s, e)| match e {
                Some(t) => format!(
                    "{} {} ms",
                    s.id,
                    t.saturating_duration_since(acked).as_millis()
                ),
                None => format!("{} never", s.id),
            })
            .collect();
        let late = match self.late_allowed.first() {
            None => "none allowed past the bound".to_string(),
            Some((id, ms)) => format!(
                "{} answers allowed past the bound, the first from {id} {ms} ms after the acknowledgement",
                self.late_allowed.len()
            ),
        };
        format!(
            "watching its tokens: {} answers ({} stale, {} failed checks), {late}; refused fresh after: {}",
            self.answers,
            self.stale,
            self.errors,
            firsts.join(", ")
        )
    }
}

/// Asks every sidecar about [`PROBES`] tokens the rule on [`RULE_ISSUER`] covers every
/// [`WATCH_PERIOD`], from when `acked` resolves until `until` resolves and every sidecar has
/// refused them fresh (at most [`ENFORCE_WITHIN`] past it).
async fn watch_rule(
    ctx: &FaultCtx,
    not_before_ms: i64,
    acked: tokio::sync::watch::Receiver<Option<Instant>>,
    until: tokio::sync::watch::Receiver<Option<Instant>>,
) -> Watch {
    let sidecars = &ctx.fleet.sidecars;
    let mut w = Watch {
        enforced: vec![None; sidecars.len()],
        late_allowed: Vec::new(),
        answers: 0,
        stale: 0,
        errors: 0,
    };
    let mut acked = acked;
    let Ok(acked) = acked
        .wait_for(Option::is_some)
        .await
        .map(|a| a.expect("some"))
    else {
        return w;
    };
    let facts: Vec<pb::TokenFacts> = (0..PROBES)
        .map(|i| pb::TokenFacts {
            iss: RULE_ISSUER.into(),
            jti: Some(format!("isolated-rule-probe-{i}")),
            iat: Some(not_before_ms / 1000 - 60),
            ..Default::default()
        })
        .collect();
    let mut clients: Vec<_> = sidecars.iter().map(|s| s.checker()).collect();
    loop {
        let end = *until.borrow();
        let done = w.enforced.iter().all(Option::is_some);
        match end {
            Some(end) if done && Instant::now() >= end => break,
            Some(end) if Instant::now() >= end + ENFORCE_WITHIN => break,
            _ => {}
        }
        for (i, c) in clients.iter_mut().enumerate() {
            let sent = Instant::now();
            let req = pb::CheckBatchRequest {
                facts: facts.clone(),
            };
            let Ok(Ok(reply)) =
                tokio::time::timeout(Duration::from_secs(2), c.check_batch(req)).await
            else {
                w.errors += 1;
                continue;
            };
            let replies = reply.into_inner().replies;
            let past_bound = sent.duration_since(acked) > ctx.staleness_bound;
            let mut fresh_revoked = 0;
            for r in &replies {
                w.answers += 1;
                if r.stale {
                    w.stale += 1;
                }
                if r.verdict == pb::Verdict::Revoked as i32 {
                    if !r.stale {
                        fresh_revoked += 1;
                    }
                } else if past_bound {
                    w.late_allowed.push((
                        sidecars[i].id.clone(),
                        sent.duration_since(acked).as_millis(),
                    ));
                }
            }
            if fresh_revoked == facts.len() && w.enforced[i].is_none() {
                w.enforced[i] = Some(sent);
            }
        }
        tokio::time::sleep(WATCH_PERIOD).await;
    }
    w
}

/// Waits until every sidecar refuses tokens of `iss` issued a minute before `not_before_ms`.
async fn enforced_everywhere(ctx: &FaultCtx, iss: &str, not_before_ms: i64) -> anyhow::Result<()> {
    let ids: Vec<String> = (0..100).map(|i| format!("probe-{i}")).collect();
    let iat = Some(not_before_ms / 1000 - 60);
    let deadline = Instant::now() + ENFORCE_WITHIN;
    for s in &ctx.fleet.sidecars {
        loop {
            let hits = Fleet::count_revoked(s, iss, &ids, iat).await?;
            if hits == ids.len() as u64 {
                break;
            }
            if Instant::now() >= deadline {
                bail!(
                    "the isolated leader acknowledged a rule on {iss}, but {} refuses {hits} of {} tokens it covers {} s after the heal",
                    s.id,
                    ids.len(),
                    ENFORCE_WITHIN.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}
