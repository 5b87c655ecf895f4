//! A sidecar's Prometheus metrics, served at `GET /metrics` on its HTTP listener: checks by
//! face and verdict (counted at the faces, never in the embedded check path, which stays free
//! of shared writes), and the subscriber's state read at scrape time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Registry};

use crate::metrics::{counters, register};
use crate::subscriber::{Answer, Subscriber};
use crate::token::Reason;

/// The metrics of one sidecar.
pub struct SidecarMetrics {
    registry: Registry,
    checks: IntCounterVec,
}

impl SidecarMetrics {
    /// The metrics of a sidecar around `subscriber`.
    pub fn new(subscriber: Arc<Subscriber>) -> Arc<Self> {
        let m = Self {
            registry: crate::metrics::registry(),
            checks: counters(
                "recall_checks_total",
                "Checks answered, by face (claims: /v1/check and gRPC Check; token: /v1/auth, \
                 /v1/token and ext_authz) and verdict.",
                &["face", "verdict"],
            ),
        };
        register(&m.registry, m.checks.clone());
        register(&m.registry, SubscriberCollector::new(subscriber));
        Arc::new(m)
    }

    /// The registry to render at `/metrics`.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Counts a token verdict.
    pub fn token(&self, verdict: Reason) {
        self.checks
            .with_label_values(&["token", verdict.as_str()])
            .inc();
    }

    /// Counts the answer to a claims check: its filter verdict, or `stale` when it was refused
    /// only because the state could not be vouched for.
    pub fn claims(&self, answer: &Answer) {
        let verdict = match answer.status {
            recall_core::Status::Allowed if answer.revoked => "stale",
            recall_core::Status::Allowed => "allowed",
            recall_core::Status::Revoked => "revoked",
            recall_core::Status::PossiblyRevoked => "possibly_revoked",
        };
        self.checks.with_label_values(&["claims", verdict]).inc();
    }
}

/// The subscriber's state, read at scrape time.
struct SubscriberCollector {
    subscriber: Arc<Subscriber>,
    version: IntGauge,
    entries: IntGauge,
    synced: IntGauge,
    staleness: prometheus::Gauge,
    snapshots: Mirror,
    deltas: Mirror,
    resyncs: Mirror,
    digest_mismatches: Mirror,
    witnessed: IntGauge,
    witness_refusals: Mirror,
    unwitnessed: prometheus::Gauge,
    connects: Mirror,
    stale_answers: Mirror,
    by_reason: IntCounterVec,
    by_reason_seen: [AtomicU64; 7],
    lite_rebuilds: Mirror,
    confirmations: IntCounterVec,
    confirmations_seen: [AtomicU64; 4],
    sightings: Mirror,
    sightings_dropped: Mirror,
    sighting_reports: IntCounterVec,
    sighting_reports_seen: [AtomicU64; 2],
    descs: Vec<Desc>,
}

/// What a lite-mode confirmation came to, as `recall_sidecar_confirmations_total` labels them.
const CONFIRMATION_RESULTS: [&str; 4] = ["revoked", "not_revoked", "cached", "unreachable"];

/// A counter that follows one of the subscriber's own monotonic counters.
struct Mirror {
    counter: IntCounter,
    seen: AtomicU64,
}

impl Mirror {
    fn new(name: &str, help: &str) -> Self {
        Self {
            counter: IntCounter::new(name, help).expect("a valid counter"),
            seen: AtomicU64::new(0),
        }
    }

    fn follow(&self, now: u64) {
        let seen = self.seen.swap(now, Ordering::Relaxed);
        self.counter.inc_by(now.saturating_sub(seen));
    }
}

impl SubscriberCollector {
    fn new(subscriber: Arc<Subscriber>) -> Self {
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("a valid gauge");
        let mut c = Self {
            subscriber,
            version: gauge(
                "recall_sidecar_applied_version",
                "The version of the cluster's state this sidecar has applied.",
            ),
            entries: gauge(
                "recall_sidecar_revocations",
                "Revoked fingerprints held by the local filter.",
            ),
            synced: gauge(
                "recall_sidecar_synced",
                "1 once a node has vouched for this sidecar's state, else 0.",
            ),
            staleness: prometheus::Gauge::new(
                "recall_sidecar_staleness_seconds",
                "Seconds since a node last vouched for this sidecar's state (monotonic clock); \
                 +Inf before the first time.",
            )
            .expect("a valid gauge"),
            snapshots: Mirror::new(
                "recall_sidecar_snapshots_applied_total",
                "Snapshots applied.",
            ),
            deltas: Mirror::new("recall_sidecar_deltas_applied_total", "Deltas applied."),
            resyncs: Mirror::new(
                "recall_sidecar_resyncs_total",
                "Resyncs a node asked for mid-stream.",
            ),
            digest_mismatches: Mirror::new(
                "recall_sidecar_digest_mismatches_total",
                "Times the local digest differed from the authority's (each forces a snapshot).",
            ),
            witnessed: gauge(
                "recall_sidecar_witnessed_version",
                "The latest checkpoint a quorum of nodes signed that this sidecar's set matched \
                 at that version (0: none yet).",
            ),
            witness_refusals: Mirror::new(
                "recall_sidecar_witness_refusals_total",
                "Checkpoints refused: their signatures did not verify against --checkpoint-keys, \
                 or too few of those keys signed (each ends the stream).",
            ),
            unwitnessed: prometheus::Gauge::new(
                "recall_sidecar_unwitnessed_seconds",
                "With --checkpoint-keys: how long the oldest change held has gone without a \
                 checkpoint a quorum signed covering it (0: all covered); past \
                 --checkpoint-lag-ms answers are stale.",
            )
            .expect("valid metric"),
            connects: Mirror::new(
                "recall_sidecar_connects_total",
                "Stream connections opened to nodes.",
            ),
            stale_answers: Mirror::new(
                "recall_sidecar_stale_answers_total",
                "Checks answered while stale (past the bound, diverged or never synced).",
            ),
            by_reason: counters(
                "recall_sidecar_snapshots_begun_total",
                "Snapshots a node began sending this sidecar, by why.",
                &["reason"],
            ),
            by_reason_seen: Default::default(),
            lite_rebuilds: Mirror::new(
                "recall_sidecar_lite_rebuilds_total",
                "Snapshots that rebuilt lite-mode Bloom shards filled past their design \
                 false-positive rate (the sidecar asks for one when a shard gets there).",
            ),
            confirmations: counters(
                "recall_sidecar_confirmations_total",
                "Lite-mode Bloom filter hits confirmed with the cluster, by result: revoked, \
                 not_revoked (a false positive), cached (a confirmation still current), \
                 unreachable (no node answered in time: the answer stays possibly_revoked).",
                &["result"],
            ),
            confirmations_seen: Default::default(),
            sightings: Mirror::new(
                "recall_sidecar_sightings_total",
                "Denials of revoked credentials counted as sightings (reported to the cluster: \
                 `recall sightings`).",
            ),
            sightings_dropped: Mirror::new(
                "recall_sidecar_sightings_dropped_total",
                "Denials not counted because the sightings table was full (raise \
                 --sightings-max, or shorten --sightings-interval).",
            ),
            sighting_reports: counters(
                "recall_sidecar_sighting_reports_total",
                "Sightings reports sent, by result: sent (a node took it), failed (no node did; \
                 its counts wait for the next report).",
                &["result"],
            ),
            sighting_reports_seen: Default::default(),
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
            &self.version,
            &self.entries,
            &self.synced,
            &self.staleness,
            &self.snapshots.counter,
            &self.deltas.counter,
            &self.resyncs.counter,
            &self.digest_mismatches.counter,
            &self.witnessed,
            &self.witness_refusals.counter,
            &self.unwitnessed,
            &self.connects.counter,
            &self.stale_answers.counter,
            &self.by_reason,
            &self.lite_rebuilds.counter,
            &self.confirmations,
            &self.sightings.counter,
            &self.sightings_dropped.counter,
            &self.sighting_reports,
        ]
    }

    fn refresh(&self) {
        let s = self.subscriber.status();
        let shared = self.subscriber.shared();
        self.version
            .set(i64::try_from(s.version).unwrap_or(i64::MAX));
        self.entries
            .set(i64::try_from(s.entries).unwrap_or(i64::MAX));
        self.synced.set(i64::from(s.synced));
        let since = shared.contact.since(tokio::time::Instant::now());
        self.staleness
            .set(since.map_or(f64::INFINITY, |d| d.as_secs_f64()));
        self.snapshots.follow(s.snapshots);
        self.deltas.follow(s.deltas);
        self.resyncs.follow(s.resyncs);
        self.digest_mismatches.follow(s.digest_mismatches);
        self.witnessed
            .set(i64::try_from(s.witnessed_version).unwrap_or(i64::MAX));
        self.witness_refusals.follow(s.witness_refusals);
        self.unwitnessed
            .set(s.unwitnessed_ms.map_or(0.0, |ms| ms as f64 / 1000.0));
        self.connects.follow(s.connects);
        self.stale_answers
            .follow(shared.stale_answers.load(Ordering::Relaxed));
        self.lite_rebuilds
            .follow(shared.lite_rebuilds.load(Ordering::Relaxed));
        if let Some(c) = self.subscriber.confirmer() {
            let counts = [
                &c.counts.revoked,
                &c.counts.not_revoked,
                &c.counts.cached,
                &c.counts.unreachable,
            ];
            for (i, result) in CONFIRMATION_RESULTS.iter().enumerate() {
                let now = counts[i].load(Ordering::Relaxed);
                let seen = self.confirmations_seen[i].swap(now, Ordering::Relaxed);
                self.confirmations
                    .with_label_values(&[result])
                    .inc_by(now.saturating_sub(seen));
            }
        }
        let seen = &self.subscriber.sightings().counts;
        self.sightings.follow(seen.noted.load(Ordering::Relaxed));
        self.sightings_dropped
            .follow(seen.dropped.load(Ordering::Relaxed));
        let reports = [&seen.reports_sent, &seen.reports_failed];
        for (i, result) in ["sent", "failed"].iter().enumerate() {
            let now = reports[i].load(Ordering::Relaxed);
            let before = self.sighting_reports_seen[i].swap(now, Ordering::Relaxed);
            self.sighting_reports
                .with_label_values(&[result])
                .inc_by(now.saturating_sub(before));
        }
        let reasons = crate::wire::SNAPSHOT_REASONS.iter().chain(["other"].iter());
        for (i, reason) in reasons.enumerate() {
            let now = shared.snapshot_reasons[i].load(Ordering::Relaxed);
            let seen = self.by_reason_seen[i].swap(now, Ordering::Relaxed);
            if now > seen || now > 0 {
                self.by_reason
                    .with_label_values(&[reason])
                    .inc_by(now.saturating_sub(seen));
            }
        }
    }
}

impl Collector for SubscriberCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.refresh();
        self.parts().iter().flat_map(|m| m.collect()).collect()
    }
}
