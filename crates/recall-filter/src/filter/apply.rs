//! Applying deltas: each checked against the chain and the authority's digest, then every
//! touched shard rebuilt once (in the groups it falls in) and one state published.

use std::collections::HashSet;
use std::sync::Arc;

use recall_core::{Delta, Fingerprint};

use super::{Filter, mode_full};
use crate::FilterError;
use crate::prefilter::Touched;
use crate::rules::Rules;
use crate::shard::Shard;
use crate::state::State;

impl Filter {
    /// Applies the next delta of the chain. Refuses (and publishes nothing) when the delta does
    /// not follow the filter's last change, or when the digest after it differs from the
    /// authority's; the caller then resyncs from a snapshot.
    pub fn apply(&mut self, delta: &Delta) -> Result<(), FilterError> {
        self.apply_many(std::slice::from_ref(delta))
    }

    /// Applies consecutive deltas of the chain as one change: each is checked in turn (its
    /// place in the chain, the digest after it), then every touched shard is rebuilt once and
    /// one state is published. A subscriber that has fallen behind catches up this way at the
    /// cost of one rebuild instead of one per delta. Refuses (and publishes nothing) like
    /// [`Filter::apply`] when any of them does not check out.
    pub fn apply_many(&mut self, deltas: &[Delta]) -> Result<(), FilterError> {
        let cur = self.shared.load_full();
        let full = mode_full(self.mode);
        let mut next = State::clone(&cur);
        // The net change against `cur`'s shards: fingerprints to add, and to remove.
        let mut adds: HashSet<u64> = HashSet::new();
        let mut rems: HashSet<u64> = HashSet::new();
        let mut rules: Option<Rules> = None;
        for delta in deltas {
            if delta.prev_version != next.last_change || delta.version <= next.version {
                return Err(FilterError::Gap {
                    version: delta.version,
                    prev_version: delta.prev_version,
                    at: next.version,
                    last_change: next.last_change,
                });
            }
            next.version = delta.version;
            next.last_change = delta.version;

            let mut added: Vec<u64> = delta.added.iter().map(|f| f.0).collect();
            let mut removed: Vec<u64> = delta.removed.iter().map(|f| f.0).collect();
            added.sort_unstable();
            added.dedup();
            removed.sort_unstable();
            removed.dedup();
            if full {
                // Only what actually changes counts, so a divergent filter shows in the digest.
                let held = |x: u64| adds.contains(&x) || (!rems.contains(&x) && cur.holds(x));
                added.retain(|&x| !held(x));
                removed.retain(|&x| held(x));
                for &x in &added {
                    if !rems.remove(&x) {
                        adds.insert(x);
                    }
                }
                for &x in &removed {
                    if !adds.remove(&x) {
                        rems.insert(x);
                    }
                }
            } else {
                next.stale_removals += removed.len();
                adds.extend(&added);
                rems.extend(&removed);
            }
            added
                .iter()
                .for_each(|&x| next.digest.add_entry(Fingerprint(x)));
            removed
                .iter()
                .for_each(|&x| next.digest.remove_entry(Fingerprint(x)));
            next.len = (next.len + added.len()).saturating_sub(removed.len());

            if !delta.rules_set.is_empty() || !delta.rules_removed.is_empty() {
                let rules = rules.get_or_insert_with(|| Rules::clone(&cur.rules));
                for r in &delta.rules_set {
                    if let Some(old) = rules.insert(r.scope, r.not_before) {
                        next.digest.remove_rule(r.scope, old);
                    }
                    next.digest.add_rule(r.scope, r.not_before);
                }
                for scope in &delta.rules_removed {
                    if let Some(old) = rules.remove(scope) {
                        next.digest.remove_rule(*scope, old);
                    }
                }
            }

            if next.digest != delta.digest {
                return Err(FilterError::DigestMismatch {
                    version: delta.version,
                    expected: delta.digest,
                    computed: next.digest,
                });
            }
        }
        if let Some(rules) = rules {
            next.rules = Arc::new(rules);
        }

        if !adds.is_empty() || !rems.is_empty() {
            let mut added: Vec<u64> = adds.into_iter().collect();
            let mut removed: Vec<u64> = rems.into_iter().collect();
            added.sort_unstable();
            removed.sort_unstable();
            let mut changes: Vec<(usize, Shard)> = Vec::new();
            let mut touched = Vec::new();
            let (mut a, mut r) = (&added[..], &removed[..]);
            while !a.is_empty() || !r.is_empty() {
                let shard_of = |x: u64| cur.layout.shard_of(x);
                let index = match (a.first(), r.first()) {
                    (Some(&x), Some(&y)) => shard_of(x.min(y)),
                    (Some(&x), None) | (None, Some(&x)) => shard_of(x),
                    (None, None) => unreachable!("loop condition"),
                };
                let (ah, at) = a.split_at(a.partition_point(|&x| shard_of(x) == index));
                let (rh, rt) = r.split_at(r.partition_point(|&x| shard_of(x) == index));
                let old = cur.shards.get(index);
                let new = old.changed(ah, rh);
                next.overfull = (next.overfull + usize::from(new.overfull()))
                    .saturating_sub(usize::from(old.overfull()));
                changes.push((index, new));
                touched.push(Touched {
                    index,
                    only_added: rh.is_empty().then_some(ah),
                });
                (a, r) = (at, rt);
            }
            let shards = cur.shards.with(changes);
            next.prefilter = cur.prefilter.as_ref().map(|p| p.changed(&shards, &touched));
            next.shards = shards;
        }
        self.shared.store(next);
        Ok(())
    }
}
