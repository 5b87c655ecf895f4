//! Waves: how long each change took to land at every subscriber of this node, from the moment
//! the node applied it until the last of its live subscribers acked a version at or past it.
//!
//! The tracker lives under the registry's lock and costs O(1) per ack: it keeps, for the oldest
//! wave still landing (the front), how many live subscribers are below it; only when the front
//! lands does it count again for the next one (O(subscribers) per wave, not per ack).

use std::collections::VecDeque;

use prometheus::Histogram;
use recall_core::Timestamp;
use tokio::time::Instant;

/// The most waves waiting to land; beyond it the oldest is given up (a subscriber that reads
/// but never acks cannot grow the tracker without bound).
const MAX_PENDING: usize = 4_096;

/// How many landed waves are kept for status pages.
const RECENT: usize = 64;

/// A wave that landed at every live subscriber of this node.
#[derive(Clone, Debug, PartialEq)]
pub struct Landed {
    /// The version of the change.
    pub version: u64,
    /// When this node applied it (node clock).
    pub applied_at: Timestamp,
    /// Seconds from then until the last subscriber acked it (monotonic clock).
    pub seconds: f64,
    /// How many subscribers it landed at.
    pub subscribers: usize,
}

struct Pending {
    version: u64,
    at: Instant,
    wall: Timestamp,
}

/// The waves of one node.
pub struct Waves {
    pending: VecDeque<Pending>,
    /// Live subscribers whose applied version is below the front wave's.
    remaining: usize,
    recent: VecDeque<Landed>,
    histogram: Histogram,
    abandoned: u64,
}

impl Default for Waves {
    fn default() -> Self {
        Self {
            pending: VecDeque::new(),
            remaining: 0,
            recent: VecDeque::new(),
            histogram: crate::metrics::histogram(
                "recall_wave_seconds",
                "Time from this node applying a change until every one of its live subscribers \
                 acked it.",
                crate::metrics::LATENCY_BUCKETS,
            ),
            abandoned: 0,
        }
    }
}

impl Waves {
    /// The histogram of landed waves (register it with the node's metrics).
    pub fn histogram(&self) -> Histogram {
        self.histogram.clone()
    }

    /// The most recent landed waves, oldest first.
    pub fn recent(&self) -> Vec<Landed> {
        self.recent.iter().cloned().collect()
    }

    /// Waves given up because too many were waiting.
    pub fn abandoned(&self) -> u64 {
        self.abandoned
    }

    /// Waves still landing.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The node applied a change at `version`; `applied` are the live subscribers' versions.
    /// With no subscriber there is nothing to land.
    pub fn changed(&mut self, version: u64, wall: Timestamp, applied: &dyn Fn() -> Vec<u64>) {
        if self.pending.back().is_some_and(|p| p.version >= version) || applied().is_empty() {
            return;
        }
        self.pending.push_back(Pending {
            version,
            at: Instant::now(),
            wall,
        });
        if self.pending.len() > MAX_PENDING {
            self.pending.pop_front();
            self.abandoned += 1;
            self.recount(applied);
        } else if self.pending.len() == 1 {
            self.recount(applied);
        }
        self.settle(applied);
    }

    /// A subscriber's applied version moved from `old` to `new`.
    pub fn acked(&mut self, old: u64, new: u64, applied: &dyn Fn() -> Vec<u64>) {
        if let Some(front) = self.pending.front()
            && old < front.version
            && new >= front.version
        {
            self.remaining = self.remaining.saturating_sub(1);
            self.settle(applied);
        }
    }

    /// A subscriber joined at version `at`.
    pub fn joined(&mut self, at: u64) {
        if self.pending.front().is_some_and(|f| at < f.version) {
            self.remaining += 1;
        }
    }

    /// A subscriber at version `at` left; `applied` are the ones still live.
    pub fn left(&mut self, at: u64, applied: &dyn Fn() -> Vec<u64>) {
        if self.pending.front().is_some_and(|f| at < f.version) {
            self.remaining = self.remaining.saturating_sub(1);
            self.settle(applied);
        }
    }

    /// Records every wave at the front that has landed (no live subscriber below it).
    fn settle(&mut self, applied: &dyn Fn() -> Vec<u64>) {
        let now = Instant::now();
        let mut live = None;
        while self.remaining == 0 {
            let Some(p) = self.pending.pop_front() else {
                return;
            };
            let seconds = now.saturating_duration_since(p.at).as_secs_f64();
            self.histogram.observe(seconds);
            if self.recent.len() == RECENT {
                self.recent.pop_front();
            }
            self.recent.push_back(Landed {
                version: p.version,
                applied_at: p.wall,
                seconds,
                subscribers: live.get_or_insert_with(applied).len(),
            });
            self.recount(applied);
        }
    }

    /// Counts the live subscribers below the front wave (none waiting: never zero).
    fn recount(&mut self, applied: &dyn Fn() -> Vec<u64>) {
        self.remaining = match self.pending.front() {
            Some(f) => applied().iter().filter(|a| **a < f.version).count(),
            None => usize::MAX,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp(ms)
    }

    #[tokio::test(start_paused = true)]
    async fn a_wave_lands_when_the_last_subscriber_acks_it() {
        let mut w = Waves::default();
        let mut subs = vec![4, 4, 4];
        w.changed(5, at(1), &|| subs.clone());
        tokio::time::advance(std::time::Duration::from_millis(30)).await;
        subs[0] = 5;
        w.acked(4, 5, &|| subs.clone());
        subs[1] = 7;
        w.acked(4, 7, &|| subs.clone());
        assert!(w.recent().is_empty(), "one subscriber is still below");
        tokio::time::advance(std::time::Duration::from_millis(20)).await;
        subs[2] = 5;
        w.acked(4, 5, &|| subs.clone());
        let landed = w.recent();
        assert_eq!(landed.len(), 1);
        assert_eq!(landed[0].version, 5);
        assert_eq!(landed[0].subscribers, 3);
        assert!((landed[0].seconds - 0.05).abs() < 1e-9, "{landed:?}");
        assert_eq!(w.histogram().get_sample_count(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn later_waves_land_together_and_leavers_stop_holding_them() {
        let mut w = Waves::default();
        let mut subs = vec![1, 1];
        w.changed(2, at(1), &|| subs.clone());
        w.changed(3, at(2), &|| subs.clone());
        subs[0] = 3;
        w.acked(1, 3, &|| subs.clone());
        assert_eq!(w.pending(), 2);
        // The second subscriber goes away before acking: both waves have landed everywhere
        // still live.
        subs.pop();
        w.left(1, &|| subs.clone());
        assert_eq!(w.pending(), 0);
        let versions: Vec<u64> = w.recent().iter().map(|l| l.version).collect();
        assert_eq!(versions, vec![2, 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_subscriber_that_joins_mid_wave_must_receive_it_too() {
        let mut w = Waves::default();
        let mut subs = vec![1];
        w.changed(2, at(1), &|| subs.clone());
        subs.push(0);
        w.joined(0);
        subs[0] = 2;
        w.acked(1, 2, &|| subs.clone());
        assert_eq!(w.pending(), 1);
        subs[1] = 2;
        w.acked(0, 2, &|| subs.clone());
        assert_eq!(w.pending(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn no_subscriber_no_wave_and_the_backlog_is_bounded() {
        let mut w = Waves::default();
        w.changed(2, at(1), &Vec::new);
        assert_eq!(w.pending(), 0);
        for v in 1..=(MAX_PENDING as u64 + 10) {
            w.changed(v, at(1), &|| vec![0]);
        }
        assert_eq!(w.pending(), MAX_PENDING);
        assert_eq!(w.abandoned(), 10);
    }
}
