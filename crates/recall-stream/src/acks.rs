//! Which acks count: the versions a stream has sent, each with the node's digest at that version.
//! An ack is recorded only for a version this stream sent (a snapshot, a delta or a heartbeat)
//! and only with the digest the node had there; anything else is refused or ignored, so a
//! subscriber can never be counted as having applied what it was not sent, or a wrong state.

use std::collections::BTreeMap;

use recall_core::Digest;

/// The versions sent on one stream, and the node's digest at each.
///
/// Invariant: every version sent at or above `floor` is a key of `digests`. Versions below
/// `floor` were sent before a resync or before an ack that counted, and are forgotten.
#[derive(Debug, Default)]
pub struct Sent {
    floor: u64,
    digests: BTreeMap<u64, Digest>,
}

/// What to make of an ack.
#[derive(Debug, PartialEq, Eq)]
pub enum AckCheck {
    /// A version sent, with the node's digest there: record it.
    Matches,
    /// A version sent, with another digest: do not record it; resync the subscriber.
    DigestDiffers {
        /// The node's digest at that version.
        expected: Digest,
    },
    /// A version this stream has moved past (before a resync or a later ack that counted):
    /// ignore it.
    Stale,
    /// A version never sent on this stream: a protocol error.
    NeverSent,
}

impl Sent {
    /// Forgets everything: nothing below `floor` is in play any more (a stream that starts at
    /// a version, or a snapshot that replaces everything before it).
    pub fn restart(&mut self, floor: u64) {
        self.floor = floor;
        self.digests.clear();
    }

    /// Records that `version` was sent with the node's `digest`. Versions are sent in
    /// non-decreasing order, so one below the floor can only be the stream's starting version.
    pub fn insert(&mut self, version: u64, digest: Digest) {
        self.floor = self.floor.min(version);
        self.digests.insert(version, digest);
    }

    /// Checks an ack of `version` with `digest`, `last_sent` being the highest version sent;
    /// one that matches also forgets the versions below it (acks never go down).
    pub fn check(&mut self, version: u64, digest: Digest, last_sent: u64) -> AckCheck {
        if version > last_sent {
            return AckCheck::NeverSent;
        }
        if version < self.floor {
            return AckCheck::Stale;
        }
        match self.digests.get(&version) {
            None => AckCheck::NeverSent,
            Some(expected) if *expected != digest => AckCheck::DigestDiffers {
                expected: *expected,
            },
            Some(_) => {
                self.digests = self.digests.split_off(&version);
                self.floor = version;
                AckCheck::Matches
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(versions: &[(u64, u64)]) -> Sent {
        let mut s = Sent::default();
        s.restart(versions[0].0);
        for (v, d) in versions {
            s.insert(*v, Digest(*d));
        }
        s
    }

    #[test]
    fn an_ack_counts_only_for_a_version_sent_with_its_digest() {
        let mut s = sent(&[(5, 50), (7, 70), (9, 90)]);
        assert_eq!(s.check(7, Digest(70), 9), AckCheck::Matches);
        assert_eq!(
            s.check(9, Digest(91), 9),
            AckCheck::DigestDiffers {
                expected: Digest(90)
            }
        );
        assert_eq!(s.check(8, Digest(70), 9), AckCheck::NeverSent);
        assert_eq!(s.check(10, Digest(90), 9), AckCheck::NeverSent);
        assert_eq!(s.check(5, Digest(50), 9), AckCheck::Stale);
        assert_eq!(s.check(9, Digest(90), 9), AckCheck::Matches);
    }

    #[test]
    fn a_resumed_stream_counts_nothing_before_what_it_sends() {
        let mut s = Sent::default();
        s.restart(4);
        assert_eq!(s.check(3, Digest(0), 4), AckCheck::Stale);
        s.insert(6, Digest(60));
        assert_eq!(s.check(5, Digest(0), 6), AckCheck::NeverSent);
        assert_eq!(s.check(6, Digest(60), 6), AckCheck::Matches);
    }

    #[test]
    fn a_heartbeat_at_the_starting_version_can_be_acked() {
        let mut s = Sent::default();
        s.restart(5);
        s.insert(4, Digest(40));
        assert_eq!(s.check(4, Digest(40), 4), AckCheck::Matches);
    }

    #[test]
    fn a_snapshot_forgets_what_was_sent_before_it() {
        let mut s = sent(&[(3, 30), (4, 40)]);
        s.restart(8);
        s.insert(8, Digest(80));
        assert_eq!(s.check(4, Digest(40), 8), AckCheck::Stale);
        assert_eq!(s.check(8, Digest(80), 8), AckCheck::Matches);
    }
}
