//! Checking a checkpoint a node relays against the node keys this subscriber trusts, with the
//! same rules as offline verification (`recall audit verify --trust`), and keeping track of
//! which changes no such checkpoint has covered yet: a node that withholds checkpoints could
//! otherwise keep a subscriber on a set no quorum ever signed.

use std::collections::{BTreeMap, VecDeque};

use recall_stream::Witness;
use tokio::time::Instant;

use crate::node::history::checkpoint::Witnessed;

/// Whether a quorum of the `trusted` keys signed `w`, every trusted signature verifying; why
/// not.
pub fn verify(w: &Witness, trusted: &BTreeMap<u64, [u8; 32]>) -> Result<(), String> {
    Witnessed::from_stream(w).verify_quorum(trusted).map(|_| ())
}

/// The changes a subscriber holds that no checkpoint a quorum signed has matched yet, each with
/// when it was first held (monotonic clock). A checkpoint at version W matched against the
/// subscriber's own set covers every change at or before W: the set as of W is the one the
/// quorum signed, and later ones wait for a later checkpoint.
#[derive(Debug, Default)]
pub struct Coverage {
    /// Changes held and not covered, oldest first: (version of the change, first held at).
    pending: VecDeque<(u64, Instant)>,
    /// The newest checkpoint matched since the state was last replaced.
    covered: Option<u64>,
}

/// The most uncovered changes tracked one by one; past it the newest ones merge (keeping the
/// earlier time, so a long gap never looks shorter than it is).
const MAX_PENDING: usize = 4096;

impl Coverage {
    /// The subscriber holds a state whose last change is `last_change`, as of `now`.
    pub fn held(&mut self, last_change: u64, now: Instant) {
        if self.covered.is_some_and(|c| last_change <= c)
            || self.pending.back().is_some_and(|&(v, _)| v >= last_change)
        {
            return;
        }
        let full = self.pending.len() >= MAX_PENDING;
        match self.pending.back_mut() {
            Some(back) if full => back.0 = last_change,
            _ => self.pending.push_back((last_change, now)),
        }
    }

    /// A checkpoint at `version` matched the subscriber's set there.
    pub fn witnessed(&mut self, version: u64) {
        self.covered = Some(self.covered.map_or(version, |c| c.max(version)));
        while self.pending.front().is_some_and(|&(v, _)| v <= version) {
            self.pending.pop_front();
        }
    }

    /// A snapshot replaced the state, whose last change is `last_change`: what earlier
    /// checkpoints matched says nothing of it, and it counts as uncovered since the oldest
    /// change that was (or since `now`), so repeated snapshots cannot keep a state looking new.
    pub fn replaced(&mut self, last_change: u64, now: Instant) {
        let since = self.oldest().map_or(now, |t| t.min(now));
        self.pending.clear();
        self.covered = None;
        self.pending.push_back((last_change, since));
    }

    /// How long the oldest uncovered change has been held at `now`, when that is past half of
    /// `lag` on a stream `opened` at least that long ago: time to follow another node, whose
    /// new stream carries its latest checkpoint at once.
    pub fn overdue(
        &self,
        lag: std::time::Duration,
        opened: Instant,
        now: Instant,
    ) -> Option<std::time::Duration> {
        let held = now.saturating_duration_since(self.oldest()?);
        let half = lag / 2;
        (held > half && now.saturating_duration_since(opened) > half).then_some(held)
    }

    /// When the oldest change no checkpoint covers was first held; `None` when all are covered.
    pub fn oldest(&self) -> Option<Instant> {
        self.pending.front().map(|&(_, t)| t)
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use recall_core::{Digest, Timestamp};
    use recall_stream::WitnessSignature;

    use crate::node::history::checkpoint::{Checkpoint, Signed};

    use super::*;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    /// A checkpoint at version 9 signed by `signers`.
    fn signed_by(signers: &[u8]) -> Witness {
        let mut w = Witness {
            version: 9,
            head: [4; 32],
            digest: Digest(77),
            signatures: vec![],
        };
        for &n in signers {
            let at = Timestamp::from_millis(1_000 + i64::from(n));
            let cp = Checkpoint {
                version: w.version,
                head: w.head,
                digest: w.digest,
                at,
            };
            let s = Signed::sign(u64::from(n), cp, &key(n));
            w.signatures.push(WitnessSignature {
                node: s.node,
                at_ms: at.as_millis(),
                signature: s.signature,
            });
        }
        w
    }

    fn trust(nodes: &[u8]) -> BTreeMap<u64, [u8; 32]> {
        nodes
            .iter()
            .map(|&n| (u64::from(n), key(n).verifying_key().to_bytes()))
            .collect()
    }

    #[test]
    fn a_quorum_of_trusted_signatures_vouches_and_anything_less_is_refused() {
        let keys = trust(&[1, 2, 3]);
        assert_eq!(verify(&signed_by(&[1, 2]), &keys), Ok(()));
        assert_eq!(verify(&signed_by(&[1, 2, 3]), &keys), Ok(()));
        // One node alone, or signers the subscriber does not trust, are not a quorum.
        let e = verify(&signed_by(&[1]), &keys).unwrap_err();
        assert!(e.contains("1 signatures of trusted nodes; a quorum of the 3 trusted keys is 2"));
        assert!(verify(&signed_by(&[1, 7, 8]), &keys).is_err());
    }

    #[test]
    fn a_change_stays_uncovered_until_a_checkpoint_at_or_after_it_matches() {
        let t0 = Instant::now();
        let at = |ms| t0 + std::time::Duration::from_millis(ms);
        let mut c = Coverage::default();
        assert_eq!(c.oldest(), None);
        // Even an empty set (last change 0) needs a checkpoint: a node could hand out one.
        c.held(0, at(0));
        assert_eq!(c.oldest(), Some(at(0)));
        c.witnessed(3);
        assert_eq!(c.oldest(), None);
        c.held(3, at(5));
        assert_eq!(c.oldest(), None, "already covered");
        c.held(5, at(10));
        c.held(5, at(15));
        c.held(8, at(20));
        assert_eq!(
            c.oldest(),
            Some(at(10)),
            "the oldest uncovered change counts"
        );
        // A checkpoint between two changes covers the earlier one only.
        c.witnessed(6);
        assert_eq!(c.oldest(), Some(at(20)));
        // An older checkpoint arriving late changes nothing.
        c.witnessed(4);
        assert_eq!(c.oldest(), Some(at(20)));
        c.witnessed(9);
        assert_eq!(c.oldest(), None);
    }

    #[test]
    fn a_change_uncovered_past_half_the_lag_on_a_stream_that_old_is_overdue() {
        let t0 = Instant::now();
        let at = |ms| t0 + std::time::Duration::from_millis(ms);
        let lag = std::time::Duration::from_millis(1_000);
        let mut c = Coverage::default();
        assert_eq!(c.overdue(lag, t0, at(5_000)), None, "nothing held");
        c.held(3, at(0));
        assert_eq!(
            c.overdue(lag, t0, at(500)),
            None,
            "exactly half is not past it"
        );
        assert_eq!(
            c.overdue(lag, t0, at(600)),
            Some(std::time::Duration::from_millis(600))
        );
        assert_eq!(
            c.overdue(lag, at(200), at(600)),
            None,
            "a new stream gets its chance"
        );
        c.witnessed(3);
        assert_eq!(c.overdue(lag, t0, at(5_000)), None);
    }

    #[test]
    fn a_snapshot_is_uncovered_since_the_oldest_change_before_it() {
        let t0 = Instant::now();
        let at = |ms| t0 + std::time::Duration::from_millis(ms);
        let mut c = Coverage::default();
        c.held(4, at(0));
        c.replaced(9, at(50));
        assert_eq!(
            c.oldest(),
            Some(at(0)),
            "a snapshot does not restart the clock"
        );
        // Earlier checkpoints matched the old state, not this one.
        c.held(4, at(60));
        c.witnessed(8);
        assert_eq!(c.oldest(), Some(at(0)));
        c.witnessed(9);
        assert_eq!(c.oldest(), None);
        c.replaced(9, at(70));
        assert_eq!(
            c.oldest(),
            Some(at(70)),
            "covered before: uncovered from now"
        );
    }

    #[test]
    fn many_uncovered_changes_merge_without_looking_newer() {
        let t0 = Instant::now();
        let mut c = Coverage::default();
        for v in 1..=(MAX_PENDING as u64 + 10) {
            c.held(v, t0 + std::time::Duration::from_millis(v));
        }
        assert_eq!(c.pending.len(), MAX_PENDING);
        c.witnessed(MAX_PENDING as u64 - 1);
        // The merged newest entry keeps the time of the first change it stands for.
        assert_eq!(
            c.oldest(),
            Some(t0 + std::time::Duration::from_millis(MAX_PENDING as u64))
        );
        c.witnessed(MAX_PENDING as u64 + 10);
        assert_eq!(c.oldest(), None);
    }

    #[test]
    fn a_changed_digest_or_a_forged_signature_is_refused() {
        let keys = trust(&[1, 2, 3]);
        // A node relays a quorum's signatures with another set's digest.
        let mut w = signed_by(&[1, 2]);
        w.digest = Digest(78);
        let e = verify(&w, &keys).unwrap_err();
        assert!(e.contains("does not verify with the node's key"), "{e}");
        // A signature by a key that is not the trusted one for that node.
        let mut w = signed_by(&[1, 2]);
        w.signatures[1].signature = {
            let cp = Checkpoint {
                version: 9,
                head: [4; 32],
                digest: Digest(77),
                at: Timestamp::from_millis(w.signatures[1].at_ms),
            };
            Signed::sign(2, cp, &key(9)).signature
        };
        assert!(verify(&w, &keys).unwrap_err().contains("node 2"));
        // The signing time is part of what was signed.
        let mut w = signed_by(&[1, 2]);
        w.signatures[0].at_ms += 1;
        assert!(verify(&w, &keys).is_err());
    }
}
