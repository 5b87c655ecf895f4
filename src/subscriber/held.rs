//! What a subscriber follows the stream into ([`Held`]: the sidecar's filter, or a relay's
//! filter with the recent deltas beside it), and what a relay reports upward on every stream it
//! follows ([`Reporter`]).

use std::time::Duration;

use recall_filter::{Filter, FilterError, SnapshotLoader};
use recall_stream::{Replica, Report};

/// What a subscriber keeps in step with the stream: the sidecar's filter, or a relay's, which
/// also keeps the recent deltas it serves downstream.
pub trait Held: Replica<Error = FilterError, Loader = SnapshotLoader> + Send + 'static {
    /// The filter.
    fn filter(&self) -> &Filter;
}

impl Held for Filter {
    fn filter(&self) -> &Filter {
        self
    }
}

/// A relay's report of the subscribers behind it, sent upstream on every stream it follows.
pub trait Reporter: Send + Sync + 'static {
    /// What changed behind the relay since the last call (everything when `full`: a new
    /// stream), as messages small enough for the upstream's limit.
    fn report(&self, full: bool) -> Vec<Report>;
}

/// How often a relay reports the subscribers behind it.
pub const REPORT_EVERY: Duration = Duration::from_millis(250);
