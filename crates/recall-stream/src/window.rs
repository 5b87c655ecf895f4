//! The deltas a node keeps for its subscribers: the recent changes, oldest first, bounded by
//! count and by total entries, and what a subscriber at some version needs next.

use std::collections::VecDeque;
use std::sync::Arc;

use recall_core::Delta;

/// What a subscriber at some version needs next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Window {
    /// Every change after that version, in order (empty when it is up to date): the first one's
    /// `prev_version` is at or before the subscriber's version.
    Deltas(Vec<Arc<Delta>>),
    /// The window no longer reaches back that far: send a snapshot first.
    TooOld {
        /// The oldest version a subscriber can resume from with deltas.
        oldest: u64,
    },
    /// The subscriber claims a version this node has not applied yet.
    Ahead {
        /// This node's version.
        current: u64,
    },
}

/// The retained deltas, oldest first, bounded by count and by total entries.
#[derive(Clone, Debug)]
pub struct DeltaWindow {
    deltas: VecDeque<Arc<Delta>>,
    entries: usize,
    max_deltas: usize,
    max_entries: usize,
}

impl DeltaWindow {
    /// An empty window keeping at most `max_deltas` deltas (at least one) and `max_entries`
    /// fingerprints and rules across them; the oldest go first.
    pub fn new(max_deltas: usize, max_entries: usize) -> Self {
        Self {
            deltas: VecDeque::new(),
            entries: 0,
            max_deltas: max_deltas.max(1),
            max_entries,
        }
    }

    /// Keeps `delta`, the newest change; drops the oldest ones beyond the bounds.
    pub fn push(&mut self, delta: Delta) {
        self.entries += delta.len();
        self.deltas.push_back(Arc::new(delta));
        while self.deltas.len() > self.max_deltas || self.entries > self.max_entries {
            self.drop_oldest();
        }
    }

    /// Drops the oldest delta, if any (the window then reaches back less far).
    pub fn drop_oldest(&mut self) {
        if let Some(old) = self.deltas.pop_front() {
            self.entries -= old.len();
        }
    }

    /// Forgets every delta (the state was replaced by a snapshot).
    pub fn clear(&mut self) {
        self.deltas.clear();
        self.entries = 0;
    }

    /// How many deltas are kept.
    pub fn len(&self) -> usize {
        self.deltas.len()
    }

    /// Whether no delta is kept.
    pub fn is_empty(&self) -> bool {
        self.deltas.is_empty()
    }

    /// What a subscriber at `version` needs, for a state at `applied` whose last change was
    /// `last_change`. With no delta kept, the window starts at that last change.
    pub fn after(&self, version: u64, applied: u64, last_change: u64) -> Window {
        if version > applied {
            return Window::Ahead { current: applied };
        }
        let floor = self.deltas.front().map_or(last_change, |d| d.prev_version);
        if version < floor {
            return Window::TooOld { oldest: floor };
        }
        let start = self.deltas.partition_point(|d| d.version <= version);
        Window::Deltas(self.deltas.range(start..).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(version: u64, prev_version: u64) -> Delta {
        Delta {
            version,
            prev_version,
            added: vec![recall_core::Fingerprint(version)],
            ..Delta::default()
        }
    }

    fn versions(w: Window) -> Vec<u64> {
        match w {
            Window::Deltas(ds) => ds.iter().map(|d| d.version).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_subscriber_gets_every_change_after_its_version_or_is_told_why_not() {
        let mut w = DeltaWindow::new(2, 100);
        for (v, p) in [(2, 0), (5, 2), (6, 5)] {
            w.push(delta(v, p));
        }
        assert_eq!(w.len(), 2, "the oldest went first");
        assert_eq!(w.after(1, 7, 6), Window::TooOld { oldest: 2 });
        assert_eq!(versions(w.after(2, 7, 6)), [5, 6]);
        assert_eq!(versions(w.after(4, 7, 6)), [5, 6]);
        assert_eq!(versions(w.after(7, 7, 6)), Vec::<u64>::new());
        assert_eq!(w.after(8, 7, 6), Window::Ahead { current: 7 });
        w.clear();
        assert_eq!(w.after(5, 7, 6), Window::TooOld { oldest: 6 });
        assert_eq!(versions(w.after(6, 7, 6)), Vec::<u64>::new());
    }

    #[test]
    fn the_entry_bound_drops_the_oldest_deltas() {
        let mut w = DeltaWindow::new(100, 2);
        for (v, p) in [(1, 0), (2, 1), (3, 2)] {
            w.push(delta(v, p));
        }
        assert_eq!(w.len(), 2);
        assert_eq!(w.after(0, 3, 3), Window::TooOld { oldest: 1 });
    }
}
