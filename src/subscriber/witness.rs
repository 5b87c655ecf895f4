//! Checking a checkpoint a node relays against the node keys this subscriber trusts, with the
//! same rules as offline verification (`recall audit verify --trust`).

use std::collections::BTreeMap;

use recall_stream::Witness;

use crate::node::history::checkpoint::Witnessed;

/// Whether a quorum of the `trusted` keys signed `w`, every trusted signature verifying; why
/// not.
pub fn verify(w: &Witness, trusted: &BTreeMap<u64, [u8; 32]>) -> Result<(), String> {
    Witnessed::from_stream(w).verify_quorum(trusted).map(|_| ())
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
