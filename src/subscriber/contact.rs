//! When a node last vouched for this subscriber's state, on a monotonic clock: a wall clock
//! stepped backwards (NTP, a VM restored from a snapshot) would hide staleness, and one stepped
//! forwards would invent it. The caller passes the time in, so tests drive it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// The last contact, readable from any thread without a lock.
#[derive(Debug)]
pub struct LastContact {
    /// The instant the offsets count from.
    epoch: Instant,
    /// Microseconds from `epoch` to the last contact, plus one; 0 before any.
    at: AtomicU64,
}

impl LastContact {
    /// No contact yet; offsets count from `epoch`.
    pub fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            at: AtomicU64::new(0),
        }
    }

    /// Records a contact at `now`.
    pub fn record(&self, now: Instant) {
        let micros = now.saturating_duration_since(self.epoch).as_micros();
        let at = u64::try_from(micros).unwrap_or(u64::MAX - 1) + 1;
        self.at.fetch_max(at, Ordering::Relaxed);
    }

    /// How long before `now` the last contact was; `None` if there was none.
    pub fn since(&self, now: Instant) -> Option<Duration> {
        let at = self.at.load(Ordering::Relaxed).checked_sub(1)?;
        let then = self.epoch + Duration::from_micros(at);
        Some(now.saturating_duration_since(then))
    }
}

impl Default for LastContact {
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
        let c = LastContact::new(epoch);
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
    }
}
