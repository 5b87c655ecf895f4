//! The expiry index: which fingerprints a prune at time `now` has to look at, found by taking the
//! prefix of an ordered set instead of scanning every entry. It holds one item per fingerprint
//! that can expire (an entry, or a rule's scope) and never anything for "until lifted".
//!
//! Memory: an item is `(Timestamp, Fingerprint)`, 16 bytes, in a `BTreeSet`. Its leaf nodes
//! hold up to 11 items in 192 bytes (items, parent pointer, index, length); internal nodes
//! (another 96 bytes of child pointers each) are one for every 6 to 12 leaves. Between full and
//! half-full nodes, that is about 19 to 38 bytes per indexed fingerprint, beside the entry itself.

use std::collections::BTreeSet;

use crate::{Fingerprint, Timestamp};

/// Fingerprints ordered by when they expire.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct ExpiryIndex {
    by_time: BTreeSet<(Timestamp, Fingerprint)>,
}

impl ExpiryIndex {
    /// Moves `fp` from expiring at `old` to expiring at `new` (`None`: not indexed). The caller
    /// passes what it indexed before, so the index never searches for a fingerprint.
    pub(super) fn update(
        &mut self,
        fp: Fingerprint,
        old: Option<Timestamp>,
        new: Option<Timestamp>,
    ) {
        if old == new {
            return;
        }
        if let Some(old) = old {
            let was = self.by_time.remove(&(old, fp));
            debug_assert!(was, "the expiry index held {fp:?} at {old:?}");
        }
        if let Some(new) = new {
            self.by_time.insert((new, fp));
        }
    }

    /// The fingerprints indexed at or before `now`, in expiry order: O(log n + what is due).
    pub(super) fn due(&self, now: Timestamp) -> Vec<Fingerprint> {
        self.by_time
            .range(..=(now, Fingerprint(u64::MAX)))
            .map(|(_, fp)| *fp)
            .collect()
    }

    /// Whether anything is indexed at or before `now`: O(1).
    pub(super) fn any_due(&self, now: Timestamp) -> bool {
        self.by_time.first().is_some_and(|(at, _)| *at <= now)
    }

    /// How many fingerprints are indexed.
    pub(super) fn len(&self) -> usize {
        self.by_time.len()
    }
}
