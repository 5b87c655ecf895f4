//! The mass recall every system is put through: N token ids drawn from the run's seed, written in
//! batches with a fixed number of requests in flight, and keys that are never revoked (for the
//! false-positive checks). The same workload goes to recall, etcd and Redis.

use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::watch;
use tokio::time::Instant;

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

    /// `n` token ids the live checkers revoke and then lift, one at a time (a third stream of
    /// the seed: never among the revoked or the clean ones).
    pub fn lifted(&self, n: usize) -> Vec<String> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0x11f7_ed00_0000_0003);
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

/// One write request the system under test acknowledged: which revocations, and when the
/// acknowledgement arrived (the moment the writer may tell an operator "revoked").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    /// The revocations, as indices into [`Workload::revoked`].
    pub range: Range<usize>,
    /// When the acknowledgement arrived.
    pub at: Instant,
}

/// How far the writes have got, shared with whoever injects faults "mid-recall" and with the
/// live checkers (which present only acknowledged revocations). A gated progress holds back new
/// write requests once `at` revocations are acknowledged, until the fault is in place
/// ([`WriteProgress::release`]): the fault then lands mid-recall however fast the system under
/// test writes, and the writes go on while it lasts.
#[derive(Clone)]
pub struct WriteProgress {
    written: Arc<AtomicU64>,
    changed: Arc<watch::Sender<u64>>,
    gate_at: Option<u64>,
    open: Arc<watch::Sender<bool>>,
    acks: Arc<Mutex<Vec<Ack>>>,
}

impl Default for WriteProgress {
    fn default() -> Self {
        Self {
            written: Arc::new(AtomicU64::new(0)),
            changed: Arc::new(watch::channel(0).0),
            gate_at: None,
            open: Arc::new(watch::channel(true).0),
            acks: Arc::default(),
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

    /// Records that the revocations `range` were acknowledged at `at`.
    pub fn acknowledged(&self, range: Range<usize>, at: Instant) {
        let n = range.len() as u64;
        self.acks.lock().expect("acks lock").push(Ack { range, at });
        self.add(n);
    }

    /// The acknowledgements from the `from`-th on, in the order they arrived.
    pub fn acks_since(&self, from: usize) -> Vec<Ack> {
        let acks = self.acks.lock().expect("acks lock");
        acks.get(from..).map(<[Ack]>::to_vec).unwrap_or_default()
    }

    /// Waits until at least `n` revocations are acknowledged.
    pub async fn reached(&self, n: u64) {
        let mut rx = self.changed.subscribe();
        let _ = rx.wait_for(|w| *w >= n).await;
    }
}

/// Runs `write` on every batch with `in_flight` requests at a time; each batch is retried by
/// `write` itself until it is acknowledged, and `progress` records the acknowledgement the
/// moment it arrives. Returns the results in completion order.
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
            let fut = write(ids.clone(), range.clone());
            let progress = progress.clone();
            async move {
                progress.pass().await;
                let r = fut.await?;
                progress.acknowledged(range, Instant::now());
                Ok::<_, anyhow::Error>(r)
            }
        })
        .buffer_unordered(in_flight.max(1));
    while let Some(r) = stream.next().await {
        out.push(r?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_acknowledged_batch_is_logged_once_with_its_range() {
        let w = Workload::new(3, 2_500);
        let progress = WriteProgress::default();
        let before = Instant::now();
        let out = pipelined(
            &w,
            1000,
            2,
            &progress,
            |_, range| async move { Ok(range.start) },
        )
        .await
        .unwrap();
        assert_eq!(out.len(), 3);
        let mut acks = progress.acks_since(0);
        assert!(acks.iter().all(|a| a.at >= before));
        acks.sort_by_key(|a| a.range.start);
        let ranges: Vec<_> = acks.into_iter().map(|a| a.range).collect();
        assert_eq!(ranges, [0..1000, 1000..2000, 2000..2500]);
        assert_eq!(progress.written(), 2_500);
        assert_eq!(progress.acks_since(2).len(), 1);
        assert!(progress.acks_since(9).is_empty());
    }
}
