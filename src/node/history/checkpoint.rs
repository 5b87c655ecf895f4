//! Signed checkpoints: each node signs `{version, chain head, set digest, time}` with its own
//! ed25519 key, and a checkpoint signed by a quorum of the voters is *witnessed*. A node's key
//! is generated in its data directory on first start and bound to the node through the
//! replicated state (a `NodeKey` entry only that node can cause, recorded in the history);
//! offline verifiers take the keys they trust from their own copy (`recall audit keys`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use recall_core::{Digest, Timestamp};
use recall_stream::{Witness, WitnessSignature};
use serde::{Deserialize, Serialize};

/// Separates checkpoint signatures from every other use of a node's key.
const DOMAIN: &[u8] = b"recall checkpoint v1";

/// The file of a node's signing key in its data directory.
pub const KEY_FILE: &str = "checkpoint-ed25519.key";

/// What a node vouches for: the end of the history it holds and the set it reached there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The version of the last audit record.
    pub version: u64,
    /// That record's hash (the chain head).
    pub head: [u8; 32],
    /// The set digest right after that record's entry was applied.
    pub digest: Digest,
    /// When the node signed (its own clock; not part of what a quorum agrees on).
    pub at: Timestamp,
}

impl Checkpoint {
    /// The bytes signed: the domain tag, then every field in a fixed little-endian layout.
    pub fn message(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(DOMAIN.len() + 56);
        m.extend_from_slice(DOMAIN);
        m.extend_from_slice(&self.version.to_le_bytes());
        m.extend_from_slice(&self.head);
        m.extend_from_slice(&self.digest.0.to_le_bytes());
        m.extend_from_slice(&self.at.as_millis().to_le_bytes());
        m
    }

    /// What a quorum must agree on.
    pub fn claim(&self) -> (u64, [u8; 32], Digest) {
        (self.version, self.head, self.digest)
    }
}

/// One node's signature on a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed {
    /// The signing node.
    pub node: u64,
    /// What it signed.
    pub checkpoint: Checkpoint,
    /// The ed25519 signature of [`Checkpoint::message`] (64 bytes).
    pub signature: Vec<u8>,
}

impl Signed {
    /// `node` signs `checkpoint` with `key`.
    pub fn sign(node: u64, checkpoint: Checkpoint, key: &SigningKey) -> Self {
        Self {
            node,
            checkpoint,
            signature: key.sign(&checkpoint.message()).to_bytes().to_vec(),
        }
    }

    /// Checks the signature against `key` (strict verification: no malleable signatures).
    pub fn verify(&self, key: &[u8; 32]) -> Result<(), String> {
        let key = VerifyingKey::from_bytes(key).map_err(|e| format!("not an ed25519 key: {e}"))?;
        let sig: [u8; 64] = self
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| format!("a signature has 64 bytes, not {}", self.signature.len()))?;
        key.verify_strict(
            &self.checkpoint.message(),
            &ed25519_dalek::Signature::from_bytes(&sig),
        )
        .map_err(|_| "the signature does not verify with the node's key".to_string())
    }
}

/// A checkpoint signed by a quorum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Witnessed {
    /// The version.
    pub version: u64,
    /// The chain head there.
    pub head: [u8; 32],
    /// The set digest there.
    pub digest: Digest,
    /// The signatures, one per node.
    pub signatures: Vec<Signed>,
}

impl Witnessed {
    /// The checkpoint as heartbeats carry it to subscribers.
    pub fn to_stream(&self) -> Witness {
        Witness {
            version: self.version,
            head: self.head,
            digest: self.digest,
            signatures: self
                .signatures
                .iter()
                .map(|s| WitnessSignature {
                    node: s.node,
                    at_ms: s.checkpoint.at.as_millis(),
                    signature: s.signature.clone(),
                })
                .collect(),
        }
    }

    /// A checkpoint a heartbeat carried, each signature on the checkpoint with its signer's
    /// time (what the signer signed).
    pub fn from_stream(w: &Witness) -> Self {
        Self {
            version: w.version,
            head: w.head,
            digest: w.digest,
            signatures: w
                .signatures
                .iter()
                .map(|s| Signed {
                    node: s.node,
                    checkpoint: Checkpoint {
                        version: w.version,
                        head: w.head,
                        digest: w.digest,
                        at: Timestamp::from_millis(s.at_ms),
                    },
                    signature: s.signature.clone(),
                })
                .collect(),
        }
    }

    /// Checks the checkpoint against the `trust`ed node keys, with no server: every signature
    /// by a trusted node verifies and is on this very checkpoint, and a majority of the trusted
    /// keys signed. The trusted signers, or why not.
    pub fn verify_quorum(&self, trust: &BTreeMap<u64, [u8; 32]>) -> Result<BTreeSet<u64>, String> {
        let quorum = trust.len() / 2 + 1;
        let mut signers = BTreeSet::new();
        for s in &self.signatures {
            let Some(key) = trust.get(&s.node) else {
                continue;
            };
            s.verify(key).map_err(|e| {
                format!(
                    "the signature of node {} on the checkpoint at version {}: {e}",
                    s.node, self.version
                )
            })?;
            if s.checkpoint.claim() != (self.version, self.head, self.digest) {
                return Err(format!(
                    "node {} signed another checkpoint than the one it is listed under",
                    s.node
                ));
            }
            signers.insert(s.node);
        }
        if signers.len() < quorum {
            return Err(format!(
                "the checkpoint at version {} carries {} signatures of trusted nodes; a quorum \
                 of the {} trusted keys is {quorum}",
                self.version,
                signers.len(),
                trust.len()
            ));
        }
        Ok(signers)
    }
}

/// A node whose signed checkpoint differs from what a quorum signed at the same version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disagreement {
    /// The node.
    pub node: u64,
    /// The version.
    pub version: u64,
    /// The head it signed.
    pub head: [u8; 32],
}

/// What applying one node's signature did.
#[derive(Debug, PartialEq, Eq)]
pub enum Accepted {
    /// Counted; no quorum yet.
    Counted,
    /// This signature completed a quorum.
    Witnessed(Witnessed),
}

/// The replicated checkpoint state: node keys, signatures waiting for a quorum, the latest
/// witnessed checkpoint, and the nodes that disagreed with a quorum.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Witnesses {
    /// Each node's checkpoint key.
    pub keys: BTreeMap<u64, [u8; 32]>,
    /// Signatures by version, for versions after the latest witnessed one.
    pub gathering: BTreeMap<u64, BTreeMap<u64, Signed>>,
    /// The latest witnessed checkpoint.
    pub witnessed: Option<Witnessed>,
    /// The latest disagreement of each node.
    pub disagreements: BTreeMap<u64, Disagreement>,
}

/// The most versions signatures are gathered for at once (older ones are dropped first).
const MAX_GATHERING: usize = 64;

impl Witnesses {
    /// Counts `signed` (its signature checked against the node's bound key) towards a quorum
    /// of `voters`.
    pub fn accept(&mut self, signed: Signed, voters: &BTreeSet<u64>) -> Result<Accepted, String> {
        let Some(key) = self.keys.get(&signed.node) else {
            return Err(format!("node {} has no checkpoint key bound", signed.node));
        };
        signed.verify(key)?;
        let version = signed.checkpoint.version;
        if let Some(w) = &self.witnessed
            && version <= w.version
        {
            if version == w.version
                && (signed.checkpoint.head, signed.checkpoint.digest) != (w.head, w.digest)
            {
                self.disagree(&signed);
            }
            return Ok(Accepted::Counted);
        }
        let at = self.gathering.entry(version).or_default();
        at.insert(signed.node, signed);
        let quorum = voters.len() / 2 + 1;
        let mut claims: BTreeMap<([u8; 32], u64), Vec<&Signed>> = BTreeMap::new();
        for s in at.values().filter(|s| voters.contains(&s.node)) {
            claims
                .entry((s.checkpoint.head, s.checkpoint.digest.0))
                .or_default()
                .push(s);
        }
        let agreed = claims
            .iter()
            .find(|(_, v)| v.len() >= quorum)
            .map(|(k, v)| (*k, v.iter().map(|s| (*s).clone()).collect::<Vec<_>>()));
        let Some(((head, digest), signatures)) = agreed else {
            while self.gathering.len() > MAX_GATHERING {
                self.gathering.pop_first();
            }
            return Ok(Accepted::Counted);
        };
        let dissent: Vec<Signed> = at
            .values()
            .filter(|s| s.checkpoint.head != head || s.checkpoint.digest.0 != digest)
            .cloned()
            .collect();
        let w = Witnessed {
            version,
            head,
            digest: Digest(digest),
            signatures,
        };
        self.witnessed = Some(w.clone());
        self.gathering = self.gathering.split_off(&(version + 1));
        for s in &dissent {
            self.disagree(s);
        }
        Ok(Accepted::Witnessed(w))
    }

    fn disagree(&mut self, s: &Signed) {
        self.disagreements.insert(
            s.node,
            Disagreement {
                node: s.node,
                version: s.checkpoint.version,
                head: s.checkpoint.head,
            },
        );
    }
}

/// The node's signing key: read from `dir`, or generated there (mode 0600) on first start.
pub fn load_or_create_key(dir: &Path) -> anyhow::Result<SigningKey> {
    use anyhow::Context;
    let path = dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let bytes = hex::decode(text.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .with_context(|| {
                    format!(
                        "{} is not a 32-byte hex ed25519 key: restore it from a backup, or \
                         delete it to make a new one (the node binds the new key on start)",
                        path.display()
                    )
                })?;
            Ok(SigningKey::from_bytes(&bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let key = SigningKey::from_bytes(&rand::random());
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            use std::io::Write;
            let mut f = opts
                .open(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            writeln!(f, "{}", hex::encode(key.to_bytes()))
                .with_context(|| format!("writing {}", path.display()))?;
            f.sync_all().ok();
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(version: u64, head: u8) -> Checkpoint {
        Checkpoint {
            version,
            head: [head; 32],
            digest: Digest(7),
            at: Timestamp(1),
        }
    }

    #[test]
    fn a_quorum_of_valid_signatures_witnesses_and_a_dissenter_is_named() {
        let keys: Vec<SigningKey> = (1..=3u8)
            .map(|i| SigningKey::from_bytes(&[i; 32]))
            .collect();
        let mut w = Witnesses::default();
        for (i, k) in keys.iter().enumerate() {
            w.keys.insert(i as u64 + 1, k.verifying_key().to_bytes());
        }
        let voters: BTreeSet<u64> = [1, 2, 3].into();
        let forged = Signed {
            signature: vec![0; 64],
            ..Signed::sign(1, cp(5, 9), &keys[0])
        };
        assert!(w.accept(forged, &voters).is_err());
        assert_eq!(
            w.accept(Signed::sign(3, cp(5, 6), &keys[2]), &voters),
            Ok(Accepted::Counted)
        );
        assert_eq!(
            w.accept(Signed::sign(1, cp(5, 9), &keys[0]), &voters),
            Ok(Accepted::Counted)
        );
        let Ok(Accepted::Witnessed(got)) = w.accept(Signed::sign(2, cp(5, 9), &keys[1]), &voters)
        else {
            panic!("a quorum of two out of three");
        };
        assert_eq!(
            (got.version, got.head, got.signatures.len()),
            (5, [9; 32], 2)
        );
        assert_eq!(w.disagreements[&3].head, [6; 32]);
        assert!(w.gathering.is_empty());
    }
}
