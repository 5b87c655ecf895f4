//! Who may do what on the client port. Roles are ordered, each including the ones below it:
//! `viewer` (status, audit), `revoker` (revoke entries), `recaller` (rules, lifts, imports),
//! `admin` (membership and roles). Bindings of operator identities to roles live in the
//! replicated state, so every node agrees and every change is in the audit history; the first
//! admins of a new cluster come from its configuration (applied with the cluster's seed).
//! Subscribers need no role: a subscriber identity may subscribe as itself and ask `Check` (it is
//! sent the whole set anyway), and do nothing else.

use std::collections::BTreeMap;

use recall_core::Meta;
use serde::{Deserialize, Serialize};

use crate::transport::{Identity, Peer, Principal};

/// An operator role; each includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Reads status and the audit history.
    Viewer,
    /// Also revokes entries.
    Revoker,
    /// Also adds rules, lifts and imports.
    Recaller,
    /// Also changes membership and role bindings.
    Admin,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Revoker, Role::Recaller, Role::Admin];

    /// The role's name as operators type it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Revoker => "revoker",
            Role::Recaller => "recaller",
            Role::Admin => "admin",
        }
    }

    /// Parses a role name.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == s)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A change of one binding, proposed through Raft by an admin.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RoleChange {
    /// Who, when, why (the actor is the admin's identity).
    pub meta: Meta,
    /// The operator identity (`spiffe://DOMAIN/operator/NAME`).
    pub identity: String,
    /// Its new role; `None` removes the binding.
    pub role: Option<Role>,
}

/// Why a role change is refused before it is proposed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleChangeError {
    /// A field is not valid (the message names it).
    #[error("{0}")]
    Invalid(String),
    /// The change would leave the cluster without an admin.
    #[error("{0} is the cluster's only admin: grant admin to another operator first")]
    LastAdmin(String),
}

impl RoleChange {
    /// The change of `identity` (an operator name or SPIFFE ID of `trust_domain`) to `role`
    /// (a role name; empty removes the binding), checked against the current `bindings`: the
    /// last admin cannot lose its role.
    pub fn checked(
        bindings: &Bindings,
        trust_domain: &str,
        meta: Meta,
        identity: &str,
        role: &str,
    ) -> Result<Self, RoleChangeError> {
        let identity = operator_identity(trust_domain, identity)
            .map_err(|e| RoleChangeError::Invalid(format!("identity: {e}")))?
            .to_string();
        let role = match role {
            "" => None,
            r => Some(Role::parse(r).ok_or_else(|| {
                RoleChangeError::Invalid(format!(
                    "role: unknown role {r:?}; expected viewer, revoker, recaller or admin"
                ))
            })?),
        };
        let max = recall_core::validate::MAX_REASON_LEN;
        if meta.reason.len() > max {
            return Err(RoleChangeError::Invalid(format!(
                "reason: at most {max} bytes"
            )));
        }
        let admins = bindings.values().filter(|r| **r == Role::Admin).count();
        if bindings.get(&identity) == Some(&Role::Admin) && role != Some(Role::Admin) && admins <= 1
        {
            return Err(RoleChangeError::LastAdmin(identity));
        }
        Ok(Self {
            meta,
            identity,
            role,
        })
    }

    /// A one-line summary for the audit history.
    pub fn summary(&self) -> String {
        match self.role {
            Some(r) => format!("bind {} to role {r}", self.identity),
            None => format!("remove the role of {}", self.identity),
        }
    }
}

/// The role bindings of the cluster, by identity URI.
pub type Bindings = BTreeMap<String, Role>;

/// What a caller is, once authenticated.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Its verified identity (`None` only on the plaintext benchmark build).
    pub identity: Option<Identity>,
}

impl Caller {
    /// The caller of a request served over the transport.
    pub fn of(peer: &Peer) -> Self {
        Self {
            identity: peer.identity.clone(),
        }
    }

    /// The caller as the audit history names it.
    pub fn actor(&self) -> String {
        match &self.identity {
            Some(id) => id.to_string(),
            None => "unauthenticated (plaintext benchmark build)".into(),
        }
    }
}

/// Why a call is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The caller lacks the role.
    #[error(
        "{action} needs the {need} role; {who} has {has} (an admin grants it with \
         `recall roles grant {who} {need}`)"
    )]
    Role {
        /// What was asked.
        action: &'static str,
        /// The role it needs.
        need: Role,
        /// The caller.
        who: String,
        /// What the caller has.
        has: String,
    },
    /// The caller may not ask `Check`: a node, or another identity that is neither a
    /// subscriber nor an operator.
    #[error(
        "Check is for subscribers (spiffe://DOMAIN/subscriber/ID) and operators with a role; \
         {who} is neither: call it with a subscriber's or an operator's certificate"
    )]
    NotChecker {
        /// The caller.
        who: String,
    },
    /// The caller is not an operator at all.
    #[error("{action} is for operators; {who} is not an operator identity")]
    NotOperator {
        /// What was asked.
        action: &'static str,
        /// The caller.
        who: String,
    },
}

impl From<Denied> for tonic::Status {
    fn from(d: Denied) -> Self {
        tonic::Status::permission_denied(d.to_string())
    }
}

/// Refuses `caller` unless it holds `need` (or a higher role) in `bindings`.
pub fn require(
    bindings: &Bindings,
    caller: &Caller,
    need: Role,
    action: &'static str,
) -> Result<(), Denied> {
    let Some(id) = &caller.identity else {
        // Only the plaintext benchmark build has callers without identity.
        return Ok(());
    };
    if !matches!(id.principal, Principal::Operator(_)) {
        return Err(Denied::NotOperator {
            action,
            who: id.to_string(),
        });
    }
    let who = id.to_string();
    match bindings.get(&who) {
        Some(has) if *has >= need => Ok(()),
        has => Err(Denied::Role {
            action,
            need,
            has: has.map_or_else(|| "no role".into(), |r| format!("the {r} role")),
            who,
        }),
    }
}

/// Refuses `caller` unless it may ask a node's `Check`: any subscriber (its sidecar confirms
/// lite-mode hits this way, and it is sent the whole set already), or an operator holding a
/// role (viewer or higher). Nodes and relays have no reason to ask and are refused.
pub fn require_checker(bindings: &Bindings, caller: &Caller) -> Result<(), Denied> {
    match caller.identity.as_ref().map(|id| &id.principal) {
        None | Some(Principal::Subscriber(_)) => Ok(()),
        Some(Principal::Operator(_)) => require(bindings, caller, Role::Viewer, "Check"),
        Some(Principal::Node(_) | Principal::Relay(_)) => Err(Denied::NotChecker {
            who: caller.actor(),
        }),
    }
}

/// The identity URI an admin names, in this cluster's trust domain: a full SPIFFE ID, or an
/// operator name (`alice` for `spiffe://DOMAIN/operator/alice`).
pub fn operator_identity(trust_domain: &str, given: &str) -> Result<Identity, String> {
    let id = if given.starts_with("spiffe://") {
        Identity::parse(given).map_err(|e| e.to_string())?
    } else {
        Identity::parse(&format!("spiffe://{trust_domain}/operator/{given}"))
            .map_err(|e| e.to_string())?
    };
    if id.trust_domain != trust_domain {
        return Err(format!(
            "{id} is outside this cluster's trust domain {trust_domain}"
        ));
    }
    if !matches!(id.principal, Principal::Operator(_)) {
        return Err(format!(
            "{id} is not an operator identity: roles bind operators only"
        ));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(id: &str) -> Caller {
        Caller {
            identity: Some(Identity::parse(id).unwrap()),
        }
    }

    #[test]
    fn roles_include_the_ones_below_and_refusals_name_the_role_and_the_identity() {
        let mut b = Bindings::new();
        b.insert("spiffe://d/operator/v".into(), Role::Viewer);
        b.insert("spiffe://d/operator/r".into(), Role::Recaller);
        assert!(
            require(
                &b,
                &caller("spiffe://d/operator/r"),
                Role::Revoker,
                "revoke"
            )
            .is_ok()
        );
        let e = require(
            &b,
            &caller("spiffe://d/operator/v"),
            Role::Revoker,
            "revoke",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("revoker role") && e.contains("spiffe://d/operator/v"),
            "{e}"
        );
        let e = require(
            &b,
            &caller("spiffe://d/subscriber/s"),
            Role::Viewer,
            "status",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not an operator"), "{e}");
        let e = require(&b, &caller("spiffe://d/operator/x"), Role::Viewer, "status")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no role"), "{e}");
    }

    #[test]
    fn check_is_for_subscribers_and_operators_with_a_role() {
        let mut b = Bindings::new();
        b.insert("spiffe://d/operator/v".into(), Role::Viewer);
        assert!(require_checker(&b, &caller("spiffe://d/subscriber/s")).is_ok());
        assert!(require_checker(&b, &caller("spiffe://d/operator/v")).is_ok());
        let e = require_checker(&b, &caller("spiffe://d/operator/x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("viewer role") && e.contains("no role"), "{e}");
        let e = require_checker(&b, &caller("spiffe://d/node/2"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("spiffe://d/node/2 is neither"), "{e}");
    }
}
