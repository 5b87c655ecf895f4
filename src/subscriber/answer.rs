//! A check's answer as a service sees it: the verdict, the version it was computed at, how stale
//! that is, and what the staleness policy made of it.

use std::sync::atomic::Ordering;
use std::time::Duration;

use recall_core::{Status, Verdict};
use recall_filter::Checked;
use serde::Serialize;
use tokio::time::Instant;

use super::Shared;

/// What to do when the subscriber has lost contact for longer than its bound.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StalePolicy {
    /// Deny: a stale answer says revoked (the safe default).
    #[default]
    FailClosed,
    /// Allow what the local filter allows, flagged stale; a subscriber that has never synced
    /// still denies (it holds nothing a node vouched for).
    FailOpen,
}

/// What an answer's freshness is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Past this long without a node vouching for the state, answers are stale.
    pub staleness: Duration,
    /// With checkpoint keys: past this long holding a change no checkpoint a quorum signed
    /// covers, answers are stale (`None`: checkpoints are not required).
    pub unwitnessed: Option<Duration>,
}

impl From<Duration> for Bounds {
    /// A staleness bound alone.
    fn from(staleness: Duration) -> Self {
        Self {
            staleness,
            unwitnessed: None,
        }
    }
}

/// Where an answer's verdict comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The local filter alone: every full-mode answer, and every lite-mode miss (a miss is
    /// never sent to the cluster).
    #[default]
    Local,
    /// A lite-mode Bloom hit a node of the cluster confirmed (revoked or not) just now, from its
    /// exact state at a version no older than the local one.
    ConfirmedByCluster,
    /// As [`Source::ConfirmedByCluster`], from the cache of confirmations: used only while the
    /// local filter has applied no change after the version the node answered at.
    ConfirmedCached,
    /// A lite-mode Bloom hit no node confirmed within the deadline: it stays possibly revoked.
    ClusterUnreachable,
}

impl Source {
    /// The name in JSON answers and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Local => "local",
            Source::ConfirmedByCluster => "confirmed_by_cluster",
            Source::ConfirmedCached => "confirmed_cached",
            Source::ClusterUnreachable => "cluster_unreachable",
        }
    }
}

/// The answer to one check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Answer {
    /// Whether the caller should refuse the token.
    pub revoked: bool,
    /// The filter's own verdict, before the staleness policy.
    pub status: Status,
    /// What matched.
    pub matches: Vec<recall_core::Match>,
    /// The version the filter answered at.
    pub version: u64,
    /// Whether the subscriber is past its staleness bound, knows its state differs from the
    /// authority's, has never synced, or (given checkpoint keys) has held a change no
    /// checkpoint a quorum signed covers for longer than its bound.
    pub stale: bool,
    /// Milliseconds since a node last vouched for the state (`None`: never).
    pub staleness_ms: Option<u64>,
    /// The policy applied.
    pub policy: StalePolicy,
    /// Where the verdict comes from: the local filter, or a node confirming a lite-mode hit.
    pub source: Source,
}

impl Answer {
    /// Whether to refuse the request.
    pub fn deny(&self) -> bool {
        self.revoked
    }
}

/// Applies staleness and policy to a filter's answer at `now` (monotonic). An answer is stale
/// when no node has vouched for the state within `bounds.staleness`, when the state is known to
/// differ from the authority's (a digest mismatch, until the resync lands), before the first
/// sync, or when a change has gone uncovered by a quorum's checkpoint past `bounds.unwitnessed`. A
/// subscriber that has never synced holds nothing a node vouched for, so it denies under either
/// policy: fail-open allows only what a vouched-for state allows. `source` says where
/// `checked` comes from (the local filter, or a node that confirmed a lite-mode hit).
pub fn answer(
    checked: Checked,
    source: Source,
    shared: &Shared,
    bounds: Bounds,
    policy: StalePolicy,
    now: Instant,
) -> Answer {
    let since = shared.contact.since(now);
    let staleness_ms = since.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let synced = shared.synced.load(Ordering::Relaxed);
    let diverged = shared.diverged.load(Ordering::Relaxed);
    let unwitnessed = bounds
        .unwitnessed
        .is_some_and(|lag| shared.unwitnessed.since(now).is_some_and(|d| d > lag));
    let stale = !synced || diverged || unwitnessed || since.is_none_or(|s| s > bounds.staleness);
    let Verdict { matches } = checked.verdict.clone();
    let status = checked.verdict.status();
    let found = status != Status::Allowed;
    let revoked = found || (stale && (policy == StalePolicy::FailClosed || !synced));
    if stale {
        shared.stale_answers.fetch_add(1, Ordering::Relaxed);
    }
    Answer {
        revoked,
        status,
        matches,
        version: checked.version,
        stale,
        staleness_ms,
        policy,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Duration = Duration::from_secs(10);

    fn allowed() -> Checked {
        Checked {
            verdict: Verdict::default(),
            version: 3,
            last_change: 3,
        }
    }

    /// The answer to an allowed check of the local filter.
    fn ask(
        shared: &Shared,
        bounds: impl Into<Bounds>,
        policy: StalePolicy,
        now: Instant,
    ) -> Answer {
        answer(allowed(), Source::Local, shared, bounds.into(), policy, now)
    }

    fn synced(at: Instant) -> Shared {
        let shared = Shared::default();
        shared.contact.record(at);
        shared.synced.store(true, Ordering::Relaxed);
        shared
    }

    #[test]
    fn a_fail_open_subscriber_that_never_synced_denies() {
        let shared = Shared::default();
        let a = ask(&shared, BOUND, StalePolicy::FailOpen, Instant::now());
        assert!(a.stale && a.revoked, "{a:?}");
        assert_eq!(a.staleness_ms, None);
    }

    #[test]
    fn a_fail_open_subscriber_past_its_bound_allows_flagged_stale() {
        let t0 = Instant::now();
        let shared = synced(t0);
        let later = t0 + BOUND + Duration::from_millis(1);
        let a = ask(&shared, BOUND, StalePolicy::FailOpen, later);
        assert!(a.stale && !a.revoked, "{a:?}");
        let a = ask(&shared, BOUND, StalePolicy::FailClosed, later);
        assert!(a.stale && a.revoked, "{a:?}");
    }

    #[test]
    fn a_digest_mismatch_is_stale_until_the_resync_lands() {
        let t0 = Instant::now();
        let shared = synced(t0);
        assert!(!ask(&shared, BOUND, StalePolicy::FailClosed, t0).stale);
        shared.diverged.store(true, Ordering::Relaxed);
        let a = ask(&shared, BOUND, StalePolicy::FailClosed, t0);
        assert!(a.stale && a.revoked, "{a:?}");
        shared.diverged.store(false, Ordering::Relaxed);
        assert!(!ask(&shared, BOUND, StalePolicy::FailClosed, t0).stale);
    }

    /// Given checkpoint keys, a change held longer than the bound without a checkpoint a quorum
    /// signed covering it makes answers stale, though a node vouches for the state: a node that
    /// withholds checkpoints cannot keep a subscriber on a set no quorum signed.
    #[test]
    fn a_change_no_checkpoint_covers_is_stale_past_its_bound() {
        let t0 = Instant::now();
        let lag = Duration::from_secs(30);
        let shared = synced(t0 + lag * 2);
        shared.unwitnessed.set(Some(t0));
        let bounds = Bounds {
            staleness: BOUND,
            unwitnessed: Some(lag),
        };
        let at = |now| ask(&shared, bounds, StalePolicy::FailOpen, now);
        assert!(!at(t0 + lag).stale, "exactly at the bound is still fresh");
        let a = at(t0 + lag + Duration::from_millis(1));
        assert!(
            a.stale && !a.revoked,
            "fail-open keeps the local answer: {a:?}"
        );
        let closed = ask(&shared, bounds, StalePolicy::FailClosed, t0 + lag * 2);
        assert!(closed.stale && closed.revoked, "{closed:?}");
        // Without checkpoint keys nothing is required of checkpoints.
        let a = ask(&shared, BOUND, StalePolicy::FailClosed, t0 + lag * 2);
        assert!(!a.stale, "{a:?}");
        // Covered again: fresh.
        shared.unwitnessed.set(None);
        assert!(!at(t0 + lag * 2).stale);
    }

    /// Staleness follows the monotonic clock (paused here, advanced by hand), not the wall
    /// clock: stepping the system clock back cannot make a silent subscriber look fresh.
    #[tokio::test(start_paused = true)]
    async fn staleness_follows_the_monotonic_clock() {
        let shared = synced(Instant::now());
        let fresh =
            |shared: &Shared| !ask(shared, BOUND, StalePolicy::FailClosed, Instant::now()).stale;
        assert!(fresh(&shared));
        tokio::time::advance(BOUND).await;
        assert!(fresh(&shared), "exactly at the bound is still fresh");
        tokio::time::advance(Duration::from_millis(1)).await;
        let a = ask(&shared, BOUND, StalePolicy::FailClosed, Instant::now());
        assert!(a.stale && a.revoked, "{a:?}");
        assert_eq!(a.staleness_ms, Some(10_001));
    }
}
