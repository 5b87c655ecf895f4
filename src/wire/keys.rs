//! Keys, revocations, scopes and rules on the wire.

use recall_core::{Kind, Revocation, RevocationKey, Rule, RuleScope, ScopeKind, Timestamp};

use super::WireError;
use crate::proto as pb;

pub(super) fn kind_from_wire(field: &str, raw: i32) -> Result<Kind, WireError> {
    let kind = match pb::Kind::try_from(raw) {
        Ok(pb::Kind::Token) => Kind::Token,
        Ok(pb::Kind::Session) => Kind::Session,
        Ok(pb::Kind::ApiKey) => Kind::ApiKey,
        Ok(pb::Kind::Subject) => Kind::Subject,
        Ok(pb::Kind::Client) => Kind::Client,
        Ok(pb::Kind::Key) => Kind::Key,
        Ok(pb::Kind::Unspecified) | Err(_) => {
            let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
            return Err(WireError::new(
                super::join(field, "kind"),
                format!("unknown kind {raw}; expected one of {}", names.join(", ")),
            ));
        }
    };
    Ok(kind)
}

pub(super) fn kind_to_wire(kind: Kind) -> pb::Kind {
    match kind {
        Kind::Token => pb::Kind::Token,
        Kind::Session => pb::Kind::Session,
        Kind::ApiKey => pb::Kind::ApiKey,
        Kind::Subject => pb::Kind::Subject,
        Kind::Client => pb::Kind::Client,
        Kind::Key => pb::Kind::Key,
    }
}

pub(super) fn scope_kind_from_wire(field: &str, raw: i32) -> Result<ScopeKind, WireError> {
    let kind = match pb::ScopeKind::try_from(raw) {
        Ok(pb::ScopeKind::Issuer) => ScopeKind::Issuer,
        Ok(pb::ScopeKind::Tenant) => ScopeKind::Tenant,
        Ok(pb::ScopeKind::Subject) => ScopeKind::Subject,
        Ok(pb::ScopeKind::Client) => ScopeKind::Client,
        Ok(pb::ScopeKind::Key) => ScopeKind::Key,
        Ok(pb::ScopeKind::Unspecified) | Err(_) => {
            let names: Vec<&str> = ScopeKind::ALL.iter().map(|k| k.name()).collect();
            return Err(WireError::new(
                super::join(field, "kind"),
                format!("unknown scope {raw}; expected one of {}", names.join(", ")),
            ));
        }
    };
    Ok(kind)
}

pub(super) fn scope_kind_to_wire(kind: ScopeKind) -> pb::ScopeKind {
    match kind {
        ScopeKind::Issuer => pb::ScopeKind::Issuer,
        ScopeKind::Tenant => pb::ScopeKind::Tenant,
        ScopeKind::Subject => pb::ScopeKind::Subject,
        ScopeKind::Client => pb::ScopeKind::Client,
        ScopeKind::Key => pb::ScopeKind::Key,
    }
}

/// A key from the wire; `field` is its path for error messages.
pub fn key_from_wire(
    field: &str,
    key: Option<pb::RevocationKey>,
) -> Result<RevocationKey, WireError> {
    let key =
        key.ok_or_else(|| WireError::new(field, "missing; a key needs kind, namespace and value"))?;
    Ok(RevocationKey::new(
        kind_from_wire(field, key.kind)?,
        key.namespace,
        key.value,
    ))
}

/// A key for the wire.
pub fn key_to_wire(key: &RevocationKey) -> pb::RevocationKey {
    pb::RevocationKey {
        kind: kind_to_wire(key.kind) as i32,
        namespace: key.namespace.clone(),
        value: key.value.clone(),
    }
}

/// A revocation from the wire.
pub fn revocation_from_wire(field: &str, r: pb::Revocation) -> Result<Revocation, WireError> {
    Ok(Revocation {
        key: key_from_wire("key", r.key).map_err(|e| e.under(field))?,
        expires_at: r.expires_at_ms.map(Timestamp::from_millis),
    })
}

/// A rule scope from the wire.
pub fn scope_from_wire(field: &str, scope: Option<pb::RuleScope>) -> Result<RuleScope, WireError> {
    let scope =
        scope.ok_or_else(|| WireError::new(field, "missing; a scope needs kind and namespace"))?;
    Ok(RuleScope::new(
        scope_kind_from_wire(field, scope.kind)?,
        scope.namespace,
        scope.value,
    ))
}

/// A rule scope for the wire.
pub fn scope_to_wire(scope: &RuleScope) -> pb::RuleScope {
    pb::RuleScope {
        kind: scope_kind_to_wire(scope.kind) as i32,
        namespace: scope.namespace.clone(),
        value: scope.value.clone(),
    }
}

/// A rule from the wire.
pub fn rule_from_wire(field: &str, rule: Option<pb::Rule>) -> Result<Rule, WireError> {
    let rule = rule
        .ok_or_else(|| WireError::new(field, "missing; a rule needs a scope and not_before_ms"))?;
    Ok(Rule {
        scope: scope_from_wire("scope", rule.scope).map_err(|e| e.under(field))?,
        not_before: Timestamp::from_millis(rule.not_before_ms),
        expires_at: rule.expires_at_ms.map(Timestamp::from_millis),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_kind_names_the_field_and_the_choices() {
        let key = pb::RevocationKey {
            kind: 42,
            namespace: "i".into(),
            value: "v".into(),
        };
        let err = key_from_wire("items[3].key", Some(key)).unwrap_err();
        assert_eq!(err.field, "items[3].key.kind");
        let r = pb::Revocation {
            key: None,
            expires_at_ms: None,
        };
        assert!(err.problem.contains("token, session, api_key"), "{err}");
        let missing = revocation_from_wire("", r).unwrap_err().under("items[7]");
        assert_eq!(missing.field, "items[7].key");
    }

    #[test]
    fn keys_round_trip() {
        for kind in Kind::ALL {
            let key = RevocationKey::new(kind, "iss", "v");
            assert_eq!(key_from_wire("k", Some(key_to_wire(&key))).unwrap(), key);
        }
        for kind in ScopeKind::ALL {
            let scope = RuleScope::new(kind, "iss", "v");
            assert_eq!(
                scope_from_wire("s", Some(scope_to_wire(&scope))).unwrap(),
                scope
            );
        }
    }
}
