//! Turning deltas and snapshots into stream messages of bounded size: a 1M-entry change becomes
//! many messages, never one huge one.

use recall_core::{Delta, RuleFingerprint, Timestamp, View};

use crate::proto as pb;
use crate::proto::subscribe_response::Body;

/// Bytes of one fingerprint on the wire (packed fixed64).
const FP_BYTES: usize = 8;
/// Bytes of one rule on the wire (a small message).
const RULE_BYTES: usize = 24;

fn rule(r: &RuleFingerprint) -> pb::RuleFingerprint {
    pb::RuleFingerprint {
        scope: r.scope.0,
        not_before_ms: r.not_before.as_millis(),
    }
}

fn msg(body: Body) -> pb::SubscribeResponse {
    pb::SubscribeResponse { body: Some(body) }
}

/// An expiry on the wire: unix milliseconds, 0 for none.
fn expiry_ms(at: Option<Timestamp>) -> i64 {
    at.map_or(0, Timestamp::as_millis)
}

/// The messages of one delta, each at most about `max_bytes`; with the fingerprints' expiries
/// when `expiries` (the subscriber asked for them).
pub fn delta(d: &Delta, max_bytes: usize, expiries: bool) -> Vec<pb::SubscribeResponse> {
    let budget = (max_bytes / FP_BYTES).max(16);
    let head = |part: u32| pb::Delta {
        version: d.version,
        prev_version: d.prev_version,
        at_ms: d.at.as_millis(),
        digest: d.digest.0,
        part,
        ..pb::Delta::default()
    };
    let mut parts = vec![head(0)];
    let mut room = budget;
    let mut take = |parts: &mut Vec<pb::Delta>, cost: usize| {
        if room < cost {
            let n = parts.len() as u32;
            parts.push(head(n));
            room = budget;
        }
        room -= cost.min(room);
    };
    for fp in &d.added {
        take(&mut parts, 1);
        parts.last_mut().expect("one part").added.push(fp.0);
    }
    for fp in &d.removed {
        take(&mut parts, 1);
        parts.last_mut().expect("one part").removed.push(fp.0);
    }
    for r in &d.rules_set {
        take(&mut parts, RULE_BYTES / FP_BYTES);
        parts.last_mut().expect("one part").rules_set.push(rule(r));
    }
    for fp in &d.rules_removed {
        take(&mut parts, 1);
        parts.last_mut().expect("one part").rules_removed.push(fp.0);
    }
    for e in d.expiries.iter().filter(|_| expiries) {
        take(&mut parts, 2);
        let part = parts.last_mut().expect("one part");
        part.expiry_fingerprints.push(e.fingerprint.0);
        part.expires_at_ms.push(expiry_ms(e.at));
    }
    if let Some(last) = parts.last_mut() {
        last.last_part = true;
    }
    parts.into_iter().map(|p| msg(Body::Delta(p))).collect()
}

/// The messages of a snapshot of `view`, each chunk at most about `max_bytes`; with `expiries`
/// (one for each of the view's fingerprints, in order) when the subscriber asked for them.
pub fn snapshot(
    view: &View,
    expiries: Option<&[Option<Timestamp>]>,
    reason: &str,
    max_bytes: usize,
) -> Vec<pb::SubscribeResponse> {
    let per_chunk = (max_bytes / FP_BYTES / if expiries.is_some() { 2 } else { 1 }).max(16);
    let mut out = vec![msg(Body::SnapshotBegin(pb::SnapshotBegin {
        version: view.version,
        last_change_version: view.last_change,
        fingerprint_seed: view.seed.0,
        digest: view.digest.0,
        entries: view.fingerprints.len() as u64,
        rules: view.rules.len() as u64,
        reason: reason.to_string(),
    }))];
    for (i, chunk) in view.fingerprints.chunks(per_chunk).enumerate() {
        let expires_at_ms = expiries.map_or_else(Vec::new, |e| {
            e[i * per_chunk..][..chunk.len()]
                .iter()
                .map(|&at| expiry_ms(at))
                .collect()
        });
        out.push(msg(Body::SnapshotChunk(pb::SnapshotChunk {
            fingerprints: chunk.iter().map(|f| f.0).collect(),
            rules: vec![],
            expires_at_ms,
        })));
    }
    for chunk in view.rules.chunks((max_bytes / RULE_BYTES).max(16)) {
        out.push(msg(Body::SnapshotChunk(pb::SnapshotChunk {
            fingerprints: vec![],
            rules: chunk.iter().map(rule).collect(),
            expires_at_ms: vec![],
        })));
    }
    out.push(msg(Body::SnapshotEnd(pb::SnapshotEnd {
        version: view.version,
        digest: view.digest.0,
    })));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use recall_core::{Digest, Fingerprint};

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
        let msgs = delta(&d, 64 * 1024, false);
        assert!(msgs.len() > 10);
        let parts: Vec<pb::Delta> = msgs
            .into_iter()
            .map(|m| match m.body {
                Some(Body::Delta(p)) => p,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(parts.iter().map(|p| p.added.len()).sum::<usize>(), 100_000);
        assert_eq!(parts.iter().map(|p| p.removed.len()).sum::<usize>(), 10);
        assert!(
            parts
                .iter()
                .all(|p| p.version == 9 && p.prev_version == 4 && p.digest == 7)
        );
        assert!(parts.iter().enumerate().all(|(i, p)| p.part as usize == i));
        assert_eq!(parts.iter().filter(|p| p.last_part).count(), 1);
        assert!(parts.last().unwrap().last_part);
    }
}
