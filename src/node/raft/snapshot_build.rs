//! Building a snapshot without stopping the state machine. Under the state lock (and the apply
//! gate, so the snapshot never misses the audit records of the versions it covers) the build
//! only freezes the set ([`RevocationSet::freeze`]: the entries' layers are shared, not copied)
//! and copies the small state beside it. Merging the layers, sorting and encoding the entries
//! and storing the bytes run on tokio's blocking pool, off every lock, while applies go on;
//! then the merged layer replaces the ones it was merged from, under the lock for O(layers).
//!
//! What stays O(n) under the lock: the copies of the rules (O(rules)), of the metadata of revoke
//! commands that still have live entries (O(commands), not O(entries)), of the role bindings,
//! the step-up state and the checkpoint state. No entry is copied there.
//!
//! [`RevocationSet::freeze`]: recall_core::RevocationSet::freeze

use std::io::Cursor;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::{ErrorSubject, ErrorVerb, RaftSnapshotBuilder, Snapshot, StorageError};
use recall_core::SetSnapshotRef;
use serde::Serialize;

use super::snapshot::{Meta, StateMachineError, seal, snapshot_id, sto};
use super::state_machine::Inner;
use super::{NodeId, TypeConfig};
use crate::node::access::Bindings;
use crate::node::audit::AuditHead;
use crate::node::history::Witnesses;
use crate::node::stepup::Governance;

/// How the latest snapshot build of this node went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotTiming {
    /// The version the snapshot is at.
    pub version: u64,
    /// The entries in it.
    pub entries: usize,
    /// How long the build held the state lock (applying waits that long).
    pub locked: Duration,
    /// How long merging, sorting, encoding and storing took, off the lock.
    pub built: Duration,
}

/// [`SnapshotData`](super::snapshot::SnapshotData) by reference: postcard encodes it to the
/// same bytes (the same fields in the same order), without a copy of the set.
#[derive(Serialize)]
pub(super) struct SnapshotDataRef<'a> {
    pub(super) set: SetSnapshotRef<'a>,
    pub(super) history_head: AuditHead,
    pub(super) seeded: bool,
    pub(super) roles: &'a Bindings,
    pub(super) governance: &'a Governance,
    pub(super) witnesses: &'a Witnesses,
}

/// Encodes a snapshot from references: postcard, then the BLAKE3 of the postcard bytes.
pub(super) fn encode_ref(data: &SnapshotDataRef<'_>) -> Result<Vec<u8>, StateMachineError> {
    Ok(seal(super::snapshot::to_bytes("snapshot", data)?))
}

/// Builds a snapshot from a state machine; see [`RaftSnapshotBuilder`].
#[derive(Clone, Debug)]
pub struct SnapshotBuilder {
    inner: Arc<Inner>,
}

impl SnapshotBuilder {
    pub(super) fn new(inner: Arc<Inner>) -> Self {
        Self { inner }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let gate = self.inner.gate.lock().await;
        let inner = Arc::clone(&self.inner);
        // On the blocking pool: the write lock may wait for readers.
        let (view, locked) = self
            .inner
            .db
            .run(move |_| {
                let start = Instant::now();
                let mut st = inner.write();
                let view = (
                    st.set.freeze(),
                    st.seeded,
                    st.roles.clone(),
                    st.gov.clone(),
                    st.witnesses.clone(),
                    st.head,
                    st.last_applied,
                    st.membership.clone(),
                );
                drop(st);
                Ok((view, start.elapsed()))
            })
            .await
            .map_err(sto(ErrorSubject::Snapshot(None), ErrorVerb::Read))?;
        drop(gate);
        let (frozen, seeded, roles, governance, witnesses, history_head, last_log_id, membership) =
            view;
        let inner = Arc::clone(&self.inner);
        let (meta, data) = self
            .inner
            .db
            .run(move |db| {
                let start = Instant::now();
                let flat = frozen.flatten();
                let set = flat.snapshot();
                let entries = set.entries.len();
                let data = encode_ref(&SnapshotDataRef {
                    set,
                    history_head,
                    seeded,
                    roles: &roles,
                    governance: &governance,
                    witnesses: &witnesses,
                })?;
                inner.write().set.settle(&flat);
                drop(flat);
                let meta = Meta {
                    snapshot_id: snapshot_id(last_log_id.as_ref(), &data),
                    last_log_id,
                    last_membership: membership,
                };
                db.store_snapshot(&meta, &data, &[], &[], true)?;
                let timing = SnapshotTiming {
                    version: last_log_id.map_or(0, |id| id.index),
                    entries,
                    locked,
                    built: start.elapsed(),
                };
                tracing::debug!(?timing, "snapshot built");
                *inner
                    .snapshot_timing
                    .lock()
                    .expect("no thread panicked recording a timing") = Some(timing);
                Ok((meta, data))
            })
            .await
            .map_err(sto(ErrorSubject::Snapshot(None), ErrorVerb::Write))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

#[cfg(test)]
mod tests {
    use recall_core::{
        Command, FingerprintSeed, Kind, Meta as RevokeMeta, Revocation, RevocationKey,
        RevocationSet, Timestamp,
    };

    use super::*;
    use crate::node::raft::snapshot::{SnapshotData, encode};

    #[test]
    fn the_snapshot_by_reference_encodes_to_the_bytes_of_the_owned_one() {
        let mut set = RevocationSet::new(FingerprintSeed(3));
        let items = (0..50)
            .map(|i| Revocation {
                key: RevocationKey::new(Kind::Token, "https://sso.example", format!("t{i}")),
                expires_at: (i % 2 == 0).then_some(Timestamp(1_700_000_000_000 + i)),
            })
            .collect();
        let meta = RevokeMeta {
            at: Timestamp(1_700_000_000_000),
            actor: "tests".into(),
            on_behalf_of: String::new(),
            reason: "r".into(),
        };
        set.apply(1, &Command::Revoke { meta, items })
            .expect("in order");
        let owned = SnapshotData {
            set: set.snapshot(),
            history_head: AuditHead::default(),
            seeded: true,
            roles: Bindings::new(),
            governance: Governance::default(),
            witnesses: Witnesses::default(),
        };
        let flat = set.freeze().flatten();
        let by_ref = SnapshotDataRef {
            set: flat.snapshot(),
            history_head: AuditHead::default(),
            seeded: true,
            roles: &owned.roles,
            governance: &owned.governance,
            witnesses: &owned.witnesses,
        };
        assert_eq!(encode_ref(&by_ref).unwrap(), encode(&owned).unwrap());
    }
}
