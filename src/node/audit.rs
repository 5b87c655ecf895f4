//! The audit history of the authority: one hash-chained [`AuditRecord`] per applied command.
//!
//! Each record names who did what, when and why, the BLAKE3 of the exact command applied, and
//! the hash of the record before it, so editing, deleting or reordering any record breaks the
//! chain from that point on. [`verify`] recomputes the chain and names the first version that
//! does not hold. Records are derived from the committed Raft log alone (the leader stamped the
//! time and the actor into the command), so every replica computes identical records.
//!
//! This module never rewrites history: it builds and checks records; storing them is the state
//! machine's job.

use recall_core::{Command, Meta, Timestamp};

use serde::{Deserialize, Serialize};

use super::access::RoleChange;
use super::stepup::{Approval, Change, OtpEnrollment, Pending, Proposed, StepUpPolicy};

fn system_meta() -> Meta {
    Meta {
        at: Timestamp(0),
        actor: SYSTEM_ACTOR.to_owned(),
        on_behalf_of: String::new(),
        reason: String::new(),
    }
}

/// Separates audit hashes from every other BLAKE3 use.
const DOMAIN: &[u8] = b"recall audit v1";

/// The `prev` of the first record of a history.
pub const GENESIS: [u8; 32] = [0; 32];

/// The actor recorded for commands the system proposes itself (a prune).
pub const SYSTEM_ACTOR: &str = "recall";

/// One applied command, linked to the record before it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The log index (version) the command was applied at.
    pub version: u64,
    /// When the leader accepted the command (a prune: the time inside it).
    pub at: Timestamp,
    /// Who asked for it: the authenticated identity of the caller ([`SYSTEM_ACTOR`] for the
    /// system's own commands).
    pub actor: String,
    /// Whom the caller said it acted for (free text the client sent; never the actor).
    pub on_behalf_of: String,
    /// Why (`"expiry"` for a prune).
    pub reason: String,
    /// A one-line human summary of the command.
    pub summary: String,
    /// The BLAKE3 of the postcard encoding of the command.
    pub command_hash: [u8; 32],
    /// The `hash` of the previous record ([`GENESIS`] for the first).
    pub prev: [u8; 32],
    /// The BLAKE3 of this record's content (see [`AuditRecord::content_hash`]).
    pub hash: [u8; 32],
}

impl AuditRecord {
    /// The record of `cmd` applied at `version`, following the record whose hash is `prev`.
    pub fn next(prev: &[u8; 32], version: u64, cmd: &Command) -> Self {
        let (summary, hash) = (cmd.summary(), command_hash(cmd));
        match cmd {
            Command::Revoke { meta, .. }
            | Command::AddRule { meta, .. }
            | Command::Lift { meta, .. } => Self::link(prev, version, meta, summary, hash),
            Command::Prune { now } => {
                let meta = Meta {
                    at: *now,
                    reason: "expiry".to_owned(),
                    ..system_meta()
                };
                Self::link(prev, version, &meta, summary, hash)
            }
        }
    }

    /// The record of a role binding changed at `version`.
    pub fn of_roles(prev: &[u8; 32], version: u64, change: &RoleChange) -> Self {
        Self::link(
            prev,
            version,
            &change.meta,
            change.summary(),
            hash_of(change),
        )
    }

    /// The record of the first admins bound from a new cluster's configuration (and, for a
    /// cluster created with one, its step-up policy).
    pub fn of_bootstrap(
        prev: &[u8; 32],
        version: u64,
        at: Timestamp,
        seed: recall_core::FingerprintSeed,
        admins: &[String],
        policy: Option<&StepUpPolicy>,
    ) -> Self {
        let mut summary = match admins {
            [] => String::new(),
            a => format!("bind {} to role admin", a.join(", ")),
        };
        if let Some(p) = policy {
            if !summary.is_empty() {
                summary.push_str("; ");
            }
            summary.push_str(&format!("step-up policy: {}", p.describe()));
        }
        // Kept as `history::Body::Bootstrap`, which hashes the same way (with the seed, so a
        // replay starts from the seed the cluster really has).
        let hash = match policy {
            None => hash_of(&admins),
            Some(p) => hash_of(&(seed, admins, p)),
        };
        let meta = Meta {
            at,
            reason: "the configuration of a new cluster".to_owned(),
            ..system_meta()
        };
        Self::link(prev, version, &meta, summary, hash)
    }

    /// The record of an operator change applied at `version`; `how` says how its step-up was
    /// met (empty when it needed none).
    pub fn of_change(prev: &[u8; 32], version: u64, change: &Change, how: &str) -> Self {
        match (change, change.meta()) {
            (Change::Command(cmd), None) => Self::next(prev, version, cmd),
            (_, m) => {
                let system;
                let m = match m {
                    Some(m) => m,
                    None => {
                        system = system_meta();
                        &system
                    }
                };
                let summary = match how {
                    "" => change.summary(),
                    how => format!("{} ({how})", change.summary()),
                };
                Self::link(prev, version, m, summary, change.hash())
            }
        }
    }

    /// The record of a change proposed as pending request `id`, waiting until `expires_at`.
    pub fn of_proposal(
        prev: &[u8; 32],
        version: u64,
        change: &Change,
        proposed: &Proposed,
    ) -> Self {
        let m = change.meta().cloned().unwrap_or_else(system_meta);
        let summary = format!(
            "propose request {}: {} (awaits a second operator until {})",
            proposed.id,
            change.summary(),
            proposed.expires_at
        );
        Self::link(prev, version, &m, summary, proposed.command_hash)
    }

    /// The record of an approval that applied pending request `p`: the actor is the approver,
    /// the summary names the proposer, the hash is the approved change's.
    pub fn of_approval(prev: &[u8; 32], version: u64, a: &Approval, p: &Pending) -> Self {
        let summary = format!(
            "approve request {} proposed by {} at version {}: {}",
            p.id,
            p.proposer(),
            p.version,
            p.change.summary()
        );
        Self::link(prev, version, &a.meta, summary, p.command_hash)
    }

    /// The record of an operator enrolling a one-time-code secret: it holds a commitment to
    /// the secret, never the secret.
    pub fn of_enrollment(prev: &[u8; 32], version: u64, e: &OtpEnrollment) -> Self {
        Self::link(prev, version, &e.meta, e.summary(), hash_of(&e.audited()))
    }

    /// The record of node `node` binding its checkpoint key (at the leader's time `at`).
    pub fn of_node_key(
        prev: &[u8; 32],
        version: u64,
        at: Timestamp,
        node: u64,
        key: &[u8; 32],
    ) -> Self {
        let m = Meta {
            at,
            ..system_meta()
        };
        let summary = format!(
            "node {node} binds checkpoint key ed25519:{}",
            hex::encode(key)
        );
        Self::link(prev, version, &m, summary, hash_of(&(node, key)))
    }

    fn link(
        prev: &[u8; 32],
        version: u64,
        m: &Meta,
        summary: String,
        command_hash: [u8; 32],
    ) -> Self {
        let mut record = Self {
            version,
            at: m.at,
            actor: m.actor.clone(),
            on_behalf_of: m.on_behalf_of.clone(),
            reason: m.reason.clone(),
            summary,
            command_hash,
            prev: *prev,
            hash: GENESIS,
        };
        record.hash = record.content_hash();
        record
    }

    /// Recomputes the hash of this record's content: BLAKE3 over the domain tag, `prev`,
    /// `version` and `at` (little-endian), then `actor`, `on_behalf_of`, `reason` and `summary`
    /// each prefixed
    /// with its length (u64 LE), then `command_hash` (fixed size, so not prefixed).
    pub fn content_hash(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(DOMAIN);
        h.update(&self.prev);
        h.update(&self.version.to_le_bytes());
        h.update(&self.at.as_millis().to_le_bytes());
        for text in [&self.actor, &self.on_behalf_of, &self.reason, &self.summary] {
            h.update(&(text.len() as u64).to_le_bytes());
            h.update(text.as_bytes());
        }
        h.update(&self.command_hash);
        *h.finalize().as_bytes()
    }
}

/// The BLAKE3 of the postcard encoding of `cmd`.
pub fn command_hash(cmd: &Command) -> [u8; 32] {
    hash_of(cmd)
}

/// The BLAKE3 of the postcard encoding of `value`.
pub(crate) fn hash_of<T: Serialize>(value: &T) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    // Encoding only fails for types serde cannot represent; commands have none.
    postcard::to_io(value, &mut h).expect("a command always encodes");
    *h.finalize().as_bytes()
}

/// The end of the chain: the last record's version and hash.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    /// The version of the last record; 0 when there is none (no command sits at log index 0).
    pub version: u64,
    /// The hash of the last record; [`GENESIS`] when there is none.
    pub hash: [u8; 32],
}

/// A chain that verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    /// How many records were checked.
    pub records: u64,
    /// The hash of the last record ([`GENESIS`] for an empty history).
    pub head: [u8; 32],
    /// The version of the last record; 0 for an empty history.
    pub last_version: u64,
}

/// A chain that does not verify: the first version that breaks it, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the audit chain is broken at version {version}: {reason}")]
pub struct Broken {
    /// The first version whose record does not hold.
    pub version: u64,
    /// What is wrong with it.
    pub reason: String,
}

/// Checks records one at a time, in order (for histories too long to hold in memory).
#[derive(Clone, Debug, Default)]
pub struct Verifier {
    records: u64,
    head: AuditHead,
}

impl Verifier {
    /// A verifier at the start of a history.
    pub fn new() -> Self {
        Self::default()
    }

    /// A verifier of a history that starts after the record whose hash is `prev` (an export
    /// from a later version): the first record's `prev` must be `prev`.
    pub fn anchored(prev: [u8; 32]) -> Self {
        Self {
            records: 0,
            head: AuditHead {
                version: 0,
                hash: prev,
            },
        }
    }

    /// Checks the next record: versions strictly increase, the hash matches the content and
    /// `prev` is the hash of the record before.
    pub fn push(&mut self, record: &AuditRecord) -> Result<(), Broken> {
        let broken = |reason: String| Broken {
            version: record.version,
            reason,
        };
        if self.records > 0 && record.version <= self.head.version {
            return Err(broken(format!(
                "its version does not follow version {}: versions must strictly increase",
                self.head.version
            )));
        }
        if record.content_hash() != record.hash {
            return Err(broken("record hash does not match its content".into()));
        }
        if record.prev != self.head.hash {
            return Err(broken(match self.records {
                0 => "prev of the first record is not the genesis (all zero) hash".into(),
                _ => format!(
                    "prev does not match the hash of version {}",
                    self.head.version
                ),
            }));
        }
        self.records += 1;
        self.head = AuditHead {
            version: record.version,
            hash: record.hash,
        };
        Ok(())
    }

    /// What was verified so far.
    pub fn finish(&self) -> Verified {
        Verified {
            records: self.records,
            head: self.head.hash,
            last_version: self.head.version,
        }
    }
}

/// Verifies a whole history, oldest record first; names the first version that breaks it.
pub fn verify(records: impl IntoIterator<Item = AuditRecord>) -> Result<Verified, Broken> {
    let mut verifier = Verifier::new();
    for record in records {
        verifier.push(&record)?;
    }
    Ok(verifier.finish())
}

#[cfg(test)]
mod tests {
    use recall_core::{Kind, Meta, Revocation, RevocationKey};

    use super::*;

    fn revoke(i: u64) -> Command {
        Command::Revoke {
            meta: Meta {
                at: Timestamp::from_millis(1_000 + i as i64),
                actor: "alice".into(),
                on_behalf_of: String::new(),
                reason: format!("incident {i}"),
            },
            items: vec![Revocation {
                key: RevocationKey::new(Kind::Token, "https://idp", format!("jti-{i}")),
                expires_at: None,
            }],
        }
    }

    fn chain(n: u64) -> Vec<AuditRecord> {
        let mut prev = GENESIS;
        (1..=n)
            .map(|i| {
                let r = AuditRecord::next(&prev, i * 2, &revoke(i));
                prev = r.hash;
                r
            })
            .collect()
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let records = chain(4);
        let v = verify(records.clone()).unwrap();
        assert_eq!(v.records, 4);
        assert_eq!(v.head, records[3].hash);
        assert_eq!(v.last_version, 8);
        assert_eq!(verify([]).unwrap().head, GENESIS);
    }

    #[test]
    fn a_prune_is_the_systems_own() {
        let r = AuditRecord::next(&GENESIS, 3, &Command::Prune { now: Timestamp(42) });
        assert_eq!((r.actor.as_str(), r.reason.as_str()), ("recall", "expiry"));
        assert_eq!(r.at, Timestamp(42));
    }

    #[test]
    fn the_hash_covers_every_field() {
        let base = chain(1).remove(0);
        let edits: [fn(&mut AuditRecord); 6] = [
            |r| r.version += 1,
            |r| r.at = Timestamp(7),
            |r| r.actor.push('x'),
            |r| r.summary.clear(),
            |r| r.command_hash[0] ^= 1,
            |r| r.prev[31] ^= 1,
        ];
        for edit in edits {
            let mut r = base.clone();
            edit(&mut r);
            assert_ne!(r.content_hash(), base.hash);
        }
        // Moving a byte between two length-prefixed fields changes the hash too.
        let mut moved = base.clone();
        moved.reason = format!("{}{}", base.actor.chars().last().unwrap(), base.reason);
        moved.actor.pop();
        assert_ne!(moved.content_hash(), base.hash);
    }

    #[test]
    fn a_tampered_reason_names_its_version() {
        let mut records = chain(4);
        records[2].reason = "nothing to see".into();
        let err = verify(records).unwrap_err();
        assert_eq!(err.version, 6);
        assert_eq!(err.reason, "record hash does not match its content");
    }

    #[test]
    fn a_rehashed_forgery_is_caught_at_the_next_link() {
        let mut records = chain(4);
        records[1].actor = "mallory".into();
        records[1].hash = records[1].content_hash();
        let err = verify(records).unwrap_err();
        assert_eq!(err.version, 6);
        assert_eq!(err.reason, "prev does not match the hash of version 4");
    }

    #[test]
    fn versions_must_increase() {
        let mut records = chain(3);
        records.swap(1, 2);
        assert_eq!(verify(records).unwrap_err().version, 6);
        let mut records = chain(2);
        records.push(records[1].clone());
        let err = verify(records).unwrap_err();
        assert_eq!(err.version, 4);
        assert!(err.reason.contains("strictly increase"), "{err}");
    }
}
