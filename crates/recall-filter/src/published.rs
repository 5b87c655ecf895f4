//! Where the writer publishes its states and readers find the latest one, never waiting for
//! the writer. A state is published in an `arc-swap` cell, then a generation counter is bumped.
//!
//! A guarded `arc-swap` load costs two atomic read-modify-writes (measured at about 24 ns, more
//! than the rest of a negative check), so the check path reads the generation instead (one
//! plain load) and keeps the state it loaded last: [`LocalReader`](crate::LocalReader) in
//! itself, a [`Reader`](crate::Reader) in a slot of its thread. The cost is that a thread keeps
//! the last state it checked against alive until its next check (or its exit); states share
//! every shard a change did not touch, so that is the shards changed since, except after a
//! snapshot.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use arc_swap::{ArcSwap, Guard};

use crate::state::State;

/// The cell a filter publishes into, shared by its readers.
#[derive(Debug)]
pub(crate) struct Published {
    /// The latest state.
    state: ArcSwap<State>,
    /// Bumped after each publication: a reader that saw generation `g` and holds a state loaded
    /// after it has a state at least as new as the one `g` announced.
    generation: AtomicU64,
}

/// The state a thread's readers checked against last, and the cell and generation it came from.
#[derive(Debug)]
struct Seen {
    /// The cell (weak, so a thread's slot does not keep a dropped filter's cell alive; its
    /// allocation, though, stays while this exists, so its address names it).
    cell: Weak<Published>,
    /// The generation read before `state` was loaded.
    generation: u64,
    /// The state.
    state: Arc<State>,
}

thread_local! {
    /// The last state this thread's [`Reader`](crate::Reader)s checked against.
    static SEEN: RefCell<Option<Seen>> = const { RefCell::new(None) };
}

impl Published {
    /// A cell holding `state`.
    pub(crate) fn new(state: State) -> Self {
        Self {
            state: ArcSwap::from_pointee(state),
            generation: AtomicU64::new(0),
        }
    }

    /// The latest state, for the writer and for reads off the check path.
    pub(crate) fn load(&self) -> Guard<Arc<State>> {
        self.state.load()
    }

    /// The latest state, owned.
    pub(crate) fn load_full(&self) -> Arc<State> {
        self.state.load_full()
    }

    /// Publishes `state`. Only the filter (the single writer) calls this.
    pub(crate) fn store(&self, state: State) {
        self.state.store(Arc::new(state));
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The generation: read it before loading a state to label that state.
    #[inline]
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Runs `check` on the latest state, as this thread last loaded it unless the writer has
    /// published since. Falls back to a guarded load where the thread's slot cannot be used
    /// (during the thread's teardown, or if `check` itself reads through a `Reader`).
    #[inline]
    pub(crate) fn with_latest<R>(self: &Arc<Self>, check: impl FnOnce(&State) -> R) -> R {
        let generation = self.generation();
        let mut check = Some(check);
        let done = SEEN
            .try_with(|slot| {
                let mut slot = slot.try_borrow_mut().ok()?;
                let current = matches!(&*slot, Some(seen)
                    if seen.generation == generation
                        && std::ptr::eq(seen.cell.as_ptr(), Arc::as_ptr(self)));
                if !current {
                    *slot = Some(Seen {
                        cell: Arc::downgrade(self),
                        generation,
                        state: self.load_full(),
                    });
                }
                let seen = slot.as_ref()?;
                Some(check.take()?(&seen.state))
            })
            .ok()
            .flatten();
        match done {
            Some(answer) => answer,
            None => check.take().expect("not run above")(&self.load()),
        }
    }
}

#[cfg(test)]
mod tests {
    use recall_core::{FingerprintSeed, Fingerprinter};

    use super::*;

    fn state(version: u64) -> State {
        let fp = Fingerprinter::new(FingerprintSeed(1));
        State::build(fp, version, version, &[], Default::default(), true)
    }

    #[test]
    fn a_reader_sees_each_publication_at_once() {
        let cell = Arc::new(Published::new(state(1)));
        assert_eq!(cell.with_latest(|s| s.version), 1);
        cell.store(state(2));
        assert_eq!(cell.with_latest(|s| s.version), 2);
        // Another cell on the same thread does not answer from the first one's state.
        let other = Arc::new(Published::new(state(7)));
        assert_eq!(other.with_latest(|s| s.version), 7);
        assert_eq!(cell.with_latest(|s| s.version), 2);
    }

    #[test]
    fn a_nested_read_falls_back_to_a_guarded_load() {
        let cell = Arc::new(Published::new(state(3)));
        let nested = cell.with_latest(|outer| (outer.version, cell.with_latest(|s| s.version)));
        assert_eq!(nested, (3, 3));
    }

    #[test]
    fn a_dropped_cell_is_not_kept_alive_by_a_thread() {
        let cell = Arc::new(Published::new(state(1)));
        cell.with_latest(|_| ());
        let weak = Arc::downgrade(&cell);
        drop(cell);
        assert!(weak.upgrade().is_none());
    }
}
