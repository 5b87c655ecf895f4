//! Fingerprints are the only thing subscribers hold, and they are stored on disk and compared
//! across versions of recall: their encoding is a wire format, and so is the digest computed
//! from them. These tests pin both.

use recall_core::{
    Digest, Fingerprint, FingerprintSeed, Fingerprinter, Kind, MAX_VALUE_LEN, RevocationKey,
    RuleFingerprint, RuleScope, ScopeKind, Timestamp,
};
use xxhash_rust::xxh3::xxh3_64_with_seed;

const ISS: &str = "https://issuer.example";

fn default_fp() -> Fingerprinter {
    Fingerprinter::new(FingerprintSeed::default())
}

/// The encoding documented in `fingerprint.rs`, computed independently of the crate:
/// `xxh3_64(value, seed = xxh3_64(namespace, cluster seed) ^ tag * 0x9e3779b97f4a7c15)`.
fn documented(seed: u64, tag: u8, namespace: &str, value: &str) -> Fingerprint {
    let ns = xxh3_64_with_seed(namespace.as_bytes(), seed);
    let key = ns ^ u64::from(tag).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    Fingerprint(xxh3_64_with_seed(value.as_bytes(), key))
}

/// A sidecar that persisted its fingerprints under one release of recall finds the same keys
/// under the next. These values were computed once with the code and hard-coded on purpose: if
/// this test fails, the fingerprint encoding changed, which silently invalidates every persisted
/// set and every subscriber in the fleet. Change them only together with a format migration.
#[test]
fn known_answers_with_the_default_seed_never_change() {
    let fp = default_fp();
    let cases = [
        (fp.of(Kind::Token, ISS, "jti-1"), 0x3e6b_925d_9807_8f18),
        (fp.of(Kind::Session, ISS, "sid-1"), 0x59b2_45f9_24a7_b75e),
        (
            fp.of(Kind::ApiKey, ISS, &"ab".repeat(32)),
            0xa53d_df76_dd95_6643,
        ),
        (
            fp.scope_of(ScopeKind::Issuer, ISS, ""),
            0x4516_ef85_1d97_dba0,
        ),
        (
            fp.scope_of(ScopeKind::Subject, ISS, "alice"),
            0x8f3f_129e_3687_c617,
        ),
    ];
    for (i, (got, want)) in cases.into_iter().enumerate() {
        assert_eq!(got, Fingerprint(want), "known answer {i}");
    }
    let seeded = Fingerprinter::new(FingerprintSeed(0x5eed));
    assert_eq!(
        seeded.of(Kind::Token, ISS, "jti-1"),
        Fingerprint(0x77dd_2123_3273_3e0c)
    );
}

/// The fingerprint is exactly the documented encoding, so another implementation (a sidecar in
/// another language, an offline tool) can compute it from the documentation alone.
#[test]
fn fingerprints_follow_the_documented_encoding() {
    for seed in [0, 1, 0x5eed, u64::MAX] {
        let fp = Fingerprinter::new(FingerprintSeed(seed));
        for kind in Kind::ALL {
            assert_eq!(
                fp.of(kind, ISS, "value"),
                documented(seed, kind as u8, ISS, "value")
            );
        }
        for kind in ScopeKind::ALL {
            assert_eq!(
                fp.scope_of(kind, ISS, "v"),
                documented(seed, kind as u8, ISS, "v")
            );
        }
        assert_eq!(fp.of(Kind::Token, "", ""), documented(seed, 1, "", ""));
    }
}

/// Long values and namespaces (past xxh3's 240-byte short-input path) hash like the
/// documented encoding too, or long values would never match.
#[test]
fn long_inputs_hash_like_the_documented_encoding() {
    let fp = Fingerprinter::new(FingerprintSeed(42));
    let max = "n".repeat(MAX_VALUE_LEN);
    let long = "x".repeat(600);
    for (ns, value) in [
        (max.as_str(), max.as_str()),
        (ISS, long.as_str()),
        (long.as_str(), long.as_str()),
        ("", long.as_str()),
    ] {
        assert_eq!(
            fp.of(Kind::Token, ns, value),
            documented(42, Kind::Token as u8, ns, value),
            "namespace {} bytes, value {} bytes",
            ns.len(),
            value.len()
        );
    }
}

/// Moving bytes between namespace and value never yields the same fingerprint: the namespace
/// hash keeps `("ab", "c")` and `("a", "bc")` apart, so revoking one never revokes the other.
#[test]
fn namespace_and_value_boundaries_are_part_of_the_fingerprint() {
    let fp = default_fp();
    assert_ne!(fp.of(Kind::Token, "ab", "c"), fp.of(Kind::Token, "a", "bc"));
    assert_ne!(fp.of(Kind::Token, "abc", ""), fp.of(Kind::Token, "", "abc"));
    assert_ne!(
        fp.scope_of(ScopeKind::Subject, "iss", "alice"),
        fp.scope_of(ScopeKind::Subject, "issa", "lice")
    );
}

/// The same value under different kinds names different things: revoking session `x` must not
/// revoke token `x`, subject `x` or a rule scope spelled `x`.
#[test]
fn every_kind_and_scope_kind_fingerprints_differently() {
    let fp = default_fp();
    let mut all: Vec<Fingerprint> = Kind::ALL.iter().map(|k| fp.of(*k, ISS, "x")).collect();
    all.extend(ScopeKind::ALL.iter().map(|k| fp.scope_of(*k, ISS, "x")));
    let count = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), count, "two kinds share a fingerprint");
}

/// Each cluster's seed keys the hash: a fingerprint from one cluster means nothing in another,
/// and outsiders cannot precompute collisions without the seed.
#[test]
fn the_seed_changes_every_fingerprint() {
    let a = Fingerprinter::new(FingerprintSeed(1));
    let b = Fingerprinter::new(FingerprintSeed(2));
    assert_eq!(a.seed(), FingerprintSeed(1));
    for kind in Kind::ALL {
        assert_ne!(a.of(kind, ISS, "v"), b.of(kind, ISS, "v"));
    }
    let long = "y".repeat(600);
    assert_ne!(a.of(Kind::Token, ISS, &long), b.of(Kind::Token, ISS, &long));
}

/// The convenience forms agree with the typed ones, so the check path (which hashes raw claims)
/// finds what the authority stored (which hashes keys and scopes).
#[test]
fn key_and_scope_forms_agree_with_the_raw_forms() {
    let fp = Fingerprinter::new(FingerprintSeed(7));
    for kind in Kind::ALL {
        let key = RevocationKey::new(kind, ISS, "v");
        assert_eq!(fp.key(&key), fp.of(kind, ISS, "v"));
    }
    for kind in ScopeKind::ALL {
        let scope = RuleScope::new(kind, ISS, "v");
        assert_eq!(fp.scope(&scope), fp.scope_of(kind, ISS, "v"));
    }
}

/// Subscribers of one release compare their digest with the one a node of another release sends
/// after every delta; a change in the digest formula would make every subscriber of a mixed fleet
/// resync forever. Hard-coded on purpose, like the fingerprints above.
#[test]
fn digest_known_answers_never_change() {
    let fps = [0xace2_28f2_5129_a9ef, 0x3859_5694_3cf8_9133].map(Fingerprint);
    let rules = [RuleFingerprint {
        scope: Fingerprint(0xd615_14a6_5faa_503d),
        not_before: Timestamp(1_700_000_000_000),
    }];
    assert_eq!(Digest::of(&[], &[]), Digest::default());
    assert_eq!(Digest::of(&fps, &[]), Digest(0xf1c9_4c53_55de_2e34));
    assert_eq!(Digest::of(&[], &rules), Digest(0xd74c_a964_34f2_aade));
    assert_eq!(Digest::of(&fps, &rules), Digest(0xc915_f5b7_8ad0_d912));
    assert_eq!(
        Digest(0xc915_f5b7_8ad0_d912).to_string(),
        "c915f5b78ad0d912"
    );
}
