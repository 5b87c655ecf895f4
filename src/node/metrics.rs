//! A node's Prometheus metrics, served at `GET /metrics` on its HTTP listener
//! (`--http-listen`).
//!
//! Counters and histograms are updated where things happen (a commit, a wave landing, a
//! snapshot sent); gauges are read from the node's live state at scrape time, so a scrape always
//! sees the current version, subscribers and lag, and nothing polls between scrapes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::clock::Clock;
use super::contact::Contact;
use super::raft::{Raft, StateMachine};
use super::subscribe::Registry as Subscribers;
use super::subscribe::metrics::StreamMetrics;
use crate::metrics::{counters, register};

pub use super::subscribe::metrics::STREAM_ENDS;

/// The event-driven metrics of one node; the sessions and the writer update them.
pub struct NodeMetrics {
    registry: Registry,
    /// The metrics of the subscriber streams it serves.
    pub streams: Arc<StreamMetrics>,
    /// `recall_check_calls_total{rpc}`: `Check` and `CheckBatch` calls answered (lite-mode
    /// sidecars confirming Bloom filter hits, and operators).
    pub check_calls: IntCounterVec,
    /// `recall_sightings_held`: sightings of revoked credentials this node holds for its
    /// subscribers.
    pub sightings_held: IntGauge,
    /// `recall_sighting_reports_total{result}`: subscribers' sightings reports, accepted or
    /// refused.
    pub sighting_reports: IntCounterVec,
    leader_changes: IntCounter,
}

impl NodeMetrics {
    /// The metrics of a node whose live state is `live`, with its commit histogram.
    pub fn new(
        live: Live,
        commit_seconds: prometheus::Histogram,
        appends: &super::raft::append_budget::AppendMetrics,
    ) -> Arc<Self> {
        let registry = crate::metrics::registry();
        let m = Self {
            streams: Arc::new(StreamMetrics::new(&registry)),
            check_calls: counters(
                "recall_check_calls_total",
                "Check and CheckBatch calls this node answered from its exact state, by rpc \
                 (check, check_batch): lite-mode sidecars confirming Bloom filter hits, and \
                 operators.",
                &["rpc"],
            ),
            sightings_held: IntGauge::new(
                "recall_sightings_held",
                "Sightings of revoked credentials (per revocation and service) this node holds \
                 for the subscribers that reported to it.",
            )
            .expect("a valid gauge"),
            sighting_reports: counters(
                "recall_sighting_reports_total",
                "Subscribers' sightings reports, by result (accepted, refused).",
                &["result"],
            ),
            leader_changes: IntCounter::new(
                "recall_raft_leader_changes_total",
                "Times this node saw the cluster's leader change (including to none).",
            )
            .expect("a valid counter"),
            registry,
        };
        register(&m.registry, m.check_calls.clone());
        register(&m.registry, m.sightings_held.clone());
        register(&m.registry, m.sighting_reports.clone());
        register(&m.registry, m.leader_changes.clone());
        register(&m.registry, commit_seconds);
        appends.register(&m.registry);
        register(&m.registry, live.subscribers.wave_histogram());
        register(&m.registry, LiveCollector::new(live));
        Arc::new(m)
    }

    /// The registry to render at `/metrics`.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Follows the node until `stopped`: every applied change starts a wave at its subscribers,
    /// every leader change is counted.
    pub fn watch(
        self: &Arc<Self>,
        raft: Raft,
        sm: &StateMachine,
        subscribers: Arc<Subscribers>,
        clock: Clock,
        mut stopped: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let me = self.clone();
        let mut applied = sm.subscribe();
        let mut raft_metrics = raft.metrics();
        tokio::spawn(async move {
            let mut last_change = applied.borrow().last_change;
            let mut leader = raft_metrics.borrow().current_leader;
            loop {
                tokio::select! {
                    _ = stopped.wait_for(|s| *s) => return,
                    r = applied.changed() => {
                        if r.is_err() {
                            return;
                        }
                        let change = applied.borrow_and_update().last_change;
                        if change > last_change {
                            last_change = change;
                            subscribers.changed(change, clock());
                        }
                    }
                    r = raft_metrics.changed() => {
                        if r.is_err() {
                            return;
                        }
                        let now = raft_metrics.borrow_and_update().current_leader;
                        if now != leader {
                            leader = now;
                            me.leader_changes.inc();
                        }
                    }
                }
            }
        })
    }
}

/// What a scrape reads from a running node.
#[derive(Clone)]
pub struct Live {
    /// The node's Raft handle (term, leader, log).
    pub raft: Raft,
    /// The applied state.
    pub sm: StateMachine,
    /// The live subscribers.
    pub subscribers: Arc<Subscribers>,
    /// The commit index this node knows from its leader.
    pub contact: Arc<Contact>,
}

/// The gauges read at scrape time.
struct LiveCollector {
    live: Live,
    applied: IntGauge,
    committed: IntGauge,
    last_change: IntGauge,
    revocations: IntGauge,
    term: IntGauge,
    is_leader: IntGauge,
    last_log: IntGauge,
    subscribers: IntGaugeVec,
    lag: IntGaugeVec,
    lag_max: IntGauge,
    waves_pending: IntGauge,
    waves_abandoned: IntCounter,
    abandoned_seen: AtomicU64,
    history_version: IntGauge,
    witnessed_version: IntGauge,
    alarm: IntGauge,
    descs: Vec<Desc>,
}

fn gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::new(name, help).expect("a valid gauge")
}

impl LiveCollector {
    fn new(live: Live) -> Self {
        let mut c = Self {
            live,
            applied: gauge(
                "recall_applied_version",
                "The last log index this node applied.",
            ),
            committed: gauge(
                "recall_committed_version",
                "The commit index this node knows (from its leader's heartbeats, or its own \
                 applied version when that is ahead).",
            ),
            last_change: gauge(
                "recall_last_change_version",
                "The version of the last change to the revocation set this node applied.",
            ),
            revocations: gauge(
                "recall_revocations",
                "Revoked credentials held (entries, not rules).",
            ),
            term: gauge("recall_raft_term", "The Raft term this node is in."),
            is_leader: gauge("recall_raft_is_leader", "1 while this node leads, else 0."),
            last_log: gauge(
                "recall_raft_last_log_index",
                "The last index in this node's Raft log.",
            ),
            subscribers: IntGaugeVec::new(
                Opts::new(
                    "recall_subscribers",
                    "Live subscriber streams on this node, by mode.",
                ),
                &["mode"],
            )
            .expect("a valid gauge"),
            lag: IntGaugeVec::new(
                Opts::new(
                    "recall_subscriber_lag_versions",
                    "Versions of changes this node applied that the subscriber has not acked \
                     (one series per live subscriber of this node, at most its \
                     max_subscribers).",
                ),
                &["subscriber"],
            )
            .expect("a valid gauge"),
            lag_max: gauge(
                "recall_subscriber_lag_max_versions",
                "The largest lag of any live subscriber of this node.",
            ),
            waves_pending: gauge(
                "recall_waves_pending",
                "Changes not yet acked by every live subscriber of this node.",
            ),
            waves_abandoned: IntCounter::new(
                "recall_waves_abandoned_total",
                "Waves no longer tracked because too many were waiting to land.",
            )
            .expect("a valid counter"),
            abandoned_seen: AtomicU64::new(0),
            history_version: gauge(
                "recall_history_version",
                "The version of the last record in this node's audit history.",
            ),
            witnessed_version: gauge(
                "recall_history_witnessed_version",
                "The version of the latest checkpoint signed by a quorum.",
            ),
            alarm: gauge(
                "recall_history_alarm",
                "1 when this node's history disagrees with a quorum's (it serves no streams).",
            ),
            descs: Vec::new(),
        };
        c.descs = c
            .parts()
            .iter()
            .flat_map(|m| m.desc().into_iter().cloned())
            .collect();
        c
    }

    fn parts(&self) -> Vec<&dyn Collector> {
        vec![
            &self.applied,
            &self.committed,
            &self.last_change,
            &self.revocations,
            &self.term,
            &self.is_leader,
            &self.last_log,
            &self.subscribers,
            &self.lag,
            &self.lag_max,
            &self.waves_pending,
            &self.waves_abandoned,
            &self.history_version,
            &self.witnessed_version,
            &self.alarm,
        ]
    }

    fn refresh(&self) {
        let live = &self.live;
        // The same reading the live page draws.
        let now = super::ui::read(live);
        let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.applied.set(as_i64(now.applied_version));
        self.committed.set(as_i64(now.committed_version));
        self.last_change.set(as_i64(now.last_change_version));
        self.revocations.set(as_i64(now.revocations as u64));
        self.term.set(as_i64(now.term));
        self.is_leader.set(i64::from(now.leader == Some(now.node)));
        let last_log = live.raft.metrics().borrow().last_log_index.unwrap_or(0);
        self.last_log.set(as_i64(last_log));
        self.subscribers.reset();
        self.lag.reset();
        let mut max = 0;
        for s in &now.subscribers {
            self.subscribers.with_label_values(&[s.mode.as_str()]).inc();
            max = max.max(s.lag);
            self.lag
                .with_label_values(&[s.id.as_str()])
                .set(as_i64(s.lag));
        }
        self.lag_max.set(as_i64(max));
        self.waves_pending.set(as_i64(now.waves_pending as u64));
        let abandoned = live.subscribers.waves_waiting().1;
        let seen = self.abandoned_seen.swap(abandoned, Ordering::Relaxed);
        self.waves_abandoned.inc_by(abandoned.saturating_sub(seen));
        self.history_version
            .set(as_i64(live.sm.audit_head().version));
        self.witnessed_version
            .set(as_i64(live.sm.with_witnesses(|w| {
                w.witnessed.as_ref().map_or(0, |c| c.version)
            })));
        self.alarm.set(i64::from(now.history_alarm.is_some()));
    }
}

impl Collector for LiveCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.refresh();
        self.parts().iter().flat_map(|m| m.collect()).collect()
    }
}
