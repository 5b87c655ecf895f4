//! A state's shards, in groups that states share: a change copies the table of groups and the
//! groups it touches, never every shard. A one-revocation delta into a full filter (4,096
//! shards) so clones 64 group handles and 64 shards rather than 4,096 shards, and dropping the
//! state it replaces releases as few.

use std::sync::Arc;

use crate::shard::Shard;

/// How many consecutive shards share a group (log2). A group of a full filter is also one page
/// of its prefilter (see `prefilter.rs`), so a change touches the same groups in both.
pub(crate) const GROUP_BITS: u32 = 6;

/// How many consecutive shards share a group.
pub(crate) const GROUP: usize = 1 << GROUP_BITS;

/// Every shard of a state, cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Shards {
    /// `len / GROUP` groups of `GROUP` shards, in shard order.
    groups: Arc<[Arc<[Shard]>]>,
}

impl Shards {
    /// The shards `all` (a power of two of them, at least [`GROUP`]), in order.
    pub(crate) fn new(all: Vec<Shard>) -> Self {
        debug_assert!(all.len().is_power_of_two() && all.len() >= GROUP);
        Self {
            groups: all.chunks(GROUP).map(Arc::from).collect(),
        }
    }

    /// Shard `index`.
    #[inline]
    pub(crate) fn get(&self, index: usize) -> &Shard {
        &self.groups[index >> GROUP_BITS][index & (GROUP - 1)]
    }

    /// Group `g`: shards `g * GROUP .. (g + 1) * GROUP`.
    pub(crate) fn group(&self, g: usize) -> &[Shard] {
        &self.groups[g]
    }

    /// How many shards.
    pub(crate) fn len(&self) -> usize {
        self.groups.len() * GROUP
    }

    /// Every shard, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Shard> {
        self.groups.iter().flat_map(|g| g.iter())
    }

    /// These shards with `changes` (by index, ascending, each index once) put in: only the
    /// groups they fall in are copied.
    pub(crate) fn with(&self, changes: Vec<(usize, Shard)>) -> Self {
        debug_assert!(changes.windows(2).all(|w| w[0].0 < w[1].0));
        let mut groups = self.groups.to_vec();
        let mut changes = changes.into_iter().peekable();
        while let Some((first, shard)) = changes.next() {
            let g = first >> GROUP_BITS;
            let mut group = groups[g].to_vec();
            group[first & (GROUP - 1)] = shard;
            while let Some((i, shard)) = changes.next_if(|(i, _)| i >> GROUP_BITS == g) {
                group[i & (GROUP - 1)] = shard;
            }
            groups[g] = group.into();
        }
        Self {
            groups: groups.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shards(n: usize) -> Shards {
        Shards::new((0..n).map(|i| Shard::build(&[i as u64], true)).collect())
    }

    #[test]
    fn every_shard_is_where_its_index_says() {
        let s = shards(4 * GROUP);
        assert_eq!(s.len(), 4 * GROUP);
        for i in 0..s.len() {
            assert_eq!(s.get(i).fingerprints(), &[i as u64]);
        }
        let all: Vec<u64> = s.iter().map(|sh| sh.fingerprints()[0]).collect();
        assert_eq!(all, (0..4 * GROUP as u64).collect::<Vec<_>>());
        assert_eq!(s.group(2)[5].fingerprints(), &[(2 * GROUP + 5) as u64]);
    }

    #[test]
    fn a_change_copies_only_the_groups_it_touches_and_leaves_the_old_shards_whole() {
        let old = shards(4 * GROUP);
        let changes = vec![
            (3, Shard::build(&[1000], true)),
            (GROUP - 1, Shard::build(&[1001], true)),
            (3 * GROUP, Shard::build(&[1002], true)),
        ];
        let new = old.with(changes);
        assert_eq!(new.get(3).fingerprints(), &[1000]);
        assert_eq!(new.get(GROUP - 1).fingerprints(), &[1001]);
        assert_eq!(new.get(3 * GROUP).fingerprints(), &[1002]);
        assert_eq!(
            old.get(3).fingerprints(),
            &[3],
            "the old state is untouched"
        );
        for g in [1, 2] {
            assert!(
                Arc::ptr_eq(&old.groups[g], &new.groups[g]),
                "group {g} had no change and is shared"
            );
        }
        for g in [0, 3] {
            assert!(!Arc::ptr_eq(&old.groups[g], &new.groups[g]));
        }
        for i in (0..new.len()).filter(|i| ![3, GROUP - 1, 3 * GROUP].contains(i)) {
            assert_eq!(new.get(i).fingerprints(), &[i as u64]);
        }
    }
}
