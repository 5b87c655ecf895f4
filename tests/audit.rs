//! The audit chain (`recall::node::audit`): an untouched history verifies, and any edit,
//! deletion or reordering is reported at the first version that no longer holds, with what is
//! wrong with it.

use recall::node::audit::{AuditRecord, GENESIS, verify};
use recall_core::{
    Command, Kind, Meta, Revocation, RevocationKey, Rule, RuleScope, ScopeKind, Timestamp,
};

fn meta(actor: &str) -> Meta {
    Meta {
        at: Timestamp::from_millis(1_700_000_000_000),
        actor: actor.into(),
        on_behalf_of: String::new(),
        reason: "leaked in a ticket".into(),
    }
}

/// Five commands of every kind at versions 3, 5, 7, 9 and 11, chained from the genesis.
fn history() -> Vec<AuditRecord> {
    let key = RevocationKey::new(Kind::Token, "https://idp.example", "jti-1");
    let scope = RuleScope::new(ScopeKind::Subject, "https://idp.example", "bob");
    let commands = [
        Command::Revoke {
            meta: meta("alice"),
            items: vec![Revocation {
                key: key.clone(),
                expires_at: Some(Timestamp::from_secs(1_800_000_000)),
            }],
        },
        Command::AddRule {
            meta: meta("alice"),
            rule: Rule {
                scope: scope.clone(),
                not_before: Timestamp::from_secs(1_700_000_000),
                expires_at: None,
            },
        },
        Command::Lift {
            meta: meta("bob"),
            keys: vec![key],
            rules: vec![],
        },
        Command::Prune {
            now: Timestamp::from_secs(1_900_000_000),
        },
        Command::Lift {
            meta: meta("carol"),
            keys: vec![],
            rules: vec![scope],
        },
    ];
    let mut prev = GENESIS;
    commands
        .iter()
        .zip((3..).step_by(2))
        .map(|(cmd, version)| {
            let record = AuditRecord::next(&prev, version, cmd);
            prev = record.hash;
            record
        })
        .collect()
}

#[test]
fn an_untouched_history_verifies() {
    let records = history();
    let verified = verify(records.clone()).expect("verifies");
    assert_eq!(verified.records, 5);
    assert_eq!(verified.last_version, 11);
    assert_eq!(verified.head, records[4].hash);
    assert_eq!(records[3].actor, "recall");
    assert_eq!(records[3].reason, "expiry");
    assert_eq!(records[0].summary, "revoke token:https://idp.example/jti-1");
}

#[test]
fn records_are_deterministic() {
    assert_eq!(history(), history());
}

#[test]
fn a_changed_actor_is_named() {
    let mut records = history();
    records[1].actor = "mallory".into();
    let broken = verify(records).unwrap_err();
    assert_eq!(broken.version, 5);
    assert_eq!(broken.reason, "record hash does not match its content");
}

#[test]
fn a_changed_reason_is_named() {
    let mut records = history();
    records[4].reason.clear();
    let broken = verify(records).unwrap_err();
    assert_eq!(broken.version, 11);
    assert_eq!(broken.reason, "record hash does not match its content");
}

#[test]
fn a_changed_hash_is_named() {
    let mut records = history();
    records[2].hash[0] ^= 1;
    let broken = verify(records).unwrap_err();
    assert_eq!(broken.version, 7);
    assert_eq!(broken.reason, "record hash does not match its content");
}

#[test]
fn a_deleted_record_is_named_at_the_next_one() {
    let mut records = history();
    records.remove(2);
    let broken = verify(records).unwrap_err();
    assert_eq!(broken.version, 9);
    assert_eq!(broken.reason, "prev does not match the hash of version 5");

    // Deleting the first record leaves a chain that does not start at the genesis.
    let mut records = history();
    records.remove(0);
    let broken = verify(records).unwrap_err();
    assert_eq!(broken.version, 5);
    assert!(broken.reason.contains("genesis"), "{broken}");
}

#[test]
fn reordered_records_are_named() {
    let mut records = history();
    records.swap(1, 2);
    let broken = verify(records).unwrap_err();
    assert_eq!(broken.version, 7);
    assert_eq!(broken.reason, "prev does not match the hash of version 3");
}

#[test]
fn a_forged_and_rehashed_record_breaks_the_next_link() {
    let mut records = history();
    records[0].actor = "mallory".into();
    records[0].hash = records[0].content_hash();
    let broken = verify(records).unwrap_err();
    assert_eq!(broken.version, 5);
    assert_eq!(broken.reason, "prev does not match the hash of version 3");
    assert_eq!(
        broken.to_string(),
        "the audit chain is broken at version 5: prev does not match the hash of version 3"
    );
}
