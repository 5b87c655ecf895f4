//! A deterministic simulation of the stream contract: nodes and subscribers drive the
//! protocol's two state machines (`recall_stream::Session`, `recall_stream::Follower` over the
//! sidecar's real filter) through the real codec and protobuf bytes, while a seeded scheduler
//! commits, applies, delivers and breaks things: cut streams, stalled subscribers, tampered
//! transports, compacted windows, corrupted subscriber states, nodes restarted from an older
//! disk, partitions and leader changes. After every event: nothing is applied out of order or
//! skipped (every state a subscriber holds is a committed one, and it never goes back), acks
//! name only what was applied, only honest acks count, a fresh verdict is given only to a
//! correct state, and a convergence report never runs ahead of what subscribers hold. Once the
//! faults stop, every subscriber must reach the committed head with an equal digest.
//!
//! `RECALL_SIM_SEEDS=N` runs N seeds (default 2000); `RECALL_SIM_SEED=S` replays one seed and
//! prints every event.

mod check;
mod cluster;
mod commands;
mod faults;
mod world;

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use world::{Violation, World};

/// One tick of simulated time, in milliseconds.
const TICK_MS: u64 = 10;

fn ticks(n: u64) -> Duration {
    Duration::from_millis(n * TICK_MS)
}

/// The shape of one run, drawn from its seed.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub(crate) nodes: usize,
    pub(crate) subs: usize,
    pub(crate) steps: u64,
    pub(crate) window_deltas: usize,
    pub(crate) queue: usize,
    pub(crate) chunk_bytes: usize,
    pub(crate) catch_up_wait: u64,
    /// A follower without leader contact for longer ends its streams.
    pub(crate) lost_after: u64,
    /// A follower without leader contact for longer cannot vouch for its state.
    pub(crate) contact_bound: u64,
    /// How far behind the commit index a node can vouch for its state.
    pub(crate) max_lag: u64,
    /// How often a fault happens, per step.
    pub(crate) faults: f64,
    /// How long a node waits for a subscriber to read a full queue before cutting it off.
    pub(crate) send_deadline: u64,
}

impl SimConfig {
    fn draw(rng: &mut StdRng) -> Self {
        Self {
            nodes: 3,
            subs: rng.random_range(1..=5),
            steps: rng.random_range(200..600),
            window_deltas: rng.random_range(1..=12),
            queue: rng.random_range(3..=48),
            chunk_bytes: rng.random_range(40..=400),
            catch_up_wait: rng.random_range(2..=20),
            lost_after: 30,
            contact_bound: 15,
            max_lag: rng.random_range(0..=4),
            faults: rng.random_range(0.0..0.15),
            send_deadline: 20,
        }
    }
}

/// One step of the faulty phase: a random event.
fn step(w: &mut World) -> Result<(), Violation> {
    let nodes = w.nodes.len();
    let subs = w.subs.len();
    let n = w.rng.random_range(0..nodes);
    let s = w.rng.random_range(0..subs);
    if w.rng.random_bool(w.cfg.faults) {
        let links = w.open_links();
        match w.rng.random_range(0..10) {
            0 | 1 => {
                if let Some(&l) = links.get(w.rng.random_range(0..links.len().max(1))) {
                    w.cut(l);
                }
            }
            2 => {
                let t = w.rng.random_range(5..80);
                w.stall(s, t);
            }
            3 => {
                for _ in 0..w.rng.random_range(1..4) {
                    w.nodes[n].window.drop_oldest();
                }
            }
            4 => w.restart_node(n),
            5 => w.elect(n),
            6 => {
                let cut = !w.nodes[n].partitioned;
                w.partition(n, cut);
            }
            7 => w.flip(s),
            8 => {
                if let Some(&l) = links.get(w.rng.random_range(0..links.len().max(1))) {
                    w.tamper(l);
                }
            }
            _ => w.nodes[n].disk = w.nodes[n].set.clone(),
        }
        return Ok(());
    }
    match w.rng.random_range(0..30) {
        0..=2 => w.commit(),
        3..=7 => {
            let k = w.rng.random_range(1..4);
            w.apply(n, k)?
        }
        8..=10 => w.contact(n),
        11..=18 => w.deliver_down(s)?,
        19..=23 => {
            let links = w.open_links();
            if let Some(&l) = links.get(w.rng.random_range(0..links.len().max(1))) {
                w.deliver_up(l)?;
            }
        }
        24..=26 => {
            let links = w.open_links();
            if let Some(&l) = links.get(w.rng.random_range(0..links.len().max(1))) {
                w.tick(l)?;
            }
        }
        27 if w.leader.is_none() => w.elect(n),
        _ => w.connect(s, n),
    }
    Ok(())
}

/// Faults stop and everything heals; every subscriber must then reach the committed head.
fn settle(w: &mut World) -> Result<(), Violation> {
    for n in 0..w.nodes.len() {
        w.partition(n, false);
    }
    for s in 0..w.subs.len() {
        w.subs[s].stalled_until = 0;
    }
    if w.leader.is_none() {
        w.elect(0);
    }
    for round in 0..400 {
        w.now += 1;
        for n in 0..w.nodes.len() {
            w.contact(n);
            w.apply(n, usize::MAX)?;
        }
        for l in w.open_links() {
            w.tick(l)?;
            while !w.links[l].up.is_empty() {
                w.deliver_up(l)?;
            }
        }
        for s in 0..w.subs.len() {
            for _ in 0..64 {
                w.deliver_down(s)?;
            }
            let n = (s + round) % w.nodes.len();
            w.connect(s, n);
        }
        w.check_convergence()?;
        if settled(w) {
            return Ok(());
        }
    }
    let head = w.truth.head();
    let at: Vec<_> = w
        .subs
        .iter()
        .map(|s| (s.f.replica().version(), s.link.is_some(), s.f.is_diverged()))
        .collect();
    Err(format!(
        "no convergence after the faults stopped: head v{head}, subscribers (version, \
         connected, diverged) {at:?}, counted {:?}",
        w.counted
    ))
}

fn settled(w: &World) -> bool {
    let head = w.truth.head();
    let digest = w.truth.digest_at(head);
    w.subs.iter().enumerate().all(|(s, sub)| {
        let r = sub.f.replica();
        !sub.corrupt && r.version() == head && Some(r.digest()) == digest && w.counted[s] == head
    })
}

/// Runs one seed: its counters, or what broke and the events before it.
fn run(seed: u64, verbose: bool) -> Result<world::Stats, (Violation, Vec<String>)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let cfg = SimConfig::draw(&mut rng);
    if verbose {
        eprintln!("{cfg:?}");
    }
    let mut w = World::new(rng, cfg, verbose);
    for _ in 0..w.cfg.steps {
        w.now += 1;
        if let Err(v) = step(&mut w).and_then(|()| w.check_convergence()) {
            return Err((v, w.trace.into()));
        }
    }
    match settle(&mut w) {
        Ok(()) => Ok(w.stats),
        Err(v) => Err((v, w.trace.into())),
    }
}

fn seeds() -> std::ops::Range<u64> {
    if let Some(s) = std::env::var("RECALL_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return s..s + 1;
    }
    let n = std::env::var("RECALL_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    0..n
}

#[test]
fn every_seed_keeps_the_stream_contract_and_converges_once_faults_stop() {
    let replay = std::env::var("RECALL_SIM_SEED").is_ok();
    let mut totals = world::Stats::default();
    for seed in seeds() {
        match run(seed, replay) {
            Ok(s) => {
                totals.commits += s.commits;
                totals.failures += s.failures;
                totals.counted += s.counted;
                totals.mismatches += s.mismatches;
                totals.stale_acks += s.stale_acks;
                totals.vouched += s.vouched;
                totals.witnessed += s.witnessed;
                for (k, v) in s.snapshots {
                    *totals.snapshots.entry(k).or_default() += v;
                }
                for (k, v) in s.ends {
                    *totals.ends.entry(k).or_default() += v;
                }
            }
            Err((v, trace)) => {
                panic!(
                    "seed {seed}: {v}\nlast events:\n  {}\nreplay: RECALL_SIM_SEED={seed} cargo \
                     test --test stream_sim -- --nocapture",
                    trace.join("\n  ")
                );
            }
        }
    }
    eprintln!("{totals:#?}");
    // The faults must have been exercised, or the run proves little.
    if !replay {
        for reason in [
            "new_subscriber",
            "behind_window",
            "too_slow",
            "digest_mismatch",
        ] {
            assert!(
                totals.snapshots.get(reason).copied().unwrap_or(0) > 0,
                "no snapshot for {reason}: {totals:?}"
            );
        }
        assert!(totals.failures > 0 && totals.vouched > 0 && totals.counted > 0);
        assert!(
            totals.witnessed > 0,
            "no checkpoint was checked: {totals:?}"
        );
        assert!(totals.mismatches > 0 && totals.stale_acks > 0, "{totals:?}");
    }
}
