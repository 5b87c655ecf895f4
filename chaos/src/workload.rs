//! The mass recall every system is put through: N token ids drawn from the run's seed, written in
//! batches with a fixed number of requests in flight, and keys that are never revoked (for the
//! false-positive checks). The same workload goes to recall, etcd and Redis.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::watch;

/// The issuer (recall namespace) of every revoked token.
pub const ISSUER: &str = "https://chaos.recall.invalid";

/// The revocations of one run.
#[derive(Clone)]
pub struct Workload {
    /// The token ids to revoke, in write order.
    pub revoked: Arc<Vec<String>>,
    seed: u64,
}

/// A token id: 32 hex digits, like a random 128-bit jti.
fn token_id(rng: &mut ChaCha8Rng) -> String {
    format!("{:032x}", rng.random::<u128>())
}

impl Workload {
    /// `n` token ids drawn from `seed`.
    pub fn new(seed: u64, n: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let revoked = (0..n).map(|_| token_id(&mut rng)).collect();
        Self {
            revoked: Arc::new(revoked),
            seed,
        }
    }

    /// How many revocations.
    pub fn len(&self) -> u64 {
        self.revoked.len() as u64
    }

    /// Whether there is nothing to revoke.
    pub fn is_empty(&self) -> bool {
        self.revoked.is_empty()
    }

    /// `n` token ids that are never revoked (drawn from another stream of the seed).
    pub fn clean(&self, n: usize) -> Vec<String> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0xc1ea_5eed_0000_0001);
        (0..n).map(|_| token_id(&mut rng)).collect()
    }

    /// `n` revoked ids picked at random (with `rng`), for the sampled checks.
    pub fn sample(&self, rng: &mut ChaCha8Rng, n: usize) -> Vec<String> {
        if self.revoked.is_empty() {
            return Vec::new();
        }
        (0..n)
            .map(|_| self.revoked[rng.random_range(0..self.revoked.len())].clone())
            .collect()
    }

    /// The batches of at most `batch` ids, in order.
    pub fn batches(&self, batch: usize) -> Vec<std::ops::Range<usize>> {
        let n = self.revoked.len();
        (0..n.div_ceil(batch.max(1)))
            .map(|i| i * batch..((i + 1) * batch).min(n))
            .collect()
    }
}

/// How far the writes have got, shared with whoever injects faults "mid-recall". A gated
/// progress holds back new write requests once `at` revocations are acknowledged, until the
/// fault is in place ([`WriteProgress::release`]): the fault then lands mid-recall however fast
/// the system under test writes, and the writes go on while it lasts.
#[derive(Clone)]
pub struct WriteProgress {
    written: Arc<AtomicU64>,
    changed: Arc<watch::Sender<u64>>,
    gate_at: Option<u64>,
    open: Arc<watch::Sender<bool>>,
}

impl Default for WriteProgress {
    fn default() -> Self {
        Self {
            written: Arc::new(AtomicU64::new(0)),
            changed: Arc::new(watch::channel(0).0),
            gate_at: None,
            open: Arc::new(watch::channel(true).0),
        }
    }
}

impl WriteProgress {
    /// A progress whose writes wait, once `at` revocations are acknowledged, for
    /// [`WriteProgress::release`].
    pub fn gated(at: u64) -> Self {
        Self {
            gate_at: Some(at),
            open: Arc::new(watch::channel(false).0),
            ..Self::default()
        }
    }

    /// Lets held-back writes go (the fault is in place).
    pub fn release(&self) {
        self.open.send_replace(true);
    }

    /// Waits, before a new write request, while the gate holds writes back.
    async fn pass(&self) {
        if self.gate_at.is_some_and(|at| self.written() >= at) {
            let mut open = self.open.subscribe();
            let _ = open.wait_for(|o| *o).await;
        }
    }

    /// Revocations acknowledged so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Records `n` more acknowledged revocations.
    pub fn add(&self, n: u64) {
        let now = self.written.fetch_add(n, Ordering::Relaxed) + n;
        self.changed.send_replace(now);
    }

    /// Waits until at least `n` revocations are acknowledged.
    pub async fn reached(&self, n: u64) {
        let mut rx = self.changed.subscribe();
        let _ = rx.wait_for(|w| *w >= n).await;
    }
}

/// Runs `write` on every batch with `in_flight` requests at a time; each batch is retried by
/// `write` itself until it is acknowledged. Returns the results in completion order.
pub async fn pipelined<T, F, Fut>(
    workload: &Workload,
    batch: usize,
    in_flight: usize,
    progress: &WriteProgress,
    write: F,
) -> anyhow::Result<Vec<T>>
where
    F: Fn(Arc<Vec<String>>, std::ops::Range<usize>) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let ids = workload.revoked.clone();
    let mut out = Vec::new();
    let mut stream = futures::stream::iter(workload.batches(batch))
        .map(|range| {
            let n = range.len() as u64;
            let fut = write(ids.clone(), range);
            let progress = progress.clone();
            async move {
                progress.pass().await;
                fut.await.map(|r| (n, r))
            }
        })
        .buffer_unordered(in_flight.max(1));
    while let Some(r) = stream.next().await {
        let (n, r) = r?;
        progress.add(n);
        out.push(r);
    }
    Ok(out)
}
