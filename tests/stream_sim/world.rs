//! The simulated world: nodes, subscribers and the streams between them, every message
//! passing through the real codec and protobuf bytes. Each method is one event; the
//! invariants are checked after every one.

use std::collections::{BTreeMap, VecDeque};

use prost::Message;
use rand::Rng;
use rand::rngs::StdRng;
use recall::proto as pb;
use recall::wire::stream::{down_from_wire, down_to_wire, up_from_wire, up_to_wire};
use recall_core::{Digest, FingerprintSeed};
use recall_filter::{Filter, Mode};
use recall_stream::session::Action;
use recall_stream::{Down, Event, Failure, Follower, Session, SessionConfig, Up};

use super::SimConfig;
use super::cluster::{Node, NodeSource, Truth};

/// A broken invariant, or a failure to converge.
pub type Violation = String;

pub struct Sub {
    pub id: String,
    pub f: Follower<Filter>,
    pub link: Option<usize>,
    pub stalled_until: u64,
    /// Its state was corrupted behind the protocol's back and no snapshot has replaced it.
    pub corrupt: bool,
    /// The highest version it has held.
    pub max_version: u64,
    /// Every (version, digest) it has held.
    pub held: BTreeMap<u64, Digest>,
    pub next_connect: u64,
}

pub struct Link {
    pub sub: usize,
    pub node: usize,
    pub session: Option<Session>,
    pub down: VecDeque<Vec<u8>>,
    pub up: VecDeque<Vec<u8>>,
    /// The node ended the stream; what is queued may still arrive.
    pub node_ended: bool,
    /// When the subscriber last read from it, or the queue last became non-empty.
    pub last_read: u64,
    pub open: bool,
}

#[derive(Default, Debug)]
pub struct Stats {
    pub commits: u64,
    pub snapshots: BTreeMap<&'static str, u64>,
    pub ends: BTreeMap<&'static str, u64>,
    pub failures: u64,
    pub counted: u64,
    pub mismatches: u64,
    pub stale_acks: u64,
    pub vouched: u64,
    pub witnessed: u64,
}

pub struct World {
    pub rng: StdRng,
    pub cfg: SimConfig,
    pub now: u64,
    pub truth: Truth,
    pub nodes: Vec<Node>,
    pub leader: Option<usize>,
    pub subs: Vec<Sub>,
    pub links: Vec<Link>,
    /// The latest version counted for each subscriber (what convergence reports read).
    pub counted: Vec<u64>,
    pub stats: Stats,
    /// The latest events, for the failure report.
    pub trace: VecDeque<String>,
    pub verbose: bool,
}

fn encode_down(m: &Down) -> Vec<u8> {
    down_to_wire(m).encode_to_vec()
}

fn decode_down(b: &[u8]) -> Result<Down, Violation> {
    let m = pb::SubscribeResponse::decode(b).map_err(|e| format!("undecodable down: {e}"))?;
    down_from_wire(m).map_err(|e| format!("the codec refused what it encoded: {e}"))
}

pub(crate) fn encode_up(m: &Up) -> Vec<u8> {
    up_to_wire(m).encode_to_vec()
}

fn decode_up(b: &[u8]) -> Result<Up, Violation> {
    let m = pb::SubscribeRequest::decode(b).map_err(|e| format!("undecodable up: {e}"))?;
    up_from_wire(m).map_err(|e| format!("the codec refused what it encoded: {e}"))
}

impl World {
    pub fn new(rng: StdRng, cfg: SimConfig, verbose: bool) -> Self {
        let seed = FingerprintSeed(0x5eed);
        let nodes = (0..cfg.nodes).map(|_| Node::new(seed, &cfg)).collect();
        let subs = (0..cfg.subs)
            .map(|i| Sub {
                id: format!("sub-{i}"),
                f: Follower::new(Filter::new(Mode::Full, FingerprintSeed(0))),
                link: None,
                stalled_until: 0,
                corrupt: false,
                max_version: 0,
                held: BTreeMap::from([(0, Digest::default())]),
                next_connect: 0,
            })
            .collect();
        let mut w = Self {
            rng,
            counted: vec![0; cfg.subs],
            cfg,
            now: 0,
            truth: Truth::new(seed),
            nodes,
            leader: Some(0),
            subs,
            links: Vec::new(),
            stats: Stats::default(),
            trace: VecDeque::new(),
            verbose,
        };
        w.nodes[0].last_contact = None;
        w
    }

    pub fn note(&mut self, what: String) {
        if self.verbose {
            eprintln!("[{:>5}] {what}", self.now);
        }
        self.trace.push_back(format!("[{}] {what}", self.now));
        if self.trace.len() > 60 {
            self.trace.pop_front();
        }
    }

    fn session_config(&self) -> SessionConfig {
        SessionConfig {
            chunk_bytes: self.cfg.chunk_bytes,
            catch_up_wait: super::ticks(self.cfg.catch_up_wait),
        }
    }

    // ---- the cluster ----

    /// The leader commits a random command.
    pub fn commit(&mut self) {
        let Some(l) = self.leader else { return };
        let cmd = super::commands::random(&mut self.rng, self.now);
        self.note(format!(
            "commit v{} {}",
            self.truth.head() + 1,
            super::commands::name(&cmd)
        ));
        self.truth.commit(Some(cmd), self.now);
        self.nodes[l].received = self.truth.head();
        self.stats.commits += 1;
    }

    /// A follower hears from the leader: it receives the log and learns the commit index.
    pub fn contact(&mut self, n: usize) {
        let Some(l) = self.leader else { return };
        if n == l || self.nodes[n].partitioned || self.nodes[l].partitioned {
            return;
        }
        let head = self.truth.head();
        let node = &mut self.nodes[n];
        node.received = head;
        node.committed_known = head;
        node.last_contact = Some(self.now);
    }

    /// A node applies up to `max` entries it holds, and its sessions hear of it.
    pub fn apply(&mut self, n: usize, max: usize) -> Result<(), Violation> {
        let mut any = false;
        for _ in 0..max {
            if !self.nodes[n].apply_next(&self.truth) {
                break;
            }
            any = true;
        }
        if !any {
            return Ok(());
        }
        let v = self.nodes[n].set.version();
        if Some(self.nodes[n].set.digest()) != self.truth.digest_at(v) {
            return Err(format!("node {n} diverged from the log at v{v}"));
        }
        for l in self.live_sessions(n) {
            if self.links[l].down.len() >= self.cfg.queue {
                continue; // congested: nothing more is queued until it reads
            }
            let mut out = Vec::new();
            let src = NodeSource::of(&self.nodes, self.leader, n, self.now, &self.cfg);
            let now = super::ticks(self.now);
            self.links[l]
                .session
                .as_mut()
                .expect("live")
                .on_applied(&src, now, &mut out);
            self.perform(l, out)?;
        }
        Ok(())
    }

    /// A new leader: it holds every committed entry (the election restriction) and commits a
    /// blank entry of its term.
    pub fn elect(&mut self, n: usize) {
        if self.nodes[n].partitioned {
            return;
        }
        if let Some(old) = self.leader {
            // The deposed leader knows what it committed, as of just before the election.
            let old = &mut self.nodes[old];
            old.last_contact = Some(self.now.saturating_sub(1));
            old.committed_known = old.received;
        }
        self.note(format!("node {n} leads"));
        self.leader = Some(n);
        self.nodes[n].received = self.truth.head();
        self.truth.commit(None, self.now);
        self.nodes[n].received = self.truth.head();
        self.nodes[n].term_start = self.truth.head();
    }

    pub fn restart_node(&mut self, n: usize) {
        self.note(format!(
            "node {n} restarts from its disk at v{} (it was at v{})",
            self.nodes[n].disk.version(),
            self.nodes[n].set.version()
        ));
        if self.leader == Some(n) {
            self.leader = None;
        }
        self.nodes[n].restart(self.now);
        for l in 0..self.links.len() {
            if self.links[l].open && self.links[l].node == n {
                let s = self.links[l].sub;
                self.disconnect(s, "the node restarted");
            }
        }
    }

    pub fn partition(&mut self, n: usize, cut: bool) {
        if self.nodes[n].partitioned == cut {
            return;
        }
        self.note(format!(
            "node {n} {}",
            if cut { "partitioned" } else { "healed" }
        ));
        self.nodes[n].partitioned = cut;
        if cut && self.leader == Some(n) {
            self.leader = None;
        }
    }

    // ---- the streams ----

    fn live_sessions(&self, n: usize) -> Vec<usize> {
        (0..self.links.len())
            .filter(|&l| {
                let k = &self.links[l];
                k.open && k.node == n && !k.node_ended && k.session.is_some()
            })
            .collect()
    }

    pub fn open_links(&self) -> Vec<usize> {
        (0..self.links.len())
            .filter(|&l| self.links[l].open)
            .collect()
    }

    /// A subscriber not following anything connects to node `n`.
    pub fn connect(&mut self, s: usize, n: usize) {
        let sub = &mut self.subs[s];
        if sub.link.is_some() || self.now < sub.next_connect {
            return;
        }
        let expiries = self.rng.random_bool(0.2);
        let hello = sub.f.connect(&sub.id, "full", expiries);
        let at = hello.applied_version;
        let l = self.links.len();
        sub.link = Some(l);
        self.links.push(Link {
            sub: s,
            node: n,
            session: None,
            down: VecDeque::new(),
            up: VecDeque::from([encode_up(&Up::Hello(hello))]),
            node_ended: false,
            last_read: self.now,
            open: true,
        });
        self.note(format!("sub {s} connects to node {n} at v{at}"));
    }

    /// The subscriber's stream ends (it saw an error, or the link broke).
    pub fn disconnect(&mut self, s: usize, why: &str) {
        let Some(l) = self.subs[s].link.take() else {
            return;
        };
        self.note(format!(
            "sub {s} disconnects from node {}: {why}",
            self.links[l].node
        ));
        let link = &mut self.links[l];
        link.open = false;
        link.session = None;
        link.down.clear();
        link.up.clear();
        let backoff = self.rng.random_range(1..6);
        let sub = &mut self.subs[s];
        sub.f.disconnected();
        sub.next_connect = self.now + backoff;
    }

    fn send(&mut self, l: usize, ms: &[Down]) {
        let link = &mut self.links[l];
        if link.node_ended {
            return;
        }
        if link.down.is_empty() {
            link.last_read = self.now;
        }
        link.down.extend(ms.iter().map(encode_down));
    }

    /// Does what a session said, as the node's driver does.
    fn perform(&mut self, l: usize, actions: Vec<Action>) -> Result<(), Violation> {
        let s = self.links[l].sub;
        for a in actions {
            match a {
                Action::Send(m) => self.send(l, std::slice::from_ref(&m)),
                Action::SendShared(ms) => self.send(l, &ms),
                Action::Counted(ack) => {
                    let truth = self.truth.digest_at(ack.version);
                    if truth != Some(ack.digest) {
                        return Err(format!(
                            "sub {s}'s ack of v{} counted with digest {:?}; the committed state \
                             there has {truth:?}",
                            ack.version, ack.digest
                        ));
                    }
                    if self.subs[s].held.get(&ack.version) != Some(&ack.digest) {
                        return Err(format!(
                            "sub {s}'s ack of v{} counted, but it never held that state",
                            ack.version
                        ));
                    }
                    self.counted[s] = ack.version;
                    self.stats.counted += 1;
                }
                Action::Snapshot {
                    reason, version, ..
                } => {
                    self.note(format!(
                        "node sends sub {s} a snapshot at v{version}: {reason}"
                    ));
                    // Only a subscriber holding what was never committed may be sent back.
                    let n = self.links[l].node;
                    if reason == "future_version" && version < self.truth.head() {
                        return Err(format!(
                            "node {n} sends sub {s} back to v{version} though v{} is committed",
                            self.truth.head()
                        ));
                    }
                    *self.stats.snapshots.entry(reason).or_default() += 1;
                }
                Action::DigestMismatch { version, .. } => {
                    self.note(format!("node: sub {s}'s digest at v{version} differs"));
                    self.stats.mismatches += 1;
                }
                Action::StaleAck(_) => self.stats.stale_acks += 1,
                Action::Doubt(_) => {}
                Action::End(e) => {
                    self.note(format!(
                        "node ends sub {s}'s stream: {} ({})",
                        e.why, e.message
                    ));
                    *self.stats.ends.entry(e.why).or_default() += 1;
                    let link = &mut self.links[l];
                    link.node_ended = true;
                    link.session = None;
                    if e.why == "protocol_error" {
                        return Err(format!("sub {s} broke the protocol: {}", e.message));
                    }
                }
            }
        }
        Ok(())
    }

    /// The node reads the next message from the subscriber.
    pub fn deliver_up(&mut self, l: usize) -> Result<(), Violation> {
        let link = &mut self.links[l];
        if !link.open || link.node_ended {
            link.up.clear();
            return Ok(());
        }
        let Some(bytes) = link.up.pop_front() else {
            return Ok(());
        };
        let n = link.node;
        let up = decode_up(&bytes)?;
        let config = self.session_config();
        let mut out = Vec::new();
        let src = NodeSource::of(&self.nodes, self.leader, n, self.now, &self.cfg);
        let link = &mut self.links[l];
        match (up, link.session.as_mut()) {
            (Up::Hello(h), None) => {
                let mut session = Session::new(h, config);
                session.start(&src, super::ticks(self.now), &mut out);
                link.session = Some(session);
            }
            (Up::Ack(a), Some(session)) => session.on_ack(a, &src, &mut out),
            (m, _) => return Err(format!("message out of place on link {l}: {m:?}")),
        }
        self.perform(l, out)
    }

    /// The heartbeat timer (or a catch-up deadline) of a session fires. A subscriber that
    /// has read nothing for the send deadline while messages wait is cut off, as the driver's
    /// bounded queue and send deadline do.
    pub fn tick(&mut self, l: usize) -> Result<(), Violation> {
        let link = &mut self.links[l];
        if !link.open || link.node_ended || link.session.is_none() {
            return Ok(());
        }
        if link.down.len() >= self.cfg.queue && self.now - link.last_read > self.cfg.send_deadline {
            link.node_ended = true;
            link.session = None;
            *self.stats.ends.entry("not_reading").or_default() += 1;
            let s = link.sub;
            self.note(format!("node ends sub {s}'s stream: not reading"));
            return Ok(());
        }
        if link.down.len() >= self.cfg.queue {
            return Ok(()); // congested: no heartbeat either; the first tick after it reads catches up
        }
        let n = link.node;
        let mut out = Vec::new();
        let src = NodeSource::of(&self.nodes, self.leader, n, self.now, &self.cfg);
        let now = super::ticks(self.now);
        if let Some(session) = self.links[l].session.as_mut() {
            session.on_tick(&src, now, &mut out);
        }
        self.perform(l, out)
    }

    /// The subscriber reads what is waiting, as its driver does: one message and the deltas
    /// right behind it, then the burst ends.
    pub fn deliver_down(&mut self, s: usize) -> Result<(), Violation> {
        let Some(l) = self.subs[s].link else {
            return Ok(());
        };
        if self.subs[s].stalled_until > self.now {
            return Ok(());
        }
        if self.links[l].down.is_empty() {
            if self.links[l].node_ended {
                self.disconnect(s, "the node ended the stream");
            }
            return Ok(());
        }
        let mut events = Vec::new();
        let mut result = Ok(());
        self.links[l].last_read = self.now;
        while let Some(bytes) = self.links[l].down.pop_front() {
            let m = decode_down(&bytes)?;
            if let Down::Heartbeat(h) = &m {
                self.honest(s, h)?;
            }
            if let Err(f) = self.subs[s].f.on_message(m, &mut events) {
                result = Err(f);
                break;
            }
            if !self.subs[s].f.wants_more() {
                break;
            }
        }
        if result.is_ok() {
            result = self.subs[s].f.on_burst_end(&mut events);
        }
        for e in events {
            self.on_event(s, l, e)?;
        }
        self.held(s)?;
        if let Err(Failure::Diverged(why)) = &result
            && why.contains("a quorum of nodes signed")
            && !self.subs[s].corrupt
        {
            return Err(format!(
                "sub {s} holds the committed state but was told it differs from a checkpoint: \
                 {why}"
            ));
        }
        if let Err(f) = result {
            self.stats.failures += 1;
            self.disconnect(s, &f.to_string());
        }
        Ok(())
    }

    fn on_event(&mut self, s: usize, l: usize, e: Event) -> Result<(), Violation> {
        let sub = &mut self.subs[s];
        match e {
            Event::Ack(ack) => {
                let r = sub.f.replica();
                if ack.version > r.version() {
                    return Err(format!(
                        "sub {s} acks v{} ahead of what it applied (v{})",
                        ack.version,
                        r.version()
                    ));
                }
                if (ack.version, ack.digest) != (r.version(), r.digest()) {
                    return Err(format!(
                        "sub {s} acks v{} with digest {:?}, but it holds v{} with {:?}",
                        ack.version,
                        ack.digest,
                        r.version(),
                        r.digest()
                    ));
                }
                self.links[l].up.push_back(encode_up(&Up::Ack(ack)));
            }
            Event::Vouched { .. } => {
                self.stats.vouched += 1;
                let r = sub.f.replica();
                if sub.corrupt || self.truth.digest_at(r.version()) != Some(r.digest()) {
                    return Err(format!(
                        "sub {s} was told its state at v{} is fresh, but it differs from the \
                         committed state",
                        r.version()
                    ));
                }
            }
            Event::Witnessed { version } => {
                self.stats.witnessed += 1;
                if sub.f.digest_at(version) != self.truth.digest_at(version) {
                    return Err(format!(
                        "sub {s} matched the checkpoint at v{version}, but its digest there \
                         differs from the committed state's"
                    ));
                }
            }
            Event::SnapshotLoaded { version } => {
                sub.corrupt = false;
                self.note(format!("sub {s} loaded a snapshot at v{version}"));
            }
            Event::Applied { .. }
            | Event::SnapshotBegun { .. }
            | Event::Doubt(_)
            | Event::Resync { .. } => {}
        }
        Ok(())
    }
}
