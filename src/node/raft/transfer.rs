//! What travels to a follower that installs a snapshot: the snapshot's bytes (the state, which
//! names the head of the history but does not hold it) and, beside them, the history up to that
//! head: every record and the command it covers. The follower checks that the records chain
//! from the genesis to exactly that head and that every command hashes to its record before it
//! installs anything, so a node restored from a snapshot serves a history that verifies.
//!
//! The bytes are the postcard encoding of [`Transfer`] followed by its 32-byte BLAKE3.

use serde::{Deserialize, Serialize};

use super::snapshot::{StateMachineError, from_bytes, seal, to_bytes, unseal};
use crate::node::audit::{AuditHead, AuditRecord, Verifier};
use crate::node::history::Body;

/// A snapshot with its history beside it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Transfer {
    /// The stored snapshot's bytes (see [`super::snapshot::encode`]).
    pub state: Vec<u8>,
    /// Every audit record up to the snapshot's version, oldest first.
    pub records: Vec<AuditRecord>,
    /// The command of each record, by version.
    pub bodies: Vec<(u64, Body)>,
}

/// Encodes a snapshot's state bytes with its history.
pub fn pack(
    state: Vec<u8>,
    records: Vec<AuditRecord>,
    bodies: Vec<(u64, Body)>,
) -> Result<Vec<u8>, StateMachineError> {
    let bytes = to_bytes(
        "snapshot transfer",
        &Transfer {
            state,
            records,
            bodies,
        },
    )?;
    Ok(seal(bytes))
}

/// Decodes transfer bytes, refusing them if their checksum or encoding does not hold.
pub fn unpack(bytes: &[u8]) -> Result<Transfer, StateMachineError> {
    from_bytes("snapshot transfer", unseal(bytes)?)
}

/// Checks that `records` chain from the genesis to exactly `head` and that every command in
/// `bodies` hashes to its record.
pub fn check_history(
    records: &[AuditRecord],
    bodies: &[(u64, Body)],
    head: AuditHead,
) -> Result<(), StateMachineError> {
    let bad = |why: String| StateMachineError::SnapshotHistory(why);
    let mut verifier = Verifier::new();
    for r in records {
        verifier.push(r).map_err(|b| bad(b.to_string()))?;
    }
    let end = verifier.finish();
    if (end.last_version, end.head) != (head.version, head.hash) {
        return Err(bad(format!(
            "it ends at version {}, but the snapshot's state names the head at version {}",
            end.last_version, head.version
        )));
    }
    let by_version: std::collections::HashMap<u64, &AuditRecord> =
        records.iter().map(|r| (r.version, r)).collect();
    for (version, body) in bodies {
        let Some(r) = by_version.get(version) else {
            return Err(bad(format!("a command at version {version} has no record")));
        };
        if body.hash() != r.command_hash {
            return Err(bad(format!(
                "the command at version {version} does not hash to its record"
            )));
        }
    }
    Ok(())
}
