//! When a follower's state last held everything a leader had told it was committed. Hearing a
//! leader is not enough to vouch for a state: a follower whose answers never reach the leader
//! (a one-way link, a link too slow for the append deadline) keeps receiving heartbeats, and
//! their commit index, while its log no longer grows. Its state is current only as of the last
//! message whose commit index it has applied. Pure: the caller gives every instant.
//!
//! The instant is the message's receipt, not its sending (the two nodes share no clock), so a
//! state looks fresher than it is by the time the message spent on its way: the staleness bound
//! holds to within the one-way delay from the leader (the chaos scenario `peer-slow-link`, with
//! 100 ms on that link, has seen answers allowed up to 46 ms past a 3 s bound).

use std::collections::VecDeque;
use std::time::Instant;

/// The most commit indexes remembered beyond the applied state; past it the oldest is forgotten,
/// which can only make the state look older than it is.
const PENDING_MAX: usize = 64;

/// What leaders told this node, and when, until its state holds it.
#[derive(Debug, Default)]
pub struct CaughtUp {
    /// The latest instant a leader told this node a commit index its state holds.
    current: Option<Instant>,
    /// Later messages whose commit index was beyond the state when last asked, oldest first,
    /// one per index (the latest instant it was told).
    pending: VecDeque<(Instant, u64)>,
}

impl CaughtUp {
    /// A leader's message received `at` said the cluster has committed `commit`.
    pub fn told(&mut self, at: Instant, commit: u64) {
        match self.pending.back_mut() {
            Some((t, c)) if *c == commit => *t = (*t).max(at),
            _ => {
                if self.pending.len() == PENDING_MAX {
                    self.pending.pop_front();
                }
                self.pending.push_back((at, commit));
            }
        }
    }

    /// The state was current `at` (this node led then, acknowledged by a quorum).
    pub fn current_at(&mut self, at: Instant) {
        self.current = Some(self.current.map_or(at, |c| c.max(at)));
    }

    /// The instant as of which a state that has applied `applied` is known current: the latest
    /// message received whose commit index it holds; `None` when no such message came.
    pub fn as_of(&mut self, applied: u64) -> Option<Instant> {
        if let Some(i) = self.pending.iter().rposition(|(_, c)| *c <= applied) {
            let at = self.pending[i].0;
            self.current_at(at);
            self.pending.drain(..=i);
        }
        self.current
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_state_is_current_as_of_the_last_commit_index_it_holds_not_the_last_message() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut c = CaughtUp::default();
        assert_eq!(c.as_of(0), None, "told nothing yet");
        c.told(at(0), 10);
        assert_eq!(c.as_of(10), Some(at(0)));
        // Heartbeats keep coming with commit 12 while the state stays at 10.
        c.told(at(100), 12);
        c.told(at(200), 12);
        c.told(at(300), 12);
        assert_eq!(
            c.as_of(10),
            Some(at(0)),
            "still as of the last message it held"
        );
        // It applies 12: current as of the latest message that said 12.
        assert_eq!(c.as_of(12), Some(at(300)));
        // A later question about an older state cannot move it back.
        assert_eq!(c.as_of(11), Some(at(300)));
    }

    #[test]
    fn applying_part_of_the_news_makes_the_state_current_as_of_the_part_it_holds() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut c = CaughtUp::default();
        c.told(at(0), 5);
        c.told(at(10), 7);
        c.told(at(20), 9);
        assert_eq!(c.as_of(8), Some(at(10)));
        assert_eq!(c.as_of(9), Some(at(20)));
        // A leader that led until `at(50)` was current then, whatever it was told before.
        c.current_at(at(50));
        assert_eq!(c.as_of(9), Some(at(50)));
    }

    #[test]
    fn forgetting_old_news_only_makes_the_state_look_older() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut c = CaughtUp::default();
        c.told(at(0), 0);
        assert_eq!(c.as_of(0), Some(at(0)));
        for i in 1..=(PENDING_MAX as u64 + 10) {
            c.told(at(i), i);
        }
        // The first ten were forgotten: a state at 5 is current only as of the start.
        assert_eq!(c.as_of(5), Some(at(0)));
        assert_eq!(c.as_of(20), Some(at(20)));
    }
}
