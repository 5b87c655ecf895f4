//! What one baseline subscriber received: the distinct keys, when it first held every key of
//! each write (its side of the exposure window) and of the whole wave, and how the fraction of
//! the wave it held grew over time.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::time::Instant;

use crate::workload::Workload;

/// How many points a subscriber's curve of the wave held has at most (one each time it holds
/// another 1/`CURVE_POINTS` of the wave), plus the last.
const CURVE_POINTS: usize = 200;

/// Which write each key of a run belongs to: the same batches the writer sends.
pub struct WaveIndex {
    write_of: HashMap<String, u32>,
    sizes: Vec<u32>,
    batch: usize,
}

impl WaveIndex {
    /// The index of `workload` written in batches of `batch`.
    pub fn new(workload: &Workload, batch: usize) -> Arc<Self> {
        let batches = workload.batches(batch);
        let mut write_of = HashMap::with_capacity(workload.revoked.len());
        for (w, range) in batches.iter().enumerate() {
            for key in &workload.revoked[range.clone()] {
                write_of.insert(key.clone(), w as u32);
            }
        }
        Arc::new(Self {
            write_of,
            sizes: batches.iter().map(|r| r.len() as u32).collect(),
            batch: batch.max(1),
        })
    }

    /// Keys in the wave.
    pub fn keys(&self) -> usize {
        self.write_of.len()
    }

    /// The write whose batch starts at revocation `start`.
    pub fn write_starting_at(&self, start: usize) -> usize {
        start / self.batch
    }
}

struct Held {
    seen: HashSet<String>,
    /// Per write: keys not yet received.
    missing: Vec<u32>,
    /// Per write: when the last of its keys arrived.
    write_held: Vec<Option<Instant>>,
    /// (when, keys held), each time another step of the wave arrived.
    curve: Vec<(Instant, usize)>,
}

/// One subscriber's tally.
pub struct Tally {
    /// The subscriber's id.
    pub id: String,
    index: Arc<WaveIndex>,
    held: Mutex<Held>,
    complete_at: OnceLock<Instant>,
}

impl Tally {
    /// A tally of subscriber `id` expecting every key of `index`.
    pub fn new(id: impl Into<String>, index: Arc<WaveIndex>) -> Arc<Self> {
        let held = Held {
            seen: HashSet::with_capacity(index.keys()),
            missing: index.sizes.clone(),
            write_held: vec![None; index.sizes.len()],
            curve: Vec::with_capacity(CURVE_POINTS + 1),
        };
        Arc::new(Self {
            id: id.into(),
            index,
            held: Mutex::new(held),
            complete_at: OnceLock::new(),
        })
    }

    /// Records received keys (a key outside the wave is ignored); the first time all are
    /// held, records the instant.
    pub fn receive<I: IntoIterator<Item = String>>(&self, keys: I) {
        let now = Instant::now();
        let mut h = self.held.lock().expect("tally lock");
        let before = h.seen.len();
        for key in keys {
            let Some(&w) = self.index.write_of.get(&key) else {
                continue;
            };
            if h.seen.insert(key) {
                let w = w as usize;
                h.missing[w] -= 1;
                if h.missing[w] == 0 {
                    h.write_held[w] = Some(now);
                }
            }
        }
        let len = h.seen.len();
        let step = (self.index.keys() / CURVE_POINTS).max(1);
        let last = h.curve.last().map_or(0, |(_, n)| *n);
        if len > before && (len >= last + step || len == self.index.keys()) {
            h.curve.push((now, len));
        }
        if len >= self.index.keys() {
            let _ = self.complete_at.set(now);
        }
    }

    /// Which write each key belongs to.
    pub fn index(&self) -> &WaveIndex {
        &self.index
    }

    /// Distinct keys held.
    pub fn held(&self) -> usize {
        self.held.lock().expect("tally lock").seen.len()
    }

    /// When it first held everything.
    pub fn complete_at(&self) -> Option<Instant> {
        self.complete_at.get().copied()
    }

    /// Per write: when it first held every key of it.
    pub fn writes_held(&self) -> Vec<Option<Instant>> {
        self.held.lock().expect("tally lock").write_held.clone()
    }

    /// (when, fraction of the wave held), each time another step of it arrived.
    pub fn curve(&self) -> Vec<(Instant, f64)> {
        let total = self.index.keys().max(1) as f64;
        let h = self.held.lock().expect("tally lock");
        h.curve
            .iter()
            .map(|(at, n)| (*at, *n as f64 / total))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(w: &Workload, range: std::ops::Range<usize>) -> Vec<String> {
        w.revoked[range].to_vec()
    }

    #[tokio::test]
    async fn a_write_is_held_when_its_last_key_arrives_and_the_curve_rises_with_the_wave() {
        let w = Workload::new(1, 2_500);
        let index = WaveIndex::new(&w, 1_000);
        assert_eq!((index.keys(), index.write_starting_at(2_000)), (2_500, 2));
        let t = Tally::new("s", index);
        t.receive(keys(&w, 0..999));
        t.receive(keys(&w, 0..10)); // duplicates count once
        t.receive(["not in the wave".to_string()]);
        assert_eq!(t.held(), 999);
        assert!(t.writes_held().iter().all(Option::is_none));
        t.receive(keys(&w, 999..1_000));
        t.receive(keys(&w, 2_000..2_500));
        let held = t.writes_held();
        assert!(held[0].is_some() && held[1].is_none() && held[2].is_some());
        assert!(t.complete_at().is_none());
        t.receive(keys(&w, 1_000..2_000));
        assert!(t.complete_at().is_some());
        let curve = t.curve();
        let fractions: Vec<f64> = curve.iter().map(|(_, f)| *f).collect();
        // One key more (999 → 1000) is less than a step (2500 / 200): no point of its own.
        assert_eq!(fractions, [999.0 / 2500.0, 0.6, 1.0]);
        assert!(curve.windows(2).all(|p| p[0].0 <= p[1].0));
    }
}
