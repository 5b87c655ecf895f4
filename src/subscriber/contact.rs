//! Moments on a monotonic clock, readable from any thread without a lock: when a node last
//! vouched for this subscriber's state, and since when a change no checkpoint covers has been
//! held. A wall clock stepped backwards (NTP, a VM restored from a snapshot) would hide
//! staleness, and one stepped forwards would invent it. The caller passes the time in, so tests
//! drive it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// A moment, or none: moved only forward by [`Moment::record`], anywhere by [`Moment::set`].
#[derive(Debug)]
pub struct Moment {
    /// The instant the offsets count from.
    epoch: Instant,
    /// Microseconds from `epoch` to the moment, plus one; 0: none.
    at: AtomicU64,
}

impl Moment {
    /// No moment yet; offsets count from `epoch`.
    pub fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            at: AtomicU64::new(0),
        }
    }

    /// Records `now`, unless a later moment is recorded already.
    pub fn record(&self, now: Instant) {
        self.at.fetch_max(self.offset(now), Ordering::Relaxed);
    }

    /// Sets the moment to `at` (earlier or later than before), or to none.
    pub fn set(&self, at: Option<Instant>) {
        self.at
            .store(at.map_or(0, |at| self.offset(at)), Ordering::Relaxed);
    }

    fn offset(&self, at: Instant) -> u64 {
        let micros = at.saturating_duration_since(self.epoch).as_micros();
        u64::try_from(micros).unwrap_or(u64::MAX - 1) + 1
    }

    /// How long before `now` the moment was; `None` if there is none.
    pub fn since(&self, now: Instant) -> Option<Duration> {
        let at = self.at.load(Ordering::Relaxed).checked_sub(1)?;
        let then = self.epoch + Duration::from_micros(at);
        Some(now.saturating_duration_since(then))
    }
}

impl Default for Moment {
    fn default() -> Self {
        Self::new(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_the_last_contact_and_never_goes_negative() {
        let epoch = Instant::now();
        let c = Moment::new(epoch);
        assert_eq!(c.since(epoch + Duration::from_secs(1)), None);
        c.record(epoch + Duration::from_millis(500));
        assert_eq!(
            c.since(epoch + Duration::from_millis(1_700)),
            Some(Duration::from_millis(1_200))
        );
        // A contact recorded out of order does not move it back.
        c.record(epoch + Duration::from_millis(100));
        assert_eq!(
            c.since(epoch + Duration::from_millis(600)),
            Some(Duration::from_millis(100))
        );
        assert_eq!(c.since(epoch), Some(Duration::ZERO));
        c.set(Some(epoch));
        assert_eq!(
            c.since(epoch + Duration::from_secs(1)),
            Some(Duration::from_secs(1))
        );
        c.set(None);
        assert_eq!(c.since(epoch + Duration::from_secs(1)), None);
    }
}
