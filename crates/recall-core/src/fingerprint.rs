//! Fingerprints: a keyed xxh3 of `(kind, namespace, value)`. Subscribers hold fingerprints, never
//! raw values. A collision can only make a valid token look revoked, never the reverse, and the
//! cluster-wide seed keeps outsiders from computing collisions offline.

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::{Xxh3, xxh3_64_with_seed};

use crate::{Kind, RevocationKey, RuleScope, ScopeKind};

/// A 64-bit fingerprint of a revocation key or a rule scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fingerprint(pub u64);

/// The cluster-wide key of the fingerprint hash, chosen when a cluster is created and sent to
/// subscribers in every snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FingerprintSeed(pub u64);

/// The longest input that is hashed from a stack buffer; longer input is streamed (same result).
const INLINE: usize = 1 + 2 + 2 * crate::MAX_VALUE_LEN;

/// Computes fingerprints under one seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprinter {
    seed: FingerprintSeed,
}

impl Fingerprinter {
    /// A fingerprinter keyed by `seed`.
    pub const fn new(seed: FingerprintSeed) -> Self {
        Self { seed }
    }

    /// The seed this fingerprinter uses.
    pub const fn seed(&self) -> FingerprintSeed {
        self.seed
    }

    /// The fingerprint of a revocation key.
    pub fn key(&self, key: &RevocationKey) -> Fingerprint {
        self.raw(key.kind.tag(), &key.namespace, &key.value)
    }

    /// The fingerprint of `(kind, namespace, value)` without building a key.
    pub fn of(&self, kind: Kind, namespace: &str, value: &str) -> Fingerprint {
        self.raw(kind.tag(), namespace, value)
    }

    /// The fingerprint of a rule scope.
    pub fn scope(&self, scope: &RuleScope) -> Fingerprint {
        self.raw(scope.kind.tag(), &scope.namespace, &scope.value)
    }

    /// The fingerprint of a rule scope without building one.
    pub fn scope_of(&self, kind: ScopeKind, namespace: &str, value: &str) -> Fingerprint {
        self.raw(kind.tag(), namespace, value)
    }

    /// Hashes `tag || len(namespace) as u16 LE || namespace || value`; the length prefix keeps
    /// `("ab", "c")` and `("a", "bc")` apart.
    fn raw(&self, tag: u8, namespace: &str, value: &str) -> Fingerprint {
        let (ns, val) = (namespace.as_bytes(), value.as_bytes());
        let ns_len = u16::try_from(ns.len()).unwrap_or(u16::MAX).to_le_bytes();
        let total = 3 + ns.len() + val.len();
        if total <= INLINE {
            let mut buf = [0u8; INLINE];
            buf[0] = tag;
            buf[1..3].copy_from_slice(&ns_len);
            buf[3..3 + ns.len()].copy_from_slice(ns);
            buf[3 + ns.len()..total].copy_from_slice(val);
            Fingerprint(xxh3_64_with_seed(&buf[..total], self.seed.0))
        } else {
            let mut h = Xxh3::with_seed(self.seed.0);
            h.update(&[tag]);
            h.update(&ns_len);
            h.update(ns);
            h.update(val);
            Fingerprint(h.digest())
        }
    }
}
