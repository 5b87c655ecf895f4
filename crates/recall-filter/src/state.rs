//! The published state: everything a check reads, immutable once published. The writer builds
//! the next state from the current one, sharing every shard and prefilter page it did not touch.

use std::sync::Arc;

use recall_core::{Digest, Fingerprint, Fingerprinter, Lookup, Presence, Timestamp};

use crate::prefilter::Prefilter;
use crate::rules::Rules;
use crate::shard::{Layout, Shard};
use crate::shards::Shards;

/// One published state of a filter.
#[derive(Clone, Debug)]
pub(crate) struct State {
    /// Fingerprints under the cluster's seed.
    pub(crate) fp: Fingerprinter,
    /// The version the filter is at (advanced by deltas and heartbeats).
    pub(crate) version: u64,
    /// The version of the last delta applied.
    pub(crate) last_change: u64,
    /// The digest of what the filter holds.
    pub(crate) digest: Digest,
    /// How many fingerprints the filter holds.
    pub(crate) len: usize,
    /// Removals a lite filter could not apply (its Bloom filters still answer "possible").
    pub(crate) stale_removals: usize,
    /// Lite shards past their design fill (see [`Shard::overfull`]); 0 in full mode.
    pub(crate) overfull: usize,
    /// How fingerprints map to shards.
    pub(crate) layout: Layout,
    /// The shards, `layout.shards()` of them.
    pub(crate) shards: Shards,
    /// What a full state's shards hold, for the negative checks that need not reach them
    /// (`None` in lite mode, whose shards are Bloom filters already).
    pub(crate) prefilter: Option<Prefilter>,
    /// Rules by scope fingerprint.
    pub(crate) rules: Arc<Rules>,
}

impl State {
    /// A state at `version` holding `fps` (sorted, distinct) and `rules`.
    pub(crate) fn build(
        fp: Fingerprinter,
        version: u64,
        last_change: u64,
        fps: &[u64],
        rules: Rules,
        full: bool,
    ) -> Self {
        let layout = Layout::new(full);
        let mut shards = Vec::with_capacity(layout.shards());
        let mut rest = fps;
        for index in 0..layout.shards() {
            let end = rest.partition_point(|&x| layout.shard_of(x) == index);
            let (mine, tail) = rest.split_at(end);
            shards.push(Shard::build(mine, full));
            rest = tail;
        }
        let prefilter = full.then(|| Prefilter::build(&shards));
        let mut digest = Digest::default();
        fps.iter().for_each(|&x| digest.add_entry(Fingerprint(x)));
        rules
            .iter()
            .for_each(|(&scope, &nb)| digest.add_rule(scope, nb));
        Self {
            fp,
            version,
            last_change,
            digest,
            len: fps.len(),
            stale_removals: 0,
            overfull: 0,
            layout,
            shards: Shards::new(shards),
            prefilter,
            rules: Arc::new(rules),
        }
    }

    /// The shard holding `fp`.
    #[inline]
    pub(crate) fn shard(&self, fp: u64) -> &Shard {
        self.shards.get(self.layout.shard_of(fp))
    }
}

impl State {
    /// Whether the prefilter lets `fp` pass (always, in lite mode): `false` means certainly
    /// not held.
    #[inline]
    fn may_hold(&self, fp: u64) -> bool {
        self.prefilter.as_ref().is_none_or(|p| p.may_hold(fp))
    }

    /// Whether a full filter's state holds `fp`.
    #[inline]
    pub(crate) fn holds(&self, fp: u64) -> bool {
        self.may_hold(fp) && self.shard(fp).contains(fp, self.layout)
    }
}

impl Lookup for State {
    #[inline]
    fn entry(&self, fp: Fingerprint) -> Presence {
        if !self.may_hold(fp.0) {
            return Presence::Absent;
        }
        self.shard(fp.0).lookup(fp.0, self.layout)
    }

    #[inline]
    fn rule(&self, scope: Fingerprint) -> Option<Timestamp> {
        self.rules.get(&scope).copied()
    }

    #[inline]
    fn has_rules(&self) -> bool {
        !self.rules.is_empty()
    }
}
