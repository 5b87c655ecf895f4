//! What the mirror knows of the set it keeps in Redis, and how a delta turns into changes: the
//! version chain and the digest are checked here, with no I/O, before anything is written. The
//! entries themselves live only in Redis; the rules (a few) are held here too, because a rule
//! moved later takes its old time out of the digest.

use std::collections::{HashMap, HashSet};

use recall_core::{Delta, Digest, Fingerprint, FingerprintSeed, Timestamp};

use super::layout::Change;

/// The state the mirror resumes from: what Redis's meta hash and rules hash say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MirrorState {
    /// The version the Redis contents are current as of (0: nothing, refill first).
    pub version: u64,
    /// The version of the last change applied.
    pub last_change: u64,
    /// The digest as of `version`.
    pub digest: Digest,
    /// The cluster's fingerprint seed (0 before the first fill).
    pub seed: FingerprintSeed,
    /// Every rule: scope fingerprint → not-before time.
    pub rules: HashMap<Fingerprint, Timestamp>,
}

/// A delta that cannot follow the state: the mirror reconnects (after a gap) or refills (after a
/// digest mismatch), never guesses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The delta does not follow the last change applied.
    #[error(
        "delta {version} follows version {prev_version}, but the last change applied is {last_change}"
    )]
    Gap {
        /// The delta's version.
        version: u64,
        /// The version it follows.
        prev_version: u64,
        /// The mirror's last change.
        last_change: u64,
    },
    /// Applying the delta gives another digest than the node's.
    #[error("after delta {version} the digest is {computed}, the node's is {expected}")]
    DigestMismatch {
        /// The delta's version.
        version: u64,
        /// What the mirror computed.
        computed: Digest,
        /// What the node sent.
        expected: Digest,
    },
}

impl MirrorState {
    /// Checks `d` against the state and, if it follows, moves the state past it; the changes to
    /// write, in order. On refusal the state is unchanged.
    pub fn apply(&mut self, d: &Delta) -> Result<Vec<Change>, Refused> {
        if d.prev_version != self.last_change || d.version <= self.version {
            return Err(Refused::Gap {
                version: d.version,
                prev_version: d.prev_version,
                last_change: self.last_change,
            });
        }
        let mut digest = self.digest;
        let mut rules = self.rules.clone();
        let mut out = Vec::with_capacity(d.len() + d.expiries.len());
        for &fp in &d.removed {
            digest.remove_entry(fp);
            out.push(Change::Lifted(fp));
        }
        // The latest expiry of each fingerprint the delta names (a later one supersedes).
        let expiry: HashMap<Fingerprint, i64> = d
            .expiries
            .iter()
            .map(|e| (e.fingerprint, e.at.map_or(0, Timestamp::as_millis)))
            .collect();
        for &fp in &d.added {
            digest.add_entry(fp);
            out.push(Change::Revoked(fp, expiry.get(&fp).copied().unwrap_or(0)));
        }
        // Fingerprints already revoked whose expiry moved later.
        if d.expiries.len() > d.added.len() || expiry.len() < d.expiries.len() {
            let added: HashSet<Fingerprint> = d.added.iter().copied().collect();
            let mut seen = HashSet::new();
            for e in &d.expiries {
                let fp = e.fingerprint;
                if !added.contains(&fp) && seen.insert(fp) {
                    out.push(Change::Revoked(fp, expiry[&fp]));
                }
            }
        }
        for r in &d.rules_set {
            if let Some(old) = rules.insert(r.scope, r.not_before) {
                digest.remove_rule(r.scope, old);
            }
            digest.add_rule(r.scope, r.not_before);
            out.push(Change::RuleSet(r.scope, r.not_before.as_millis()));
        }
        for &scope in &d.rules_removed {
            if let Some(old) = rules.remove(&scope) {
                digest.remove_rule(scope, old);
            }
            out.push(Change::RuleRemoved(scope));
        }
        if digest != d.digest {
            return Err(Refused::DigestMismatch {
                version: d.version,
                computed: digest,
                expected: d.digest,
            });
        }
        self.version = d.version;
        self.last_change = d.version;
        self.digest = digest;
        self.rules = rules;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use recall_core::{
        Command, Expiry, Kind, Meta, Revocation, RevocationKey, RevocationSet, Rule, RuleScope,
        ScopeKind,
    };

    fn meta() -> Meta {
        Meta {
            at: Timestamp::from_secs(1_700_000_000),
            actor: "ops".into(),
            on_behalf_of: String::new(),
            reason: String::new(),
        }
    }

    fn revoke(jti: &str, exp: Option<i64>) -> Command {
        Command::Revoke {
            meta: meta(),
            items: vec![Revocation {
                key: RevocationKey::new(Kind::Token, "iss", jti),
                expires_at: exp.map(Timestamp::from_millis),
            }],
        }
    }

    /// Applies `cmds` to an authoritative set and the mirror state alike; the changes.
    fn follow(cmds: &[Command]) -> (RevocationSet, MirrorState, Vec<Change>) {
        let mut set = RevocationSet::new(FingerprintSeed(5));
        let mut state = MirrorState {
            seed: FingerprintSeed(5),
            ..MirrorState::default()
        };
        let mut changes = vec![];
        for (i, cmd) in cmds.iter().enumerate() {
            if let Some(d) = set.apply(i as u64 + 1, cmd).unwrap().delta {
                changes.extend(state.apply(&d).expect("follows"));
            }
        }
        (set, state, changes)
    }

    #[test]
    fn the_state_follows_the_authority_digest_through_revokes_rules_and_lifts() {
        let scope = RuleScope::new(ScopeKind::Subject, "iss", "alice");
        let rule = |ms| Command::AddRule {
            meta: meta(),
            rule: Rule {
                scope: scope.clone(),
                not_before: Timestamp::from_millis(ms),
                expires_at: None,
            },
        };
        let (set, state, changes) = follow(&[
            revoke("a", Some(5_000)),
            revoke("b", None),
            rule(10),
            rule(20),
            revoke("a", Some(9_000)),
            Command::Lift {
                meta: meta(),
                keys: vec![RevocationKey::new(Kind::Token, "iss", "b")],
                rules: vec![],
            },
        ]);
        assert_eq!(state.digest, set.digest());
        assert_eq!(state.version, set.version());
        let a = set.fingerprinter().of(Kind::Token, "iss", "a");
        let b = set.fingerprinter().of(Kind::Token, "iss", "b");
        assert!(changes.contains(&Change::Revoked(a, 5_000)));
        assert!(changes.contains(&Change::Revoked(a, 9_000)), "{changes:?}");
        assert!(changes.contains(&Change::Revoked(b, 0)));
        assert_eq!(changes.last(), Some(&Change::Lifted(b)));
        assert_eq!(state.rules.len(), 1);
    }

    #[test]
    fn a_gap_or_a_wrong_digest_is_refused_and_changes_nothing() {
        let mut state = MirrorState::default();
        let d = Delta {
            version: 3,
            prev_version: 2,
            added: vec![Fingerprint(1)],
            ..Delta::default()
        };
        assert!(matches!(state.apply(&d), Err(Refused::Gap { .. })));
        let mut digest = Digest::default();
        digest.add_entry(Fingerprint(2));
        let wrong = Delta {
            prev_version: 0,
            digest,
            expiries: vec![Expiry {
                fingerprint: Fingerprint(1),
                at: None,
            }],
            ..d
        };
        assert!(matches!(
            state.apply(&wrong),
            Err(Refused::DigestMismatch { .. })
        ));
        assert_eq!(state, MirrorState::default());
    }
}
