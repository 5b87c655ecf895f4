//! Expiries on deltas: every added fingerprint carries its expiry, and a re-revocation that moves a
//! revoked fingerprint's expiry later is a change of its own, so a subscriber that keeps TTLs (the
//! Redis mirror) never lets a key lapse while the authority still holds it.

use recall_core::{
    Command, Delta, Expiry, FingerprintSeed, Kind, Meta, Revocation, RevocationKey, RevocationSet,
    Timestamp,
};

const ISS: &str = "https://sso.example";

fn revoke(set: &mut RevocationSet, items: &[(&str, Option<i64>)]) -> Option<Delta> {
    let cmd = Command::Revoke {
        meta: Meta {
            at: Timestamp::from_secs(1_700_000_000),
            actor: "ops".into(),
            on_behalf_of: String::new(),
            reason: String::new(),
        },
        items: items
            .iter()
            .map(|(jti, exp)| Revocation {
                key: RevocationKey::new(Kind::Token, ISS, *jti),
                expires_at: exp.map(Timestamp::from_secs),
            })
            .collect(),
    };
    let version = set.version() + 1;
    set.apply(version, &cmd).expect("in order").delta
}

fn expiry(set: &RevocationSet, jti: &str, at: Option<i64>) -> Expiry {
    Expiry {
        fingerprint: set.fingerprinter().of(Kind::Token, ISS, jti),
        at: at.map(Timestamp::from_secs),
    }
}

#[test]
fn every_added_fingerprint_carries_its_expiry() {
    let mut set = RevocationSet::new(FingerprintSeed(3));
    let d = revoke(&mut set, &[("a", Some(2_000_000_000)), ("b", None)]).expect("a change");
    assert_eq!(d.added.len(), 2);
    assert_eq!(
        d.expiries,
        vec![
            expiry(&set, "a", Some(2_000_000_000)),
            expiry(&set, "b", None)
        ]
    );
    let fps = d.added.clone();
    assert_eq!(
        set.expiries(&fps),
        vec![Some(Timestamp::from_secs(2_000_000_000)), None]
    );
}

#[test]
fn a_later_expiry_is_a_change_and_an_earlier_or_equal_one_is_not() {
    let mut set = RevocationSet::new(FingerprintSeed(3));
    revoke(&mut set, &[("a", Some(2_000_000_000))]).expect("a change");
    let digest = set.digest();
    assert_eq!(revoke(&mut set, &[("a", Some(1_900_000_000))]), None);
    assert_eq!(revoke(&mut set, &[("a", Some(2_000_000_000))]), None);

    let later = revoke(&mut set, &[("a", Some(2_100_000_000))]).expect("a later expiry");
    assert!(later.added.is_empty() && later.removed.is_empty());
    assert_eq!(later.expiries, vec![expiry(&set, "a", Some(2_100_000_000))]);
    assert_eq!(later.digest, digest, "expiries are not part of the digest");

    let forever = revoke(&mut set, &[("a", None)]).expect("no expiry is later than any");
    assert_eq!(forever.expiries, vec![expiry(&set, "a", None)]);
    assert_eq!(revoke(&mut set, &[("a", Some(2_200_000_000))]), None);
}
