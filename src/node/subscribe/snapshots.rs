//! The snapshots a node sends its subscribers, built once per version (and per expiries and
//! chunk size) and shared by every session that needs one: a hundred subscribers reconnecting
//! after a restart cost one view of the set, not a hundred. Built off the async runtime's
//! worker threads, so the streams of other subscribers keep moving meanwhile.

use std::sync::{Arc, Mutex};

use recall_stream::Snapshot;

/// What a snapshot was built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Key {
    version: u64,
    expiries: bool,
    max_bytes: usize,
}

/// The latest snapshots built, one per kind (with and without expiries).
#[derive(Default)]
pub struct Snapshots {
    slots: Mutex<Vec<(Key, Arc<Snapshot>)>>,
}

impl Snapshots {
    /// The snapshot at `version` for this kind, built by `build` unless it already was. Callers
    /// asking at once wait for one build and share it.
    pub fn get(
        &self,
        version: u64,
        expiries: bool,
        max_bytes: usize,
        build: impl FnOnce() -> Snapshot,
    ) -> Arc<Snapshot> {
        let key = Key {
            version,
            expiries,
            max_bytes,
        };
        off_runtime(|| {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((_, s)) = slots.iter().find(|(k, _)| *k == key) {
                return s.clone();
            }
            let built = Arc::new(build());
            // The version built may be newer than asked (the set moved on): key it by its own.
            let key = Key {
                version: built.begin.version,
                ..key
            };
            slots.retain(|(k, _)| k.expiries != expiries);
            slots.push((key, built.clone()));
            built
        })
    }

    /// How many snapshots are kept.
    pub fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Runs `f`, which may take a while, without holding up the other tasks of a multi-threaded
/// runtime (a single-threaded one, as in tests, just runs it).
fn off_runtime<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use recall_core::{Digest, Fingerprint, FingerprintSeed, View};

    fn view(version: u64) -> View {
        View {
            seed: FingerprintSeed(1),
            version,
            last_change: version,
            digest: Digest(version),
            fingerprints: (0..100).map(Fingerprint).collect(),
            rules: vec![],
        }
    }

    #[test]
    fn a_snapshot_is_built_once_per_version_and_kind() {
        let cache = Snapshots::default();
        let builds = std::cell::Cell::new(0);
        let get = |version, expiries| {
            cache.get(version, expiries, 1024, || {
                builds.set(builds.get() + 1);
                Snapshot::build(&view(version), None, 1024)
            })
        };
        let a = get(5, false);
        let b = get(5, false);
        assert!(
            Arc::ptr_eq(&a, &b),
            "the second session shares the first one's snapshot"
        );
        get(5, true);
        get(6, false);
        assert_eq!(builds.get(), 3);
        assert_eq!(
            cache.len(),
            2,
            "one per kind: the older version was dropped"
        );
    }
}
