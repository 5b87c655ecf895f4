//! The metrics of the streams a node (or a relay) serves: snapshots sent and built, digest
//! mismatches, streams ended and bytes queued. Updated by the sessions where things happen.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Registry};

use crate::metrics::{counters, register};

/// Why a node ends a subscriber stream.
pub const STREAM_ENDS: &[&str] = &[
    "closed",
    "not_reading",
    "replaced",
    "shutdown",
    "history_alarm",
    "out_of_touch",
    "protocol_error",
    "behind_subscriber",
    "full",
];

/// The stream metrics.
pub struct StreamMetrics {
    /// `recall_snapshots_sent_total{reason}`.
    pub snapshots_sent: IntCounterVec,
    /// `recall_snapshot_builds_total`: snapshots built from the set (each shared by every
    /// session that sends that version).
    pub snapshot_builds: IntCounter,
    /// `recall_stream_digest_mismatches_total`: acks whose digest differed from the node's.
    pub digest_mismatches: IntCounter,
    /// `recall_streams_ended_total{reason}`.
    pub streams_ended: IntCounterVec,
    /// `recall_stream_queue_bytes`: encoded bytes queued to subscribers, not yet taken by the
    /// transport.
    pub queue_bytes: IntGauge,
}

impl StreamMetrics {
    /// The metrics, registered in `registry`.
    pub fn new(registry: &Registry) -> Self {
        let m = Self {
            snapshots_sent: counters(
                "recall_snapshots_sent_total",
                "Snapshots sent to subscribers, by why (new_subscriber, behind_window, too_slow, \
                 digest_mismatch, seed_changed, future_version).",
                &["reason"],
            ),
            snapshot_builds: IntCounter::new(
                "recall_snapshot_builds_total",
                "Snapshots built from the set; each is shared by every session that sends that \
                 version.",
            )
            .expect("a valid counter"),
            digest_mismatches: IntCounter::new(
                "recall_stream_digest_mismatches_total",
                "Acks whose digest differed from this node's at that version (each resyncs the \
                 subscriber).",
            )
            .expect("a valid counter"),
            streams_ended: counters(
                "recall_streams_ended_total",
                "Subscriber streams this node ended, by why.",
                &["reason"],
            ),
            queue_bytes: IntGauge::new(
                "recall_stream_queue_bytes",
                "Encoded bytes queued to subscribers and not yet taken by the transport.",
            )
            .expect("a valid gauge"),
        };
        register(registry, m.snapshots_sent.clone());
        register(registry, m.snapshot_builds.clone());
        register(registry, m.digest_mismatches.clone());
        register(registry, m.streams_ended.clone());
        register(registry, m.queue_bytes.clone());
        m
    }

    /// Counts a snapshot sent for `reason`.
    pub fn snapshot_sent(&self, reason: &str) {
        let reason = crate::metrics::bounded(reason, &crate::wire::SNAPSHOT_REASONS);
        self.snapshots_sent.with_label_values(&[reason]).inc();
    }

    /// Counts a stream ended for `reason` (one of [`STREAM_ENDS`]).
    pub fn stream_ended(&self, reason: &str) {
        let reason = crate::metrics::bounded(reason, STREAM_ENDS);
        self.streams_ended.with_label_values(&[reason]).inc();
    }
}
