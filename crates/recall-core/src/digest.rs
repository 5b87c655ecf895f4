//! The set digest: an order-independent, incremental sum (mod 2^64) of one mixed hash per entry
//! fingerprint and per rule. Adding then removing an element restores the digest exactly, so a
//! lift leaves the digest a set would have had without the revocation. Subscribers compute it
//! from what they hold (fingerprints and rule fingerprints) and compare after every delta.

use serde::{Deserialize, Serialize};

use crate::{Fingerprint, Timestamp};

/// The digest of a revocation set as its subscribers see it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Digest(pub u64);

/// A bijective 64-bit mixer (the splitmix64 finaliser): spreads structured input over all bits.
const fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The digest term of one revoked fingerprint.
const fn entry_term(fp: Fingerprint) -> u64 {
    mix(fp.0 ^ 0x5245_564f_4b45_4421)
}

/// The digest term of one rule: its scope fingerprint and its time.
const fn rule_term(scope: Fingerprint, not_before: Timestamp) -> u64 {
    mix(scope.0 ^ mix(not_before.0 as u64 ^ 0x5255_4c45_5255_4c45))
}

impl Digest {
    /// Counts a fingerprint in.
    pub fn add_entry(&mut self, fp: Fingerprint) {
        self.0 = self.0.wrapping_add(entry_term(fp));
    }

    /// Counts a fingerprint out.
    pub fn remove_entry(&mut self, fp: Fingerprint) {
        self.0 = self.0.wrapping_sub(entry_term(fp));
    }

    /// Counts a rule in.
    pub fn add_rule(&mut self, scope: Fingerprint, not_before: Timestamp) {
        self.0 = self.0.wrapping_add(rule_term(scope, not_before));
    }

    /// Counts a rule out.
    pub fn remove_rule(&mut self, scope: Fingerprint, not_before: Timestamp) {
        self.0 = self.0.wrapping_sub(rule_term(scope, not_before));
    }

    /// The digest of a whole set, computed from scratch.
    pub fn of<'a>(
        fingerprints: impl IntoIterator<Item = &'a Fingerprint>,
        rules: impl IntoIterator<Item = &'a RuleFingerprint>,
    ) -> Self {
        let mut d = Digest::default();
        fingerprints.into_iter().for_each(|fp| d.add_entry(*fp));
        rules
            .into_iter()
            .for_each(|r| d.add_rule(r.scope, r.not_before));
        d
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A rule as subscribers hold it: its scope's fingerprint and its time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RuleFingerprint {
    /// The fingerprint of the rule's scope.
    pub scope: Fingerprint,
    /// Tokens in the scope issued before this time are revoked.
    pub not_before: Timestamp,
}
