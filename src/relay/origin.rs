//! A relay's state as the sessions it serves read it: the filter and delta window it follows
//! the stream into, vouched for as far as its upstream vouched for them. A relay claims nothing
//! its upstream did not: its heartbeats carry the upstream's commit index, its doubts, the age
//! of its upstream's last leader contact (plus the relay's own silence since), and the last
//! checkpoint a quorum signed that the relay's set matched.

use std::sync::Arc;
use std::time::Duration;

use recall_core::FingerprintSeed;
use recall_stream::{Applied, Hello, Snapshot, Source, Window, Witness};
use tokio::sync::watch;
use tonic::Status;

use super::held;
use crate::node::subscribe::Origin;
use crate::node::subscribe::metrics::StreamMetrics;
use crate::node::subscribe::snapshots::Snapshots;
use crate::subscriber::Shared;
use crate::subscriber::follow::FollowState;

/// Where a relay's streams come from.
#[derive(Clone)]
pub struct RelayOrigin {
    pub(super) held: held::Shared,
    /// The follow task's counters and contact.
    pub(super) upstream: Arc<Shared>,
    /// The follow task's state (the upstream followed now, its doubts).
    pub(super) state: watch::Receiver<FollowState>,
    pub(super) snapshots: Arc<Snapshots>,
    pub(super) metrics: Arc<StreamMetrics>,
    /// Past this long without its upstream vouching for its state, the relay ends its streams
    /// so its subscribers move to a relay or node that is in touch.
    pub(super) out_of_touch: Duration,
    /// The wall clock heartbeats and acks are stamped with.
    pub(super) clock: crate::node::clock::Clock,
    /// Never raised: a relay keeps no history of its own (kept so streams can wait on it).
    pub(super) alarm: Arc<watch::Sender<Option<String>>>,
}

/// The upstream's reason not to vouch, as a heartbeat's `stale_reason`.
fn reason(upstream: &str) -> &'static str {
    match upstream {
        "no_leader_contact" => "no_leader_contact",
        "new_leader" => "new_leader",
        "behind_commit" => "behind_commit",
        _ => "upstream_stale",
    }
}

impl RelayOrigin {
    fn since_vouched(&self) -> Option<Duration> {
        self.upstream.contact.since(tokio::time::Instant::now())
    }
}

impl Source for RelayOrigin {
    fn applied(&self) -> Applied {
        self.held.lock().applied
    }

    fn seed(&self) -> FingerprintSeed {
        self.held.lock().seed
    }

    fn deltas_after(&self, version: u64) -> Window {
        let log = self.held.lock();
        log.window
            .after(version, log.applied.version, log.applied.last_change)
    }

    fn snapshot(&self, _expiries: bool, max_bytes: usize) -> Arc<Snapshot> {
        // Under the lock the filter does not move: the view is the state at `version`.
        let log = self.held.lock();
        let version = log.applied.version;
        self.snapshots.get(version, false, max_bytes, || {
            self.metrics.snapshot_builds.inc();
            let view = self
                .held
                .reader()
                .view()
                .expect("a relay's filter is in full mode");
            Snapshot::build(&view, None, max_bytes)
        })
    }

    fn leads(&self) -> bool {
        false
    }

    fn out_of_touch(&self) -> Option<Duration> {
        self.since_vouched().filter(|d| *d > self.out_of_touch)
    }

    fn committed(&self) -> u64 {
        let applied = self.held.lock().applied.version;
        self.upstream
            .upstream_committed
            .load(std::sync::atomic::Ordering::Relaxed)
            .max(applied)
    }

    fn doubt(&self, _applied: u64) -> Option<&'static str> {
        if self
            .upstream
            .diverged
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Some("upstream_stale");
        }
        self.state.borrow().node_stale_reason.as_deref().map(reason)
    }

    fn wall_ms(&self) -> i64 {
        (self.clock)().as_millis()
    }

    fn contact_age(&self) -> Duration {
        // Streams are refused before the first vouched sync, so there is a contact by now.
        self.since_vouched().unwrap_or(self.out_of_touch)
    }

    fn witness(&self) -> Option<Arc<Witness>> {
        self.upstream
            .witness
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Origin for RelayOrigin {
    type Changes = Applied;

    fn changes(&self) -> watch::Receiver<Applied> {
        self.held.changes()
    }

    fn alarm(&self) -> watch::Receiver<Option<String>> {
        self.alarm.subscribe()
    }

    fn refuse(&self, hello: &Hello) -> Option<Status> {
        if hello.expiries {
            return Some(Status::failed_precondition(
                "a relay does not carry expiries: subscribers that keep them (the Redis mirror) \
                 subscribe to the cluster's nodes",
            ));
        }
        if !self
            .upstream
            .synced
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Some(Status::unavailable(
                "this relay has not synced with its upstream yet; retry, or connect to another \
                 relay or node",
            ));
        }
        None
    }
}
