//! Per-identity write rate limits: a token bucket of revocation items per operator identity on
//! each node. A write that finds its bucket short is refused with RESOURCE_EXHAUSTED and a
//! `retry-after-ms` metadata entry; nothing of it is written. Time comes from tokio's clock, so
//! tests can pause it.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::time::{Duration, Instant};

/// The rate one identity may write at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteRate {
    /// Items (revoked keys, lifted keys, rules; at least 1 per write) per second.
    pub items_per_second: u64,
    /// The most items a bucket holds: how large a burst may be.
    pub burst: u64,
}

impl Default for WriteRate {
    fn default() -> Self {
        Self {
            items_per_second: 500_000,
            burst: 1_000_000,
        }
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets of one node.
pub struct RateLimiter {
    rate: WriteRate,
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// The most identities tracked; idle full buckets are dropped past it.
const MAX_TRACKED: usize = 10_000;

impl RateLimiter {
    /// Buckets refilled at `rate`.
    pub fn new(rate: WriteRate) -> Self {
        Self {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `items` from `who`'s bucket, or says how long to wait.
    pub fn take(&self, who: &str, items: u64) -> Result<(), Duration> {
        let items = items.max(1) as f64;
        let (rate, burst) = (
            self.rate.items_per_second.max(1) as f64,
            self.rate.burst.max(1) as f64,
        );
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("rate buckets lock");
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(who) {
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let b = buckets.entry(who.to_owned()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(burst);
        b.at = now;
        // A write larger than the burst may go when the bucket is full (it then owes the rest).
        if b.tokens >= items || b.tokens >= burst {
            b.tokens -= items;
            Ok(())
        } else {
            let short = items.min(burst) - b.tokens;
            Err(Duration::from_secs_f64(short / rate))
        }
    }

    /// [`RateLimiter::take`] as a gRPC refusal.
    pub fn check(&self, who: &str, items: u64) -> Result<(), tonic::Status> {
        self.take(who, items).map_err(|wait| {
            let ms = wait.as_millis().max(1) as u64;
            let mut s = tonic::Status::resource_exhausted(format!(
                "{who} is writing faster than {} items/s (burst {}); retry after {ms} ms",
                self.rate.items_per_second, self.rate.burst
            ));
            if let Ok(v) = ms.to_string().parse() {
                s.metadata_mut().insert("retry-after-ms", v);
            }
            s
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_bucket_refuses_past_its_burst_and_refills_at_its_rate() {
        let r = RateLimiter::new(WriteRate {
            items_per_second: 10,
            burst: 20,
        });
        assert!(r.take("a", 20).is_ok());
        let wait = r.take("a", 5).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert!(r.take("b", 1).is_ok(), "identities have their own buckets");
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(r.take("a", 5).is_ok());
        let s = r.check("a", 1).unwrap_err();
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        assert!(s.metadata().get("retry-after-ms").is_some());
    }
}
