//! The messages of a subscriber stream as core values: what a node sends down (`Down`) and what a
//! subscriber sends up (`Up`). `src/wire/` is the one codec between these and protobuf; the
//! state machines and their tests see only these.
//!
//! Deltas and snapshots are split by bytes here, so a 1M-entry change is many bounded messages,
//! never one huge one.

use std::sync::Arc;

use recall_core::{
    Delta, Digest, Expiry, Fingerprint, FingerprintSeed, RuleFingerprint, Timestamp, View,
};

/// The first message of a stream, from the subscriber.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hello {
    /// The subscriber's stable name.
    pub subscriber_id: String,
    /// The version its state is current as of; 0 when it holds nothing.
    pub applied_version: u64,
    /// The digest of its state at that version.
    pub digest: Digest,
    /// The fingerprint seed its fingerprints were computed under; 0 when it has none.
    pub seed: FingerprintSeed,
    /// How it keeps its filters (informational).
    pub mode: String,
    /// Whether it wants each fingerprint's expiry too.
    pub expiries: bool,
}

/// The subscriber has applied `version` and holds `digest` there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ack {
    /// The version applied.
    pub version: u64,
    /// The subscriber's digest at that version.
    pub digest: Digest,
}

/// A subscriber behind a relay, as the relay reports it upward.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Downstream {
    /// Its id.
    pub id: String,
    /// Its mode.
    pub mode: String,
    /// The last version it acked that counted (sent on its stream, with the matching digest).
    pub applied: u64,
    /// The relays between the reporting relay and it, nearest first, joined by " > ".
    pub via: String,
}

/// What changed behind a relay since its last report on a stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Subscribers whose state changed (all of them, first on a stream).
    pub subscribers: Vec<Downstream>,
    /// Ids no longer behind the relay.
    pub gone: Vec<String>,
}

/// From the subscriber to the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Up {
    /// Opens the stream.
    Hello(Hello),
    /// Reports what was applied.
    Ack(Ack),
    /// A relay reports the subscribers behind it.
    Report(Report),
}

/// A snapshot starts: everything before it is replaced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotBegin {
    /// The version the snapshot is at.
    pub version: u64,
    /// The version of its last change.
    pub last_change: u64,
    /// The fingerprint seed.
    pub seed: FingerprintSeed,
    /// The digest of the whole snapshot.
    pub digest: Digest,
    /// How many fingerprints follow in the chunks.
    pub entries: u64,
    /// How many rules follow in the chunks.
    pub rules: u64,
    /// Why a snapshot (one of the node's snapshot reasons).
    pub reason: String,
}

/// A part of a snapshot's fingerprints or rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotChunk {
    /// Fingerprints, in the snapshot's order.
    pub fingerprints: Vec<Fingerprint>,
    /// Rules.
    pub rules: Vec<RuleFingerprint>,
    /// The expiry of each fingerprint of this chunk, when the subscriber asked for them; empty
    /// otherwise.
    pub expiries: Vec<Option<Timestamp>>,
}

/// One part of a delta; the parts of a version are numbered from 0 and the last says so.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeltaPart {
    /// The version the whole delta brings the subscriber to.
    pub version: u64,
    /// The version of the previous change.
    pub prev_version: u64,
    /// The digest after the whole delta.
    pub digest: Digest,
    /// When the leader accepted the change.
    pub at: Timestamp,
    /// This part's number.
    pub part: u32,
    /// Whether this is the last part.
    pub last_part: bool,
    /// Fingerprints revoked.
    pub added: Vec<Fingerprint>,
    /// Fingerprints no longer revoked.
    pub removed: Vec<Fingerprint>,
    /// Rules set.
    pub rules_set: Vec<RuleFingerprint>,
    /// Rules removed, by scope.
    pub rules_removed: Vec<Fingerprint>,
    /// Expiries, when the subscriber asked for them.
    pub expiries: Vec<Expiry>,
}

/// A checkpoint a quorum of nodes signed: the set digest after `version`, and each signer's
/// signature (over the checkpoint with its own signing time). A subscriber holding the nodes'
/// keys checks the signatures, then that its own digest at `version` is the one signed, so a
/// node cannot feed it a set the others did not vouch for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Witness {
    /// The version (of the last audit record).
    pub version: u64,
    /// The audit chain head there.
    pub head: [u8; 32],
    /// The set digest there.
    pub digest: Digest,
    /// One signature per signing node.
    pub signatures: Vec<WitnessSignature>,
}

/// One node's signature on a [`Witness`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WitnessSignature {
    /// The signing node.
    pub node: u64,
    /// When it signed, Unix milliseconds on its clock (part of what it signed).
    pub at_ms: i64,
    /// The ed25519 signature (64 bytes).
    pub signature: Vec<u8>,
}

/// "Nothing newer exists" (or, with a `stale_reason`, "I cannot vouch for that").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Heartbeat {
    /// The node's applied version.
    pub applied_version: u64,
    /// The version of its last change.
    pub last_change: u64,
    /// The commit index the node knows from its leader.
    pub committed_version: u64,
    /// The node's digest.
    pub digest: Digest,
    /// The node's clock when it sent this (Unix milliseconds).
    pub sent_at_ms: i64,
    /// Why the node cannot vouch that its state is current; empty when it can.
    pub stale_reason: String,
    /// How long before sending this the node last heard from a leader (milliseconds).
    pub contact_age_ms: u64,
    /// The latest checkpoint a quorum signed, at or before `applied_version`, when it is newer
    /// than the last one this stream carried.
    pub witness: Option<Arc<Witness>>,
}

/// From the node to the subscriber.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Down {
    /// A snapshot starts.
    SnapshotBegin(SnapshotBegin),
    /// Part of a snapshot.
    SnapshotChunk(SnapshotChunk),
    /// The snapshot is complete at `version` with `digest`.
    SnapshotEnd {
        /// Its version.
        version: u64,
        /// Its digest.
        digest: Digest,
    },
    /// Part of a delta.
    Delta(DeltaPart),
    /// The node's state, with nothing newer to send.
    Heartbeat(Heartbeat),
    /// A snapshot follows; drop any partial delta.
    Resync {
        /// Why.
        reason: String,
    },
}

impl Down {
    /// About how many bytes the message takes on the wire (for byte-bounded queues).
    pub fn wire_bytes(&self) -> usize {
        const FP: usize = 8;
        const RULE: usize = 24;
        16 + match self {
            Down::SnapshotBegin(b) => 64 + b.reason.len(),
            Down::SnapshotChunk(c) => {
                c.fingerprints.len() * FP + c.rules.len() * RULE + c.expiries.len() * FP
            }
            Down::SnapshotEnd { .. } => 16,
            Down::Delta(p) => {
                48 + (p.added.len() + p.removed.len() + p.rules_removed.len()) * FP
                    + p.rules_set.len() * RULE
                    + p.expiries.len() * 2 * FP
            }
            Down::Heartbeat(h) => {
                48 + h.stale_reason.len()
                    + h.witness
                        .as_ref()
                        .map_or(0, |w| 48 + w.signatures.len() * 80)
            }
            Down::Resync { reason } => reason.len(),
        }
    }
}

/// Bytes of one fingerprint on the wire (packed fixed64).
const FP_BYTES: usize = 8;
/// Bytes of one rule on the wire (a small message).
const RULE_BYTES: usize = 24;

/// The messages of one delta, each at most about `max_bytes`; with the fingerprints' expiries
/// when `expiries` (the subscriber asked for them).
pub fn split_delta(d: &Delta, max_bytes: usize, expiries: bool) -> Vec<Down> {
    let budget = (max_bytes / FP_BYTES).max(16);
    let head = |part: u32| DeltaPart {
        version: d.version,
        prev_version: d.prev_version,
        at: d.at,
        digest: d.digest,
        part,
        ..DeltaPart::default()
    };
    let mut parts = vec![head(0)];
    let mut room = budget;
    let mut take = |parts: &mut Vec<DeltaPart>, cost: usize| -> usize {
        if room < cost {
            let n = parts.len() as u32;
            parts.push(head(n));
            room = budget;
        }
        room -= cost.min(room);
        parts.len() - 1
    };
    for fp in &d.added {
        let i = take(&mut parts, 1);
        parts[i].added.push(*fp);
    }
    for fp in &d.removed {
        let i = take(&mut parts, 1);
        parts[i].removed.push(*fp);
    }
    for r in &d.rules_set {
        let i = take(&mut parts, RULE_BYTES / FP_BYTES);
        parts[i].rules_set.push(*r);
    }
    for fp in &d.rules_removed {
        let i = take(&mut parts, 1);
        parts[i].rules_removed.push(*fp);
    }
    for e in d.expiries.iter().filter(|_| expiries) {
        let i = take(&mut parts, 2);
        parts[i].expiries.push(*e);
    }
    if let Some(last) = parts.last_mut() {
        last.last_part = true;
    }
    parts.into_iter().map(Down::Delta).collect()
}

/// A snapshot as every session sends it: built once per version and shared by every stream
/// that needs it. Only the first message differs between streams (it says why).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The first message; its `reason` is empty here.
    pub begin: SnapshotBegin,
    /// The chunks and the end, in order.
    pub body: Encoded,
}

impl Snapshot {
    /// The snapshot of `view`, in chunks of at most about `max_bytes`, each fingerprint with its
    /// expiry when `expiries` is given (in the same order).
    pub fn build(view: &View, expiries: Option<&[Option<Timestamp>]>, max_bytes: usize) -> Self {
        let per_chunk = (max_bytes / FP_BYTES / if expiries.is_some() { 2 } else { 1 }).max(16);
        let mut body = Vec::new();
        for (i, chunk) in view.fingerprints.chunks(per_chunk).enumerate() {
            body.push(Down::SnapshotChunk(SnapshotChunk {
                fingerprints: chunk.to_vec(),
                rules: vec![],
                expiries: expiries
                    .map_or_else(Vec::new, |e| e[i * per_chunk..][..chunk.len()].to_vec()),
            }));
        }
        for chunk in view.rules.chunks((max_bytes / RULE_BYTES).max(16)) {
            body.push(Down::SnapshotChunk(SnapshotChunk {
                rules: chunk.to_vec(),
                ..SnapshotChunk::default()
            }));
        }
        body.push(Down::SnapshotEnd {
            version: view.version,
            digest: view.digest,
        });
        Self {
            begin: SnapshotBegin {
                version: view.version,
                last_change: view.last_change,
                seed: view.seed,
                digest: view.digest,
                entries: view.fingerprints.len() as u64,
                rules: view.rules.len() as u64,
                reason: String::new(),
            },
            body: body.into(),
        }
    }

    /// Its first message, saying why it is sent.
    pub fn begin(&self, reason: &str) -> Down {
        Down::SnapshotBegin(SnapshotBegin {
            reason: reason.to_owned(),
            ..self.begin.clone()
        })
    }
}

/// Every message of the snapshot of `view` sent for `reason` (see [`Snapshot::build`]).
pub fn split_snapshot(
    view: &View,
    expiries: Option<&[Option<Timestamp>]>,
    reason: &str,
    max_bytes: usize,
) -> Vec<Down> {
    let s = Snapshot::build(view, expiries, max_bytes);
    std::iter::once(s.begin(reason))
        .chain(s.body.iter().cloned())
        .collect()
}

/// The whole delta of a complete, in-order sequence of parts.
pub fn assemble(parts: Vec<DeltaPart>) -> Delta {
    let mut d = parts.first().map_or_else(Delta::default, |first| Delta {
        version: first.version,
        prev_version: first.prev_version,
        digest: first.digest,
        at: first.at,
        ..Delta::default()
    });
    for p in parts {
        d.added.extend(p.added);
        d.removed.extend(p.removed);
        d.rules_set.extend(p.rules_set);
        d.rules_removed.extend(p.rules_removed);
        d.expiries.extend(p.expiries);
    }
    d
}

/// Messages shared by every session that sends them (the messages of a version never change).
pub type Encoded = Arc<[Down]>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_big_delta_is_split_into_bounded_parts_that_keep_everything() {
        let d = Delta {
            version: 9,
            prev_version: 4,
            added: (0..100_000).map(Fingerprint).collect(),
            removed: (200_000..200_010).map(Fingerprint).collect(),
            digest: Digest(7),
            ..Delta::default()
        };
        let msgs = split_delta(&d, 64 * 1024, false);
        assert!(msgs.len() > 10);
        assert!(msgs.iter().all(|m| m.wire_bytes() <= 64 * 1024 + 128));
        let parts: Vec<DeltaPart> = msgs
            .into_iter()
            .map(|m| match m {
                Down::Delta(p) => p,
                other => panic!("{other:?}"),
            })
            .collect();
        assert!(
            parts
                .iter()
                .all(|p| p.version == 9 && p.prev_version == 4 && p.digest == Digest(7))
        );
        assert!(parts.iter().enumerate().all(|(i, p)| p.part as usize == i));
        assert_eq!(parts.iter().filter(|p| p.last_part).count(), 1);
        assert!(parts.last().unwrap().last_part);
        assert_eq!(assemble(parts), d);
    }

    #[test]
    fn a_snapshot_carries_every_fingerprint_and_rule_in_bounded_chunks() {
        let view = View {
            seed: FingerprintSeed(3),
            version: 12,
            last_change: 10,
            digest: Digest(99),
            fingerprints: (0..50_000).map(Fingerprint).collect(),
            rules: (0..3000)
                .map(|i| RuleFingerprint {
                    scope: Fingerprint(i),
                    not_before: Timestamp::from_millis(5),
                })
                .collect(),
        };
        let msgs = split_snapshot(&view, None, "new_subscriber", 32 * 1024);
        assert!(
            matches!(&msgs[0], Down::SnapshotBegin(b) if b.entries == 50_000 && b.rules == 3000)
        );
        assert!(matches!(
            msgs.last(),
            Some(Down::SnapshotEnd {
                version: 12,
                digest: Digest(99)
            })
        ));
        let (mut fps, mut rules): (Vec<Fingerprint>, Vec<RuleFingerprint>) = (vec![], vec![]);
        for m in &msgs[1..msgs.len() - 1] {
            let Down::SnapshotChunk(c) = m else {
                panic!("{m:?}")
            };
            assert!(m.wire_bytes() <= 32 * 1024 + 128);
            fps.extend(&c.fingerprints);
            rules.extend(&c.rules);
        }
        assert_eq!(fps, view.fingerprints);
        assert_eq!(rules, view.rules);
    }
}
