//! Whether this node is in touch with a leader. A node cut off from the cluster still holds a
//! state, but it no longer grows: subscribers it serves must not take its heartbeats as fresh.
//! A follower is in touch while a leader's AppendEntries (heartbeats included) keep arriving; a
//! leader while a quorum keeps acknowledging it (a single-voter cluster always is).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::raft::Raft;

/// How long a node may go without a leader before it stops vouching for its state: ten election
/// timeouts, so a failover (an election timeout, a vote, perhaps a split vote and a second
/// round, a leader lease running out) never ends healthy streams, while a node truly cut off
/// lets its subscribers go in seconds.
pub fn out_of_touch_after(election_timeout: Duration) -> Duration {
    election_timeout * 10
}

/// When this node last heard from a leader, and how long a silence it tolerates.
pub struct Contact {
    last: Mutex<Instant>,
    limit: Duration,
}

impl Contact {
    /// A contact record that tolerates `limit` of silence (counted from now, so a node that
    /// has just started gets one `limit` to be reached).
    pub fn new(limit: Duration) -> Self {
        Self {
            last: Mutex::new(Instant::now()),
            limit,
        }
    }

    /// Records that a leader reached this node.
    pub fn heard(&self) {
        *self.last.lock().expect("contact lock") = Instant::now();
    }

    /// How long this node has been out of touch, when longer than the limit; `None` while in
    /// touch.
    pub fn lost(&self, raft: &Raft) -> Option<Duration> {
        let silence = {
            let m = raft.metrics();
            let m = m.borrow();
            if m.current_leader == Some(m.id) {
                let voters: Vec<u64> = m.membership_config.membership().voter_ids().collect();
                if voters == [m.id] {
                    return None;
                }
                // No ack yet: just elected, the first quorum ack is on its way.
                let since_ack = Duration::from_millis(m.millis_since_quorum_ack.unwrap_or(0));
                // A leader acked by a quorum is in touch now: should it step down, its silence
                // counts from here, not from before it led.
                let mut last = self.last.lock().expect("contact lock");
                if let Some(at) = Instant::now().checked_sub(since_ack) {
                    *last = (*last).max(at);
                }
                since_ack
            } else {
                self.last.lock().expect("contact lock").elapsed()
            }
        };
        (silence > self.limit).then_some(silence)
    }
}
