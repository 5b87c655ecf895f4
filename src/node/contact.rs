//! Whether this node is in touch with a leader, and the commit index it knows. A node cut off
//! from the cluster still holds a state, but it no longer grows: subscribers it serves must not
//! take its heartbeats as fresh. A follower is in touch while a leader's AppendEntries
//! (heartbeats included) keep arriving; a leader while a quorum keeps acknowledging it (a
//! single-voter cluster always is). A node that has not heard from a leader since it started
//! (restarted from an old disk while cut off, say) cannot vouch for its state at all, and a node
//! whose applied version trails the commit index it knows is replaying a backlog: both say so
//! in their heartbeats ([`Doubt`]), so their subscribers count it as staleness.
//!
//! Hearing a leader is not the same as holding what it committed: a follower whose answers never
//! reach the leader keeps receiving heartbeats while its log stops growing. A follower's state
//! is therefore current only as of the last leader message whose commit index it has applied
//! ([`CaughtUp`]); the age its heartbeats carry counts from then, and past the vouching limit it
//! says it is behind.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::caught_up::CaughtUp;
use super::raft::Raft;

/// How long a node may go without a leader before it ends its streams: ten election
/// timeouts, so a failover (an election timeout, a vote, perhaps a split vote and a second
/// round, a leader lease running out) never ends healthy streams, while a node truly cut off
/// lets its subscribers go in seconds.
pub fn out_of_touch_after(election_timeout: Duration) -> Duration {
    election_timeout * 10
}

/// How long a node may go without a leader and still vouch for its state: two election
/// timeouts, time for a healthy failover. Past it, heartbeats say `no_leader_contact` and the
/// node's subscribers count the silence against their own staleness bound, long before the
/// node gives up and ends their streams ([`out_of_touch_after`]).
pub fn vouch_within(election_timeout: Duration) -> Duration {
    election_timeout * 2
}

/// Why a node cannot vouch that its state is current.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Doubt {
    /// It has heard from no leader since it started, or for longer than it may vouch.
    NoLeaderContact,
    /// It leads, but has not yet applied an entry of its own term: entries of earlier terms
    /// may be committed without its knowing (a new leader learns the commit index only by
    /// committing in its term), so "nothing newer exists" is not yet its to say.
    NewLeader,
    /// Its applied version trails the commit index it knows by more than the bound.
    BehindCommit {
        /// Its applied version.
        applied: u64,
        /// The commit index it knows.
        committed: u64,
    },
}

impl Doubt {
    /// The reason heartbeats carry (`Heartbeat.stale_reason`).
    pub fn reason(&self) -> &'static str {
        match self {
            Doubt::NoLeaderContact => "no_leader_contact",
            Doubt::NewLeader => "new_leader",
            Doubt::BehindCommit { .. } => "behind_commit",
        }
    }
}

/// How this node stands with a leader now.
enum Touch {
    /// Heard from a leader (or leads, acknowledged) this long ago.
    Since(Duration),
    /// Not since it started, this long ago.
    Never(Duration),
}

/// When this node last heard from a leader, the commit index it knows, and how long a silence
/// it tolerates.
pub struct Contact {
    /// `None` until a leader reaches this node (or it leads) after it started.
    last: Mutex<Option<Instant>>,
    started: Instant,
    limit: Duration,
    /// The longest silence after which it still vouches for its state.
    vouch: Duration,
    /// The highest commit index known: a leader's `leader_commit` on a follower, and whatever
    /// the Raft log is told is committed (the leader's own commits); shared with the log store.
    committed: Arc<AtomicU64>,
    /// When the state last held what a leader said was committed.
    caught_up: Mutex<CaughtUp>,
}

impl Contact {
    /// A contact record that tolerates `limit` of silence (counted from now, so a node that
    /// has just started gets one `limit` to be reached before its streams end) and vouches for
    /// its state through at most `vouch` of it, learning commits through `committed` too.
    pub fn new(limit: Duration, vouch: Duration, committed: Arc<AtomicU64>) -> Self {
        Self {
            last: Mutex::new(None),
            started: Instant::now(),
            limit,
            vouch: vouch.min(limit),
            committed,
            caught_up: Mutex::new(CaughtUp::default()),
        }
    }

    /// Records that a leader reached this node with a message received at `received`, telling
    /// it `leader_commit`.
    pub fn heard(&self, received: Instant, leader_commit: Option<u64>) {
        *self.last.lock().expect("contact lock") = Some(Instant::now());
        let commit = leader_commit.unwrap_or(0);
        self.committed.fetch_max(commit, Ordering::Relaxed);
        self.caught_up
            .lock()
            .expect("caught-up lock")
            .told(received, commit);
    }

    /// The highest commit index this node knows.
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Relaxed)
    }

    fn touch(&self, raft: &Raft) -> Touch {
        let m = raft.metrics();
        let m = m.borrow();
        let mut last = self.last.lock().expect("contact lock");
        let now = Instant::now();
        if m.current_leader == Some(m.id) {
            let voters: Vec<u64> = m.membership_config.membership().voter_ids().collect();
            // No ack yet: just elected, the first quorum ack is on its way.
            let since_ack = if voters == [m.id] {
                Duration::ZERO
            } else {
                Duration::from_millis(m.millis_since_quorum_ack.unwrap_or(0))
            };
            // A leader acked by a quorum is in touch now: should it step down, its silence
            // (and its state's age) counts from here, not from before it led.
            if let Some(at) = now.checked_sub(since_ack) {
                *last = Some(last.map_or(at, |l| l.max(at)));
                self.caught_up
                    .lock()
                    .expect("caught-up lock")
                    .current_at(at);
            }
            return Touch::Since(since_ack);
        }
        match *last {
            Some(at) => Touch::Since(now.saturating_duration_since(at)),
            None => Touch::Never(now.saturating_duration_since(self.started)),
        }
    }

    /// How long ago this node, having applied `applied`, last knew that state current: when
    /// it last heard from a leader (a leader: was acknowledged by a quorum), or, on a follower,
    /// when a leader last told it a commit index it has applied, whichever is older; since it
    /// started when it has not.
    pub fn age(&self, raft: &Raft, applied: u64) -> Duration {
        let (Touch::Since(d) | Touch::Never(d)) = self.touch(raft);
        d.max(self.behind_for(raft, applied))
    }

    /// How long a follower's state at `applied` has not held what a leader said was committed
    /// (since it started, when it never has); zero on a leader.
    fn behind_for(&self, raft: &Raft, applied: u64) -> Duration {
        let leads = {
            let m = raft.metrics();
            let m = m.borrow();
            m.current_leader == Some(m.id)
        };
        if leads {
            return Duration::ZERO;
        }
        let as_of = self
            .caught_up
            .lock()
            .expect("caught-up lock")
            .as_of(applied);
        Instant::now().saturating_duration_since(as_of.unwrap_or(self.started))
    }

    /// How long this node has been out of touch, when longer than the limit; `None` while in
    /// touch (or, after a start, during the first `limit`).
    pub fn lost(&self, raft: &Raft) -> Option<Duration> {
        let (Touch::Since(silence) | Touch::Never(silence)) = self.touch(raft);
        (silence > self.limit).then_some(silence)
    }

    /// Why this node, having applied `applied`, cannot vouch that its state is current: it has
    /// heard from no leader since it started or for longer than it may vouch, or it trails the
    /// commit index it knows by more than `max_lag` versions, or (a follower) for longer than
    /// it may vouch. `None` when it can.
    pub fn doubt(&self, raft: &Raft, applied: u64, max_lag: u64) -> Option<Doubt> {
        let heard = matches!(self.touch(raft), Touch::Since(s) if s <= self.vouch);
        let m = raft.metrics().borrow().clone();
        let leads = m.current_leader == Some(m.id);
        if heard && leads && m.last_applied.map(|l| l.leader_id.term) != Some(m.current_term) {
            return Some(Doubt::NewLeader);
        }
        let committed = self.committed();
        doubt(heard, applied, committed, max_lag).or_else(|| {
            (self.behind_for(raft, applied) > self.vouch)
                .then_some(Doubt::BehindCommit { applied, committed })
        })
    }
}

/// Why a node that has (or has not) `heard` from a leader recently enough, having applied
/// `applied` and knowing `committed`, cannot vouch for its state.
fn doubt(heard: bool, applied: u64, committed: u64, max_lag: u64) -> Option<Doubt> {
    if !heard {
        return Some(Doubt::NoLeaderContact);
    }
    (committed > applied.saturating_add(max_lag))
        .then_some(Doubt::BehindCommit { applied, committed })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_vouches_only_after_a_leader_reached_it_and_within_its_lag() {
        assert_eq!(doubt(false, 10, 10, 100), Some(Doubt::NoLeaderContact));
        assert_eq!(doubt(true, 10, 110, 100), None);
        assert_eq!(
            doubt(true, 10, 111, 100),
            Some(Doubt::BehindCommit {
                applied: 10,
                committed: 111
            })
        );
        // A commit index older than the state (learnt before a snapshot) is no doubt.
        assert_eq!(doubt(true, 500, 3, 0), None);
        assert_eq!(Doubt::NoLeaderContact.reason(), "no_leader_contact");
    }
}
