//! The checkers: one task per sidecar, asking it at a steady rate (one `CheckBatch` per
//! period, at most one in flight) about acknowledged revocations, never-revoked credentials and
//! lifted ones, and recording every answer with its times, version and staleness. They only
//! present a revocation once the writer has its acknowledgement, so every answer can be judged
//! against what the writer was told.
//!
//! Each acknowledged write also puts a few of its revocations (the same ones on every sidecar,
//! drawn from the seed and the write) on a watch list, asked every period until the sidecar
//! refuses them: the sample of the exposure windows.

use std::collections::{HashSet, VecDeque};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use recall::proto as pb;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::{Answer, Cred, Policy, Verdict};
use crate::fleet::Sidecar;
use crate::workload::{ISSUER, Workload, WriteProgress};

/// How the checkers ask.
#[derive(Clone, Copy, Debug)]
pub struct LiveConfig {
    /// One check of every sidecar per period.
    pub period: Duration,
    /// Acknowledged revocations drawn at random, per check.
    pub revoked_per_check: usize,
    /// Never-revoked credentials drawn at random, per check.
    pub clean_per_check: usize,
    /// Never-revoked credentials to draw from.
    pub clean_pool: usize,
    /// Revocations of each acknowledged write watched until every sidecar refuses them.
    pub watch_per_ack: usize,
    /// Watched credentials asked per check at most (the rest wait their turn).
    pub watch_per_check: usize,
    /// Revoke-then-lift cycles written during the recall.
    pub lifts: usize,
    /// How long one check may take before it counts as unanswered.
    pub timeout: Duration,
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            period: Duration::from_millis(10),
            revoked_per_check: 16,
            clean_per_check: 8,
            clean_pool: 1024,
            watch_per_ack: 4,
            watch_per_check: 64,
            lifts: 4,
            timeout: Duration::from_secs(1),
        }
    }
}

/// The credentials by number: the workload's revocations first, then the never-revoked pool,
/// then the lifted ones.
pub struct Creds {
    revoked: Arc<Vec<String>>,
    clean: Vec<String>,
    lifted: Vec<String>,
}

impl Creds {
    /// The credentials of `workload`, with `clean` never-revoked and `lifted` lifted ones.
    pub fn new(workload: &Workload, clean: usize, lifted: usize) -> Self {
        Self {
            revoked: workload.revoked.clone(),
            clean: workload.clean(clean),
            lifted: workload.lifted(lifted),
        }
    }

    /// The workload's `i`-th revocation.
    pub fn revoked(&self, i: usize) -> Cred {
        i as Cred
    }

    /// The `j`-th never-revoked credential.
    pub fn clean(&self, j: usize) -> Cred {
        (self.revoked.len() + j) as Cred
    }

    /// The `k`-th lifted credential.
    pub fn lifted(&self, k: usize) -> Cred {
        (self.revoked.len() + self.clean.len() + k) as Cred
    }

    /// The token id of `c`.
    pub fn id(&self, c: Cred) -> &str {
        let c = c as usize;
        let (n, m) = (self.revoked.len(), self.clean.len());
        if c < n {
            &self.revoked[c]
        } else if c < n + m {
            &self.clean[c - n]
        } else {
            &self.lifted[c - n - m]
        }
    }
}

/// The revocations of the acknowledged write `range` that every sidecar watches: `k` drawn
/// from `seed` and the write, so every checker picks the same ones.
pub fn watched(seed: u64, range: &Range<usize>, k: usize) -> Vec<Cred> {
    if range.is_empty() {
        return Vec::new();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (range.start as u64).rotate_left(17));
    let mut picked: Vec<Cred> = (0..k.min(range.len()))
        .map(|_| rng.random_range(range.clone()) as Cred)
        .collect();
    picked.sort_unstable();
    picked.dedup();
    picked
}

/// The lifted credentials being presented, and which sidecars refused each: written by the
/// checkers, read by the lift cycles.
#[derive(Default)]
pub struct LiftBoard {
    active: watch::Sender<Vec<Cred>>,
    refused: watch::Sender<HashSet<(Cred, u16)>>,
}

impl LiftBoard {
    /// Presents `c` from now on.
    pub fn activate(&self, c: Cred) {
        self.active.send_modify(|a| a.push(c));
    }

    fn active(&self) -> Vec<Cred> {
        self.active.borrow().clone()
    }

    fn refused_by(&self, c: Cred, sidecar: u16) {
        self.refused.send_if_modified(|r| r.insert((c, sidecar)));
    }

    /// Resolves once each of `sidecars` refused `c`.
    pub async fn refused_by_all(&self, c: Cred, sidecars: u16) {
        let mut rx = self.refused.subscribe();
        let _ = rx
            .wait_for(|r| (0..sidecars).all(|s| r.contains(&(c, s))))
            .await;
    }
}

/// What one checker brings back.
#[derive(Debug, Default)]
pub struct Recorded {
    /// Every answer.
    pub answers: Vec<Answer>,
    /// Checks that failed or timed out.
    pub unanswered: u64,
}

/// What every checker shares.
pub struct Shared {
    /// How they ask.
    pub cfg: LiveConfig,
    /// The credentials.
    pub creds: Arc<Creds>,
    /// The acknowledged writes.
    pub progress: WriteProgress,
    /// The lifted credentials.
    pub board: Arc<LiftBoard>,
    /// The origin of every time recorded.
    pub origin: Instant,
    /// The run's seed.
    pub seed: u64,
}

/// The running checkers.
pub struct Checkers {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<Recorded>>,
}

impl Checkers {
    /// Starts one checker per sidecar.
    pub fn start(shared: Arc<Shared>, sidecars: &[Arc<Sidecar>]) -> Self {
        let (stop, stopped) = watch::channel(false);
        let tasks = sidecars
            .iter()
            .map(|s| {
                let checker = Checker::new(shared.clone(), s.clone());
                tokio::spawn(checker.run(stopped.clone()))
            })
            .collect();
        Self { stop, tasks }
    }

    /// No checkers at all.
    pub fn none() -> Self {
        Self {
            stop: watch::channel(false).0,
            tasks: Vec::new(),
        }
    }

    /// Stops them; every answer they recorded.
    pub async fn stop(self) -> Recorded {
        let _ = self.stop.send(true);
        let mut all = Recorded::default();
        for t in self.tasks {
            if let Ok(r) = t.await {
                all.answers.extend(r.answers);
                all.unanswered += r.unanswered;
            }
        }
        all
    }
}

struct Checker {
    shared: Arc<Shared>,
    sidecar: Arc<Sidecar>,
    index: u16,
    rng: ChaCha8Rng,
    acked: Vec<Range<usize>>,
    seen_acks: usize,
    watching: VecDeque<Cred>,
    recorded: Recorded,
}

impl Checker {
    fn new(shared: Arc<Shared>, sidecar: Arc<Sidecar>) -> Self {
        let index = sidecar.index as u16;
        let rng = ChaCha8Rng::seed_from_u64(shared.seed ^ 0xc4ec_0000 ^ u64::from(index));
        Self {
            shared,
            sidecar,
            index,
            rng,
            acked: Vec::new(),
            seen_acks: 0,
            watching: VecDeque::new(),
            recorded: Recorded::default(),
        }
    }

    async fn run(mut self, mut stopped: watch::Receiver<bool>) -> Recorded {
        let mut client = self.sidecar.checker();
        let mut tick = tokio::time::interval(self.shared.cfg.period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        while !*stopped.borrow() {
            tokio::select! {
                _ = stopped.changed() => break,
                _ = tick.tick() => {}
            }
            self.take_acks();
            let (creds, watched) = self.draw();
            if creds.is_empty() {
                continue;
            }
            let facts = creds
                .iter()
                .map(|c| pb::TokenFacts {
                    iss: ISSUER.into(),
                    jti: Some(self.shared.creds.id(*c).to_string()),
                    ..Default::default()
                })
                .collect();
            let origin = self.shared.origin;
            let sent = origin.elapsed();
            let call = client.check_batch(pb::CheckBatchRequest { facts });
            let reply = tokio::time::timeout(self.shared.cfg.timeout, call).await;
            let received = origin.elapsed();
            let replies = match reply {
                Ok(Ok(r)) => r.into_inner().replies,
                _ => Vec::new(),
            };
            if replies.len() != creds.len() {
                self.recorded.unanswered += 1;
                self.watching.extend(watched);
                continue;
            }
            let mut refused = HashSet::new();
            for (&cred, r) in creds.iter().zip(&replies) {
                let Some(answer) = self.answer(cred, r, sent, received) else {
                    self.recorded.unanswered += 1;
                    continue;
                };
                if answer.verdict.refuses() {
                    refused.insert(cred);
                    self.shared.board.refused_by(cred, self.index);
                }
                self.recorded.answers.push(answer);
            }
            // A watched revocation stays on the list until this sidecar refuses it.
            self.watching
                .extend(watched.into_iter().filter(|c| !refused.contains(c)));
        }
        self.recorded
    }

    /// Takes the writes acknowledged since the last period: their revocations may be drawn,
    /// and a few are watched.
    fn take_acks(&mut self) {
        let s = &self.shared;
        for ack in s.progress.acks_since(self.seen_acks) {
            self.seen_acks += 1;
            self.watching
                .extend(watched(s.seed, &ack.range, s.cfg.watch_per_ack));
            self.acked.push(ack.range);
        }
    }

    /// This period's credentials, and which of them came off the watch list.
    fn draw(&mut self) -> (Vec<Cred>, Vec<Cred>) {
        let cfg = self.shared.cfg;
        let creds = &self.shared.creds;
        let n = self.watching.len().min(cfg.watch_per_check);
        let watched: Vec<Cred> = self.watching.drain(..n).collect();
        let mut out = watched.clone();
        if !self.acked.is_empty() {
            for _ in 0..cfg.revoked_per_check {
                let r = &self.acked[self.rng.random_range(0..self.acked.len())];
                out.push(creds.revoked(self.rng.random_range(r.clone())));
            }
        }
        for _ in 0..cfg.clean_per_check.min(cfg.clean_pool) {
            out.push(creds.clean(self.rng.random_range(0..cfg.clean_pool)));
        }
        out.extend(self.shared.board.active());
        (out, watched)
    }

    fn answer(
        &self,
        cred: Cred,
        r: &pb::CheckReply,
        sent: Duration,
        received: Duration,
    ) -> Option<Answer> {
        let verdict = match pb::Verdict::try_from(r.verdict).ok()? {
            pb::Verdict::Allowed => Verdict::Allowed,
            pb::Verdict::Revoked => Verdict::Revoked,
            pb::Verdict::PossiblyRevoked => Verdict::PossiblyRevoked,
            pb::Verdict::Unspecified => return None,
        };
        let policy = match pb::StalePolicy::try_from(r.policy).ok()? {
            pb::StalePolicy::FailOpen => Policy::FailOpen,
            pb::StalePolicy::FailClosed => Policy::FailClosed,
            pb::StalePolicy::Unspecified => return None,
        };
        Some(Answer {
            sidecar: self.index,
            cred,
            sent,
            received,
            verdict,
            version: r.version,
            stale: r.stale,
            policy,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_checker_watches_the_same_revocations_of_a_write() {
        let a = watched(7, &(1000..2000), 4);
        assert_eq!(a, watched(7, &(1000..2000), 4));
        assert!(!a.is_empty() && a.len() <= 4);
        assert!(a.iter().all(|c| (1000..2000).contains(&(*c as usize))));
        assert_ne!(a, watched(7, &(2000..3000), 4));
        assert!(watched(7, &(5..5), 4).is_empty());
    }

    #[test]
    fn credential_numbers_map_to_the_right_token_ids() {
        let w = Workload::new(1, 10);
        let c = Creds::new(&w, 3, 2);
        assert_eq!(c.id(c.revoked(4)), w.revoked[4]);
        assert_eq!(c.id(c.clean(2)), w.clean(3)[2]);
        assert_eq!(c.id(c.lifted(1)), w.lifted(2)[1]);
        let all: HashSet<&str> = (0..15).map(|i| c.id(i)).collect();
        assert_eq!(all.len(), 15, "the three streams never share an id");
    }
}
