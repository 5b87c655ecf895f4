//! Correctness at the end of a recall scenario: every node and every sidecar holds the same set
//! (digest equality), every sampled revoked token answers "revoked" on every sidecar, no
//! never-revoked token does beyond the filter's stated false-positive rate, and a rule scenario's
//! rule covers what it should.

use std::time::Duration;

use anyhow::Context;
use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;

use crate::authority::Authority;
use crate::fleet::{Counted, Fleet};
use crate::report::model::Checks;
use crate::scenario::rule_partition::RULE_ISSUER;
use crate::workload::{ISSUER, Workload};

/// What verification found: the checks, each sidecar's missing count, and failures.
pub struct Verified {
    /// The checks.
    pub checks: Checks,
    /// Per sidecar (fleet order): revocations it does not hold.
    pub missing: Vec<u64>,
    /// What is wrong, if anything.
    pub failures: Vec<String>,
}

/// How long a sidecar that answers stale after the wave (its node briefly unable to vouch,
/// a heartbeat late on a loaded machine) gets to answer fresh again before it fails.
const STALE_WAIT: Duration = Duration::from_secs(10);

/// Checks `revoked` on `sidecar` until no answer is stale, or [`STALE_WAIT`]; returns the last
/// count and how long it waited for fresh answers (zero when the first were). Staleness is
/// transient and judged by the live history; the end state must be answered fresh.
async fn fresh_answers(
    sidecar: &crate::fleet::Sidecar,
    revoked: &[String],
) -> anyhow::Result<(Counted, Duration)> {
    let started = Instant::now();
    let mut waited = Duration::ZERO;
    loop {
        let counted = Fleet::count_answers(sidecar, ISSUER, revoked, None).await?;
        if counted.stale == 0 || waited >= STALE_WAIT {
            return Ok((counted, waited));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited = started.elapsed();
    }
}

/// Verifies `fleet` against `authority` after `workload` (and the rule with `rule_not_before`,
/// if one was written), checking `sample` revoked and `sample` clean tokens per sidecar.
pub async fn verify(
    authority: &Authority,
    fleet: &Fleet,
    workload: &Workload,
    rng: &mut ChaCha8Rng,
    sample: usize,
    target: u64,
    rule_not_before: Option<i64>,
) -> anyhow::Result<Verified> {
    let mut failures = Vec::new();
    // Every node, the restarted one included, must reach the target and hold the same set.
    let mut digests = Vec::new();
    for n in &authority.nodes {
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            match authority.status(n.id).await {
                Ok(s) if s.applied_version >= target => break Some(s),
                _ if Instant::now() >= deadline => break None,
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        match status {
            Some(s) => digests.push((n.id, s.digest, s.entries)),
            None => failures.push(format!("node {} did not apply version {target}", n.id)),
        }
    }
    let (_, digest, entries) = *digests.first().context("no node answered")?;
    for (id, d, e) in &digests {
        if *d != digest || *e != entries {
            failures.push(format!(
                "node {id} holds {e} entries, digest {d:016x}; node {} holds {entries}, {digest:016x}",
                digests[0].0
            ));
        }
    }
    if entries != workload.len() {
        failures.push(format!(
            "the authority holds {entries} entries, {} were revoked",
            workload.len()
        ));
    }
    let want = format!("{digest:016x}");
    let mut checks = Checks {
        digests_equal: true,
        ..Checks::default()
    };
    let mut missing = Vec::new();
    let revoked = workload.sample(rng, sample);
    let clean = workload.clean(sample);
    for s in &fleet.sidecars {
        let st = s
            .status(&fleet.http)
            .await
            .with_context(|| format!("status of {}", s.id))?;
        missing.push(workload.len().saturating_sub(st.entries));
        if st.digest != want {
            checks.digests_equal = false;
            failures.push(format!(
                "{} holds digest {} at version {}, the authority {want}",
                s.id, st.digest, st.version
            ));
        }
        let (counted, waited) = fresh_answers(s, &revoked).await?;
        if counted.stale > 0 {
            failures.push(format!(
                "{} answered {} of {} sampled revoked tokens stale for {} ms after the wave \
                 (refused, but it could not vouch for its state)",
                s.id,
                counted.stale,
                revoked.len(),
                waited.as_millis()
            ));
        } else if !waited.is_zero() {
            tracing::info!(sidecar = %s.id, waited_ms = waited.as_millis() as u64,
                "the sidecar answered stale after the wave, then fresh");
        }
        checks.revoked_sampled += revoked.len() as u64;
        checks.revoked_missed += revoked.len() as u64 - counted.revoked;
        let fp = Fleet::count_revoked(s, ISSUER, &clean, None).await?;
        checks.clean_sampled += clean.len() as u64;
        checks.false_positives += fp;
        if let Some(nb) = rule_not_before {
            // Tokens of the recalled issuer issued a minute before the rule: all revoked.
            let covered = &clean[..clean.len().min(1000)];
            let hits = Fleet::count_revoked(s, RULE_ISSUER, covered, Some(nb / 1000 - 60)).await?;
            checks.rule_sampled += covered.len() as u64;
            checks.rule_missed += covered.len() as u64 - hits;
        }
    }
    // Full mode keeps exact 64-bit fingerprints: a clean token collides with one of N revoked
    // ones with probability N / 2^64 — zero false positives expected at any size we run.
    let rate = workload.len() as f64 / 2f64.powi(64);
    checks.false_positives_allowed = (checks.clean_sampled as f64 * rate).floor() as u64;
    if checks.revoked_missed > 0 {
        failures.push(format!(
            "{} of {} sampled revoked tokens were not answered \"revoked\"",
            checks.revoked_missed, checks.revoked_sampled
        ));
    }
    if checks.false_positives > checks.false_positives_allowed {
        failures.push(format!(
            "{} of {} never-revoked tokens answered \"revoked\" (allowed: {})",
            checks.false_positives, checks.clean_sampled, checks.false_positives_allowed
        ));
    }
    if checks.rule_missed > 0 {
        failures.push(format!(
            "{} of {} tokens the rule covers were not answered \"revoked\"",
            checks.rule_missed, checks.rule_sampled
        ));
    }
    Ok(Verified {
        checks,
        missing,
        failures,
    })
}
