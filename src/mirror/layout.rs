//! Where the mirror keeps the set in Redis: the key names and the change messages that readers
//! rely on (docs/mirror.md documents them for readers). Names only: nothing here talks to Redis.
//!
//! With the default prefix `recall`:
//! - `recall:rev:<fingerprint>`: one string key per revoked fingerprint (16 lowercase hex
//!   digits); its value is the expiry in unix milliseconds (`0`: until lifted), and it expires
//!   at that time plus the mirror's grace (no TTL when it has no expiry);
//! - `recall:rules`: a hash of not-before rules, scope fingerprint → `not_before_ms`;
//! - `recall:mirror`: a hash of what the mirror applied: `version`, `last_change`, `digest`,
//!   `seed` (hex: readers fingerprint with it), `state` (`ready` or `filling`), `refills`,
//!   `updated_ms`;
//! - `recall:changes`: the pub/sub channel, one message per change.

use recall_core::Fingerprint;

/// The names under one prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    prefix: String,
}

/// The mirror's state fields in the meta hash.
pub mod field {
    /// The version (Raft log index) the Redis contents are current as of.
    pub const VERSION: &str = "version";
    /// The version of the last change applied.
    pub const LAST_CHANGE: &str = "last_change";
    /// The set digest as of `version`, 16 hex digits.
    pub const DIGEST: &str = "digest";
    /// The cluster's fingerprint seed, 16 hex digits.
    pub const SEED: &str = "seed";
    /// `ready`, or `filling` while a refill from a snapshot is under way.
    pub const STATE: &str = "state";
    /// How many refills from a snapshot this Redis has had.
    pub const REFILLS: &str = "refills";
    /// Unix milliseconds of the mirror's last write.
    pub const UPDATED_MS: &str = "updated_ms";
}

impl Layout {
    /// The names under `prefix` (`recall` by default).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key of one revoked fingerprint.
    pub fn entry(&self, fp: Fingerprint) -> String {
        format!("{}:rev:{}", self.prefix, hex(fp.0))
    }

    /// The pattern every entry key matches (for SCAN).
    pub fn entry_pattern(&self) -> String {
        format!("{}:rev:*", self.prefix)
    }

    /// The fingerprint an entry key names, if it is one.
    pub fn entry_fingerprint(&self, key: &str) -> Option<Fingerprint> {
        let hex = key.strip_prefix(&self.prefix)?.strip_prefix(":rev:")?;
        (hex.len() == 16)
            .then(|| u64::from_str_radix(hex, 16).ok())
            .flatten()
            .map(Fingerprint)
    }

    /// The hash of rules.
    pub fn rules(&self) -> String {
        format!("{}:rules", self.prefix)
    }

    /// The hash of the mirror's state.
    pub fn meta(&self) -> String {
        format!("{}:mirror", self.prefix)
    }

    /// The pub/sub channel of changes.
    pub fn channel(&self) -> String {
        format!("{}:changes", self.prefix)
    }
}

/// A fingerprint, scope fingerprint, digest or seed as the layout writes it: 16 lowercase hex
/// digits.
pub fn hex(x: u64) -> String {
    format!("{x:016x}")
}

/// One message on the changes channel. Each is `<version> <what> ...`, space-separated:
/// `rev+ <fingerprint> <expires_at_ms>` (revoked, or its expiry moved later; 0: none),
/// `rev- <fingerprint>` (lifted or pruned), `rule+ <scope> <not_before_ms>`, `rule- <scope>`, and
/// `refill` when a snapshot replaced everything (re-read the keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// A fingerprint revoked, or its expiry moved later.
    Revoked(Fingerprint, i64),
    /// A fingerprint no longer revoked.
    Lifted(Fingerprint),
    /// A rule set or moved later.
    RuleSet(Fingerprint, i64),
    /// A rule gone.
    RuleRemoved(Fingerprint),
    /// The whole set was replaced from a snapshot.
    Refill,
}

impl Change {
    /// The message published for this change at `version`.
    pub fn message(&self, version: u64) -> String {
        match self {
            Change::Revoked(fp, ms) => format!("{version} rev+ {} {ms}", hex(fp.0)),
            Change::Lifted(fp) => format!("{version} rev- {}", hex(fp.0)),
            Change::RuleSet(fp, ms) => format!("{version} rule+ {} {ms}", hex(fp.0)),
            Change::RuleRemoved(fp) => format!("{version} rule- {}", hex(fp.0)),
            Change::Refill => format!("{version} refill"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_keys_round_trip_to_their_fingerprint() {
        let l = Layout::new("recall");
        let fp = Fingerprint(0x00ab_cdef_0123_4567);
        assert_eq!(l.entry(fp), "recall:rev:00abcdef01234567");
        assert_eq!(l.entry_fingerprint(&l.entry(fp)), Some(fp));
        assert_eq!(l.entry_fingerprint("recall:rules"), None);
        assert_eq!(l.entry_fingerprint("recall:rev:xyz"), None);
        assert_eq!(l.entry_fingerprint("other:rev:00abcdef01234567"), None);
    }

    /// The fingerprint recipe docs/mirror.md gives readers, written out with plain xxh3: it
    /// must keep giving the cluster's fingerprints.
    #[test]
    fn the_documented_fingerprint_recipe_matches_the_cluster() {
        use recall_core::{FingerprintSeed, Fingerprinter, Kind, ScopeKind};
        use xxhash_rust::xxh3::xxh3_64_with_seed;
        let seed = 0x1234_5678_9abc_def0;
        let doc = |tag: u64, namespace: &str, value: &str| {
            let ns = xxh3_64_with_seed(namespace.as_bytes(), seed);
            let mixed = ns ^ tag.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            Fingerprint(xxh3_64_with_seed(value.as_bytes(), mixed))
        };
        let fp = Fingerprinter::new(FingerprintSeed(seed));
        for (tag, kind) in [(1, Kind::Token), (2, Kind::Session), (4, Kind::Subject)] {
            assert_eq!(
                doc(tag, "https://iss", "v"),
                fp.of(kind, "https://iss", "v")
            );
        }
        assert_eq!(
            doc(18, "https://iss", "alice"),
            fp.scope_of(ScopeKind::Subject, "https://iss", "alice")
        );
        assert_eq!(
            doc(16, "https://iss", ""),
            fp.scope_of(ScopeKind::Issuer, "https://iss", "")
        );
    }

    #[test]
    fn messages_name_the_version_and_the_change() {
        let fp = Fingerprint(1);
        assert_eq!(
            Change::Revoked(fp, 5).message(9),
            "9 rev+ 0000000000000001 5"
        );
        assert_eq!(Change::Lifted(fp).message(9), "9 rev- 0000000000000001");
        assert_eq!(Change::Refill.message(10), "10 refill");
    }
}
