//! Fingerprints: a keyed xxh3 of `(kind, namespace, value)`. Subscribers hold fingerprints, never
//! raw values. A collision can only make a valid token look revoked, never the reverse, and the
//! cluster-wide seed keeps outsiders from computing collisions offline.

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::{Kind, RevocationKey, RuleScope, ScopeKind};

/// A 64-bit fingerprint of a revocation key or a rule scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fingerprint(pub u64);

/// A second keyed hash of a revocation key, independent of its fingerprint. With the
/// fingerprint it is the key's 128-bit identity on the authority, which keeps no key in memory:
/// two keys sharing a fingerprint (about one pair in 2^64) are told apart by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyCheck(pub u64);

/// What keys the check hash apart from the fingerprint hash.
const CHECK_SALT: u64 = 0x5851_f42d_4c95_7f2d;

/// The cluster-wide key of the fingerprint hash, chosen when a cluster is created and sent to
/// subscribers in every snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FingerprintSeed(pub u64);

/// Spreads a kind's tag over the 64 bits it is mixed into (the golden-ratio constant).
const TAG_SPREAD: u64 = 0x9e37_79b9_7f4a_7c15;

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

    /// The check hash of a revocation key (see [`KeyCheck`]): the same construction as the
    /// fingerprint under a differently derived key.
    pub fn check(&self, key: &RevocationKey) -> KeyCheck {
        let ns = xxh3_64_with_seed(key.namespace.as_bytes(), self.seed.0 ^ CHECK_SALT);
        let seed = (ns ^ u64::from(key.kind.tag()).wrapping_mul(TAG_SPREAD)).rotate_left(29);
        KeyCheck(xxh3_64_with_seed(key.value.as_bytes(), seed))
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

    /// The namespace part of every fingerprint in `namespace`: hash it once, then fingerprint
    /// any number of values in it (a token check hashes its issuer once for all its facts).
    #[inline]
    pub fn namespace(&self, namespace: &str) -> NamespaceHasher {
        NamespaceHasher(xxh3_64_with_seed(namespace.as_bytes(), self.seed.0))
    }

    #[inline]
    fn raw(&self, tag: u8, namespace: &str, value: &str) -> Fingerprint {
        self.namespace(namespace).raw(tag, value)
    }
}

/// Fingerprints values of one namespace (see [`Fingerprinter::namespace`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NamespaceHasher(u64);

impl NamespaceHasher {
    /// The fingerprint of `(kind, this namespace, value)`.
    #[inline]
    pub fn of(&self, kind: Kind, value: &str) -> Fingerprint {
        self.raw(kind.tag(), value)
    }

    /// The fingerprint of the rule scope `(kind, this namespace, value)`.
    #[inline]
    pub fn scope_of(&self, kind: ScopeKind, value: &str) -> Fingerprint {
        self.raw(kind.tag(), value)
    }

    /// `xxh3_64(value, seed = xxh3_64(namespace, cluster seed) ^ tag * TAG_SPREAD)`: the value
    /// is hashed in place (no copy into a buffer, which stalls the loads that follow it), and
    /// the namespace and kind key the hash, so `("ab", "c")` and `("a", "bc")` stay apart.
    #[inline]
    fn raw(&self, tag: u8, value: &str) -> Fingerprint {
        let seed = self.0 ^ u64::from(tag).wrapping_mul(TAG_SPREAD);
        Fingerprint(xxh3_64_with_seed(value.as_bytes(), seed))
    }
}
