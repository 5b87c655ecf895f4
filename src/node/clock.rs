//! The node's clock, injected so tests (and simulations) can drive time. The leader stamps every
//! command with it when proposing, so applying stays deterministic on every replica.

use std::sync::Arc;

use recall_core::Timestamp;

/// Where a node reads the time.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The system clock.
pub fn system() -> Clock {
    Arc::new(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp::from_millis(i64::try_from(now.as_millis()).unwrap_or(i64::MAX))
    })
}
