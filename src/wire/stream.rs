//! The subscribe stream's messages: the one codec between the stream protocol's values
//! (`recall_stream::message`) and `recall.v1` protobuf, both ways. The node's sessions, the
//! subscribers, the Redis mirror and the stream simulation all go through it.

use recall_core::{Digest, Expiry, Fingerprint, FingerprintSeed, RuleFingerprint, Timestamp};
use std::sync::Arc;

use recall_stream::message::{
    Ack, DeltaPart, Down, Heartbeat, Hello, SnapshotBegin, SnapshotChunk, Up, Witness,
    WitnessSignature,
};

use super::WireError;
use crate::proto as pb;
use crate::proto::subscribe_request::Body as UpBody;
use crate::proto::subscribe_response::Body as DownBody;

fn rule_to_wire(r: &RuleFingerprint) -> pb::RuleFingerprint {
    pb::RuleFingerprint {
        scope: r.scope.0,
        not_before_ms: r.not_before.as_millis(),
    }
}

fn rule_from_wire(r: &pb::RuleFingerprint) -> RuleFingerprint {
    RuleFingerprint {
        scope: Fingerprint(r.scope),
        not_before: Timestamp::from_millis(r.not_before_ms),
    }
}

/// An expiry on the wire: Unix milliseconds, 0 for none.
fn expiry_ms(at: Option<Timestamp>) -> i64 {
    at.map_or(0, Timestamp::as_millis)
}

fn expiry_from_ms(ms: i64) -> Option<Timestamp> {
    (ms != 0).then(|| Timestamp::from_millis(ms))
}

fn fps(v: &[u64]) -> Vec<Fingerprint> {
    v.iter().map(|&x| Fingerprint(x)).collect()
}

fn raw(v: &[Fingerprint]) -> Vec<u64> {
    v.iter().map(|f| f.0).collect()
}

/// A node's message as protobuf.
pub fn down_to_wire(m: &Down) -> pb::SubscribeResponse {
    let body = match m {
        Down::SnapshotBegin(b) => DownBody::SnapshotBegin(pb::SnapshotBegin {
            version: b.version,
            last_change_version: b.last_change,
            fingerprint_seed: b.seed.0,
            digest: b.digest.0,
            entries: b.entries,
            rules: b.rules,
            reason: b.reason.clone(),
        }),
        Down::SnapshotChunk(c) => DownBody::SnapshotChunk(pb::SnapshotChunk {
            fingerprints: raw(&c.fingerprints),
            rules: c.rules.iter().map(rule_to_wire).collect(),
            expires_at_ms: c.expiries.iter().map(|&e| expiry_ms(e)).collect(),
        }),
        Down::SnapshotEnd { version, digest } => DownBody::SnapshotEnd(pb::SnapshotEnd {
            version: *version,
            digest: digest.0,
        }),
        Down::Delta(p) => DownBody::Delta(pb::Delta {
            version: p.version,
            prev_version: p.prev_version,
            at_ms: p.at.as_millis(),
            digest: p.digest.0,
            part: p.part,
            last_part: p.last_part,
            added: raw(&p.added),
            removed: raw(&p.removed),
            rules_set: p.rules_set.iter().map(rule_to_wire).collect(),
            rules_removed: raw(&p.rules_removed),
            expiry_fingerprints: p.expiries.iter().map(|e| e.fingerprint.0).collect(),
            expires_at_ms: p.expiries.iter().map(|e| expiry_ms(e.at)).collect(),
        }),
        Down::Heartbeat(h) => DownBody::Heartbeat(pb::Heartbeat {
            applied_version: h.applied_version,
            last_change_version: h.last_change,
            committed_version: h.committed_version,
            digest: h.digest.0,
            sent_at_ms: h.sent_at_ms,
            stale_reason: h.stale_reason.clone(),
            contact_age_ms: h.contact_age_ms,
            witness: h.witness.as_deref().map(witness_to_wire),
        }),
        Down::Resync { reason } => DownBody::Resync(pb::Resync {
            reason: reason.clone(),
        }),
    };
    pb::SubscribeResponse { body: Some(body) }
}

/// A node's message from protobuf; names what is malformed.
pub fn down_from_wire(m: pb::SubscribeResponse) -> Result<Down, WireError> {
    let Some(body) = m.body else {
        return Err(WireError::new("body", "empty message from the node"));
    };
    Ok(match body {
        DownBody::SnapshotBegin(b) => Down::SnapshotBegin(SnapshotBegin {
            version: b.version,
            last_change: b.last_change_version,
            seed: FingerprintSeed(b.fingerprint_seed),
            digest: Digest(b.digest),
            entries: b.entries,
            rules: b.rules,
            reason: b.reason,
        }),
        DownBody::SnapshotChunk(c) => {
            if !c.expires_at_ms.is_empty() && c.expires_at_ms.len() != c.fingerprints.len() {
                return Err(WireError::new(
                    "snapshot_chunk.expires_at_ms",
                    format!(
                        "{} expiries for {} fingerprints: one for each, or none",
                        c.expires_at_ms.len(),
                        c.fingerprints.len()
                    ),
                ));
            }
            Down::SnapshotChunk(SnapshotChunk {
                fingerprints: fps(&c.fingerprints),
                rules: c.rules.iter().map(rule_from_wire).collect(),
                expiries: c
                    .expires_at_ms
                    .iter()
                    .map(|&ms| expiry_from_ms(ms))
                    .collect(),
            })
        }
        DownBody::SnapshotEnd(e) => Down::SnapshotEnd {
            version: e.version,
            digest: Digest(e.digest),
        },
        DownBody::Delta(p) => {
            if p.expiry_fingerprints.len() != p.expires_at_ms.len() {
                return Err(WireError::new(
                    "delta.expires_at_ms",
                    format!(
                        "{} expiries for {} expiry_fingerprints: one for each",
                        p.expires_at_ms.len(),
                        p.expiry_fingerprints.len()
                    ),
                ));
            }
            Down::Delta(DeltaPart {
                version: p.version,
                prev_version: p.prev_version,
                digest: Digest(p.digest),
                at: Timestamp::from_millis(p.at_ms),
                part: p.part,
                last_part: p.last_part,
                added: fps(&p.added),
                removed: fps(&p.removed),
                rules_set: p.rules_set.iter().map(rule_from_wire).collect(),
                rules_removed: fps(&p.rules_removed),
                expiries: p
                    .expiry_fingerprints
                    .iter()
                    .zip(&p.expires_at_ms)
                    .map(|(&fp, &ms)| Expiry {
                        fingerprint: Fingerprint(fp),
                        at: expiry_from_ms(ms),
                    })
                    .collect(),
            })
        }
        DownBody::Heartbeat(h) => Down::Heartbeat(Heartbeat {
            applied_version: h.applied_version,
            last_change: h.last_change_version,
            committed_version: h.committed_version,
            digest: Digest(h.digest),
            sent_at_ms: h.sent_at_ms,
            stale_reason: h.stale_reason,
            contact_age_ms: h.contact_age_ms,
            witness: h.witness.map(witness_from_wire).transpose()?.map(Arc::new),
        }),
        DownBody::Resync(r) => Down::Resync { reason: r.reason },
    })
}

/// The most signatures a checkpoint carries (one per node; clusters have a handful).
pub const MAX_WITNESS_SIGNATURES: usize = 64;

fn witness_to_wire(w: &Witness) -> pb::Witness {
    pb::Witness {
        version: w.version,
        head: w.head.to_vec(),
        digest: w.digest.0,
        signatures: w
            .signatures
            .iter()
            .map(|s| pb::WitnessSignature {
                node: s.node,
                at_ms: s.at_ms,
                signature: s.signature.clone(),
            })
            .collect(),
    }
}

fn witness_from_wire(w: pb::Witness) -> Result<Witness, WireError> {
    let head: [u8; 32] = w.head.as_slice().try_into().map_err(|_| {
        WireError::new(
            "heartbeat.witness.head",
            format!("a chain head has 32 bytes, not {}", w.head.len()),
        )
    })?;
    if w.signatures.len() > MAX_WITNESS_SIGNATURES {
        return Err(WireError::new(
            "heartbeat.witness.signatures",
            format!(
                "{} signatures: a checkpoint carries at most {MAX_WITNESS_SIGNATURES}",
                w.signatures.len()
            ),
        ));
    }
    let mut signatures = Vec::with_capacity(w.signatures.len());
    for s in w.signatures {
        if s.signature.len() != 64 {
            return Err(WireError::new(
                "heartbeat.witness.signatures.signature",
                format!(
                    "an ed25519 signature has 64 bytes, not {} (node {})",
                    s.signature.len(),
                    s.node
                ),
            ));
        }
        signatures.push(WitnessSignature {
            node: s.node,
            at_ms: s.at_ms,
            signature: s.signature,
        });
    }
    Ok(Witness {
        version: w.version,
        head,
        digest: Digest(w.digest),
        signatures,
    })
}

/// A subscriber's message as protobuf.
pub fn up_to_wire(m: &Up) -> pb::SubscribeRequest {
    let body = match m {
        Up::Hello(h) => UpBody::Hello(pb::Hello {
            subscriber_id: h.subscriber_id.clone(),
            applied_version: h.applied_version,
            digest: h.digest.0,
            fingerprint_seed: h.seed.0,
            mode: h.mode.clone(),
            expiries: h.expiries,
        }),
        Up::Ack(a) => UpBody::Ack(pb::Ack {
            applied_version: a.version,
            digest: a.digest.0,
        }),
        Up::Report(r) => UpBody::Downstream(super::report::report_to_wire(r)),
    };
    pb::SubscribeRequest { body: Some(body) }
}

/// The longest subscriber id.
pub const MAX_SUBSCRIBER_ID: usize = 256;
/// The longest mode.
pub const MAX_MODE: usize = 32;
pub(super) fn check_id(field: &str, id: &str) -> Result<(), WireError> {
    if id.is_empty() || id.len() > MAX_SUBSCRIBER_ID {
        return Err(WireError::new(
            field,
            format!("must be 1 to {MAX_SUBSCRIBER_ID} bytes"),
        ));
    }
    Ok(())
}

pub(super) fn check_mode(field: &str, mode: &str) -> Result<(), WireError> {
    if mode.len() > MAX_MODE {
        return Err(WireError::new(
            field,
            format!("must be at most {MAX_MODE} bytes"),
        ));
    }
    Ok(())
}

/// A subscriber's message from protobuf; names what is malformed.
pub fn up_from_wire(m: pb::SubscribeRequest) -> Result<Up, WireError> {
    match m.body {
        None => Err(WireError::new(
            "body",
            "empty message: send a Hello first, then Acks",
        )),
        Some(UpBody::Hello(h)) => {
            check_id("hello.subscriber_id", &h.subscriber_id)?;
            check_mode("hello.mode", &h.mode)?;
            Ok(Up::Hello(Hello {
                subscriber_id: h.subscriber_id,
                applied_version: h.applied_version,
                digest: Digest(h.digest),
                seed: FingerprintSeed(h.fingerprint_seed),
                mode: h.mode,
                expiries: h.expiries,
            }))
        }
        Some(UpBody::Ack(a)) => Ok(Up::Ack(Ack {
            version: a.applied_version,
            digest: Digest(a.digest),
        })),
        Some(UpBody::Downstream(r)) => super::report::report_from_wire(r).map(Up::Report),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use recall_core::{Delta, View};
    use recall_stream::message::{split_delta, split_snapshot};

    fn through_bytes(m: &Down) -> Down {
        let bytes = down_to_wire(m).encode_to_vec();
        down_from_wire(pb::SubscribeResponse::decode(bytes.as_slice()).unwrap()).unwrap()
    }

    #[test]
    fn every_node_message_survives_the_wire_unchanged() {
        let d = Delta {
            version: 9,
            prev_version: 4,
            added: (0..3000).map(Fingerprint).collect(),
            removed: vec![Fingerprint(u64::MAX)],
            rules_set: vec![RuleFingerprint {
                scope: Fingerprint(5),
                not_before: Timestamp::from_millis(77),
            }],
            rules_removed: vec![Fingerprint(6)],
            digest: Digest(7),
            at: Timestamp::from_millis(1_700_000_000_000),
            expiries: vec![
                Expiry {
                    fingerprint: Fingerprint(1),
                    at: None,
                },
                Expiry {
                    fingerprint: Fingerprint(2),
                    at: Some(Timestamp::from_millis(9)),
                },
            ],
        };
        let view = View {
            seed: FingerprintSeed(3),
            version: 12,
            last_change: 10,
            digest: Digest(99),
            fingerprints: (0..5000).map(Fingerprint).collect(),
            rules: d.rules_set.clone(),
        };
        let expiries: Vec<_> = (0..5000)
            .map(|i| (i % 2 == 0).then(|| Timestamp::from_millis(i + 1)))
            .collect();
        let mut all = split_delta(&d, 4096, true);
        all.extend(split_snapshot(&view, Some(&expiries), "too_slow", 4096));
        all.push(Down::Heartbeat(Heartbeat {
            applied_version: 3,
            last_change: 2,
            committed_version: 5,
            digest: Digest(1),
            sent_at_ms: -4,
            stale_reason: "behind_commit".into(),
            contact_age_ms: 250,
            witness: Some(Arc::new(Witness {
                version: 2,
                head: [7; 32],
                digest: Digest(5),
                signatures: vec![WitnessSignature {
                    node: 3,
                    at_ms: 1_700_000_000_000,
                    signature: vec![9; 64],
                }],
            })),
        }));
        all.push(Down::Resync {
            reason: "digest_mismatch".into(),
        });
        for m in &all {
            assert_eq!(&through_bytes(m), m);
        }
    }

    #[test]
    fn malformed_messages_name_the_field() {
        let e = down_from_wire(pb::SubscribeResponse { body: None }).unwrap_err();
        assert_eq!(e.field, "body");
        let bad = pb::SubscribeResponse {
            body: Some(DownBody::Delta(pb::Delta {
                expiry_fingerprints: vec![1, 2],
                expires_at_ms: vec![1],
                ..Default::default()
            })),
        };
        assert_eq!(
            down_from_wire(bad).unwrap_err().field,
            "delta.expires_at_ms"
        );
        let beat = |witness: pb::Witness| pb::SubscribeResponse {
            body: Some(DownBody::Heartbeat(pb::Heartbeat {
                witness: Some(witness),
                ..Default::default()
            })),
        };
        let sig = |bytes: usize| pb::WitnessSignature {
            node: 1,
            at_ms: 0,
            signature: vec![0; bytes],
        };
        let witness = |head: usize, signatures: Vec<pb::WitnessSignature>| pb::Witness {
            head: vec![0; head],
            signatures,
            ..Default::default()
        };
        for (w, field) in [
            (witness(31, vec![]), "heartbeat.witness.head"),
            (
                witness(32, vec![sig(63)]),
                "heartbeat.witness.signatures.signature",
            ),
            (
                witness(32, (0..65).map(|_| sig(64)).collect()),
                "heartbeat.witness.signatures",
            ),
        ] {
            assert_eq!(down_from_wire(beat(w)).unwrap_err().field, field);
        }
        assert!(down_from_wire(beat(witness(32, vec![sig(64)]))).is_ok());
        let hello = |id: &str| pb::SubscribeRequest {
            body: Some(UpBody::Hello(pb::Hello {
                subscriber_id: id.into(),
                ..Default::default()
            })),
        };
        assert_eq!(
            up_from_wire(hello("")).unwrap_err().field,
            "hello.subscriber_id"
        );
        assert_eq!(
            up_from_wire(hello(&"x".repeat(257))).unwrap_err().field,
            "hello.subscriber_id"
        );
        let ack = Up::Ack(Ack {
            version: 4,
            digest: Digest(8),
        });
        assert_eq!(up_from_wire(up_to_wire(&ack)).unwrap(), ack);
    }
}
