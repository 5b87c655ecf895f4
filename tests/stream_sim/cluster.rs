//! The authority as the simulation models it: the committed log (the truth), and nodes that
//! apply a prefix of it, keep a delta window, hear from a leader or not, and restart from an
//! older disk.

use std::sync::Arc;
use std::time::Duration;

use recall_core::{Command, Digest, FingerprintSeed, RevocationSet};
use recall_stream::{Applied, DeltaWindow, Snapshot, Source, Window, Witness};

use super::SimConfig;

/// The committed log and the digest after every version.
pub struct Truth {
    log: Vec<Option<Command>>,
    /// (tick, head) after every commit.
    heads: Vec<(u64, u64)>,
    digests: Vec<Digest>,
    set: RevocationSet,
}

impl Truth {
    pub fn new(seed: FingerprintSeed) -> Self {
        let set = RevocationSet::new(seed);
        Self {
            log: Vec::new(),
            heads: vec![(0, 0)],
            digests: vec![set.digest()],
            set,
        }
    }

    /// The last committed version.
    pub fn head(&self) -> u64 {
        self.log.len() as u64
    }

    /// Commits `cmd` (`None`: an entry that changes no revocation, like a leader's blank entry).
    pub fn commit(&mut self, cmd: Option<Command>, now: u64) {
        let v = self.head() + 1;
        match &cmd {
            Some(c) => {
                self.set.apply(v, c).expect("the truth applies in order");
            }
            None => self.set.advance(v).expect("the truth advances in order"),
        }
        self.digests.push(self.set.digest());
        self.log.push(cmd);
        self.heads.push((now, v));
    }

    /// The last version committed at or before `tick`.
    pub fn head_at(&self, tick: u64) -> u64 {
        let i = self.heads.partition_point(|&(t, _)| t <= tick);
        self.heads[i.saturating_sub(1)].1
    }

    /// The digest of the committed state at `version`.
    pub fn digest_at(&self, version: u64) -> Option<Digest> {
        self.digests.get(version as usize).copied()
    }

    fn entry(&self, version: u64) -> &Option<Command> {
        &self.log[version as usize - 1]
    }
}

/// One authority node.
pub struct Node {
    pub set: RevocationSet,
    pub window: DeltaWindow,
    /// The last log index this node holds (it applies up to it).
    pub received: u64,
    /// When it last heard from a leader (sim ticks); `None` since it started.
    pub last_contact: Option<u64>,
    /// The commit index it learned at that contact.
    pub committed_known: u64,
    /// When it (re)started.
    pub started: u64,
    /// What a restart finds on disk: an older state.
    pub disk: RevocationSet,
    /// Cut off from the other nodes (its own subscribers still reach it).
    pub partitioned: bool,
    /// As leader, the index of the first entry of its term: until it has applied that, it does
    /// not know what the last leader committed.
    pub term_start: u64,
    /// The latest checkpoint witnessed: every [`WITNESS_EVERY`] versions, the digest there.
    pub witness: Option<Arc<Witness>>,
}

/// How often (in versions) the cluster witnesses a checkpoint: less often than every version,
/// so subscribers check checkpoints older than their state.
const WITNESS_EVERY: u64 = 4;

impl Node {
    pub fn new(seed: FingerprintSeed, cfg: &SimConfig) -> Self {
        let set = RevocationSet::new(seed);
        Self {
            disk: set.clone(),
            set,
            window: DeltaWindow::new(cfg.window_deltas, usize::MAX),
            received: 0,
            last_contact: Some(0),
            committed_known: 0,
            started: 0,
            partitioned: false,
            term_start: 0,
            witness: None,
        }
    }

    /// Applies the next entry it holds; whether there was one.
    pub fn apply_next(&mut self, truth: &Truth) -> bool {
        let v = self.set.version() + 1;
        if v > self.received {
            return false;
        }
        match truth.entry(v) {
            Some(cmd) => {
                let applied = self.set.apply(v, cmd).expect("a node applies in order");
                if let Some(d) = applied.delta {
                    self.window.push(d);
                }
            }
            None => self.set.advance(v).expect("a node advances in order"),
        }
        if v.is_multiple_of(WITNESS_EVERY) {
            self.witness = Some(Arc::new(Witness {
                version: v,
                digest: self.set.digest(),
                ..Witness::default()
            }));
        }
        true
    }

    /// The process restarts from what its disk holds: an older state, no window, no contact.
    pub fn restart(&mut self, now: u64) {
        self.set = self.disk.clone();
        self.window.clear();
        self.received = self.set.version();
        self.committed_known = self.set.version();
        self.last_contact = None;
        self.started = now;
    }
}

/// A node as a session reads it, at one moment.
pub struct NodeSource<'a> {
    pub node: &'a Node,
    pub leads: bool,
    pub now: u64,
    pub cfg: &'a SimConfig,
}

impl<'a> NodeSource<'a> {
    /// Node `n` of `nodes` as its sessions read it now.
    pub fn of(
        nodes: &'a [Node],
        leader: Option<usize>,
        n: usize,
        now: u64,
        cfg: &'a SimConfig,
    ) -> Self {
        Self {
            node: &nodes[n],
            leads: leader == Some(n),
            now,
            cfg,
        }
    }

    fn since_contact(&self) -> u64 {
        self.now - self.node.last_contact.unwrap_or(self.node.started)
    }
}

impl Source for NodeSource<'_> {
    fn applied(&self) -> Applied {
        Applied {
            version: self.node.set.version(),
            last_change: self.node.set.last_change(),
            digest: self.node.set.digest(),
        }
    }

    fn seed(&self) -> FingerprintSeed {
        self.node.set.fingerprinter().seed()
    }

    fn deltas_after(&self, version: u64) -> Window {
        let set = &self.node.set;
        self.node
            .window
            .after(version, set.version(), set.last_change())
    }

    fn snapshot(&self, expiries: bool, max_bytes: usize) -> Arc<Snapshot> {
        let view = self.node.set.view();
        let expiries = expiries.then(|| self.node.set.expiries(&view.fingerprints));
        Arc::new(Snapshot::build(&view, expiries.as_deref(), max_bytes))
    }

    fn leads(&self) -> bool {
        self.leads
    }

    fn out_of_touch(&self) -> Option<Duration> {
        let silent = self.since_contact();
        (!self.leads && silent > self.cfg.lost_after).then(|| super::ticks(silent))
    }

    /// A leader knows the commit index once it has applied an entry of its term; before, it
    /// knows only what it learned as a follower.
    fn committed(&self) -> u64 {
        if self.leads && self.node.set.version() >= self.node.term_start {
            self.node.received
        } else {
            self.node.committed_known
        }
    }

    fn doubt(&self, applied: u64) -> Option<&'static str> {
        if !self.leads
            && (self.node.last_contact.is_none() || self.since_contact() > self.cfg.contact_bound)
        {
            return Some("no_leader_contact");
        }
        if self.leads && applied < self.node.term_start {
            return Some("new_leader");
        }
        (applied + self.cfg.max_lag < self.committed()).then_some("behind_commit")
    }

    fn witness(&self) -> Option<Arc<Witness>> {
        self.node.witness.clone()
    }

    fn contact_age(&self) -> Duration {
        if self.leads {
            Duration::ZERO
        } else {
            super::ticks(self.since_contact())
        }
    }

    fn wall_ms(&self) -> i64 {
        super::ticks(self.now).as_millis() as i64
    }
}
