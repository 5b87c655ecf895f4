//! The rules a state holds, by scope fingerprint. Scope fingerprints are uniform keyed hashes
//! already (xxh3 under the cluster's seed), so the map hashes them with the identity instead of
//! SipHash: a token check looks up to five scopes, and SipHash was most of their cost. Choosing
//! scopes that collide needs the cluster's seed and an operator's right to add rules.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use recall_core::{Fingerprint, Timestamp};

/// Rules by scope fingerprint: the `not_before` of each.
pub(crate) type Rules = HashMap<Fingerprint, Timestamp, BuildHasherDefault<FingerprintHasher>>;

/// A hasher that passes a fingerprint's 64 bits through unchanged.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    #[inline]
    fn write_u64(&mut self, x: u64) {
        self.0 = x;
    }

    /// Not reached by a `Fingerprint` (it hashes as one `u64`); folds the bytes so that any
    /// other key still hashes to something.
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn a_fingerprint_hashes_to_itself() {
        let build = BuildHasherDefault::<FingerprintHasher>::default();
        let hash = build.hash_one(Fingerprint(0xdead_beef_1234_5678));
        assert_eq!(hash, 0xdead_beef_1234_5678);
    }

    #[test]
    fn rules_map_finds_what_it_holds() {
        let mut rules = Rules::default();
        for i in 0..1000u64 {
            rules.insert(
                Fingerprint(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                Timestamp(i as i64),
            );
        }
        for i in 0..1000u64 {
            let scope = Fingerprint(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            assert_eq!(rules.get(&scope), Some(&Timestamp(i as i64)));
        }
        assert_eq!(rules.get(&Fingerprint(1)), None);
    }
}
