//! A check's answer as a service sees it: the verdict, the version it was computed at, how stale
//! that is, and what the staleness policy made of it.

use std::sync::atomic::Ordering;

use recall_core::{Status, Verdict};
use recall_filter::Checked;
use serde::Serialize;

use super::{Shared, SubscriberConfig};

/// What to do when the subscriber has lost contact for longer than its bound.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StalePolicy {
    /// Deny: a stale answer says revoked (the safe default).
    #[default]
    FailClosed,
    /// Allow what the local filter allows, flagged stale.
    FailOpen,
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
    /// Whether the subscriber is past its staleness bound (or has never synced).
    pub stale: bool,
    /// Milliseconds since the last contact with a node (`None`: never).
    pub staleness_ms: Option<u64>,
    /// The policy applied.
    pub policy: StalePolicy,
}

impl Answer {
    /// Whether to refuse the request.
    pub fn deny(&self) -> bool {
        self.revoked
    }
}

/// Applies staleness and policy to a filter's answer.
pub fn answer(checked: Checked, shared: &Shared, config: &SubscriberConfig) -> Answer {
    let last = shared.last_contact_ms.load(Ordering::Relaxed);
    let now = (crate::node::clock::system())().as_millis();
    let staleness_ms = (last > 0).then(|| u64::try_from(now - last).unwrap_or(0));
    let synced = shared.synced.load(Ordering::Relaxed);
    let stale =
        !synced || staleness_ms.is_none_or(|s| s > config.staleness_bound.as_millis() as u64);
    let Verdict { matches } = checked.verdict.clone();
    let status = checked.verdict.status();
    let found = status != Status::Allowed;
    let revoked = found || (stale && config.policy == StalePolicy::FailClosed);
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
        policy: config.policy,
    }
}
