//! How many bytes one AppendEntries may carry to a peer, and the counters of what happened to
//! them. The leader cuts a batch whose encoding is over the budget by answering openraft with
//! `PayloadTooLarge` and the number of entries that fit, so openraft resends fewer at once and
//! a loaded follower gets work it can finish inside the RPC timeout (a heartbeat interval).
//!
//! The budget of each peer starts at the configured `append_bytes`, halves after an
//! AppendEntries to that peer timed out (down to [`FLOOR_BYTES`]) and grows back by a quarter
//! after each one answered within half its timeout.

use std::time::Duration;

use prometheus::{Histogram, IntCounter, Registry};

/// The smallest budget a timed-out peer is cut down to (a smaller configured budget stays).
pub const FLOOR_BYTES: usize = 8 << 10;

/// The per-peer byte budget of AppendEntries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendBudget {
    max: usize,
    now: usize,
}

impl AppendBudget {
    /// A budget starting (and capped) at `max` bytes.
    pub fn new(max: usize) -> Self {
        Self { max, now: max }
    }

    /// The bytes the next AppendEntries may carry.
    pub fn bytes(&self) -> usize {
        self.now
    }

    /// An AppendEntries timed out: halve the budget, not below the floor.
    pub fn timed_out(&mut self) {
        self.now = (self.now / 2).max(FLOOR_BYTES.min(self.max));
    }

    /// An AppendEntries was answered after `elapsed` of its `timeout`: when that was within
    /// half the timeout, grow the budget back by a quarter, up to the configured one.
    pub fn answered(&mut self, elapsed: Duration, timeout: Duration) {
        if elapsed.saturating_mul(2) <= timeout {
            self.now = self.now.saturating_add(self.now / 4).min(self.max);
        }
    }
}

/// What the Raft client counts about the AppendEntries it sends.
#[derive(Clone, Debug)]
pub struct AppendMetrics {
    /// `recall_raft_appends_split_total`: batches over the budget that openraft was told to
    /// resend with fewer entries.
    pub split: IntCounter,
    /// `recall_raft_appends_timed_out_total`: AppendEntries that did not answer in time.
    pub timed_out: IntCounter,
    /// `recall_raft_append_bytes`: the encoded size of each AppendEntries sent with entries.
    pub bytes: Histogram,
}

/// Powers of two from 1 KiB to 16 MiB.
const BYTE_BUCKETS: &[f64] = &[
    1024.0, 2048.0, 4096.0, 8192.0, 16384.0, 32768.0, 65536.0, 131072.0, 262144.0, 524288.0,
    1048576.0, 2097152.0, 4194304.0, 8388608.0, 16777216.0,
];

impl AppendMetrics {
    /// Fresh counters, registered nowhere yet.
    pub fn new() -> Self {
        let counter = |name: &str, help: &str| {
            IntCounter::new(name, help).expect("a valid counter definition")
        };
        Self {
            split: counter(
                "recall_raft_appends_split_total",
                "AppendEntries batches over the byte budget, resent with fewer entries.",
            ),
            timed_out: counter(
                "recall_raft_appends_timed_out_total",
                "AppendEntries to a peer that did not answer within the RPC timeout (each \
                 halves that peer's byte budget).",
            ),
            bytes: crate::metrics::histogram(
                "recall_raft_append_bytes",
                "Encoded bytes of each AppendEntries sent with entries.",
                BYTE_BUCKETS,
            ),
        }
    }

    /// Registers every metric in `registry`.
    pub fn register(&self, registry: &Registry) {
        crate::metrics::register(registry, self.split.clone());
        crate::metrics::register(registry, self.timed_out.clone());
        crate::metrics::register(registry, self.bytes.clone());
    }
}

impl Default for AppendMetrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_halves_on_timeouts_to_the_floor_and_grows_back_to_the_configured_one() {
        let mut b = AppendBudget::new(1 << 20);
        for _ in 0..20 {
            b.timed_out();
        }
        assert_eq!(b.bytes(), FLOOR_BYTES);
        let timeout = Duration::from_millis(100);
        b.answered(Duration::from_millis(80), timeout);
        assert_eq!(b.bytes(), FLOOR_BYTES, "a slow answer does not grow it");
        for _ in 0..100 {
            b.answered(Duration::from_millis(10), timeout);
        }
        assert_eq!(b.bytes(), 1 << 20);
        let mut small = AppendBudget::new(4096);
        small.timed_out();
        assert_eq!(
            small.bytes(),
            4096,
            "a budget below the floor stays as configured"
        );
    }
}
