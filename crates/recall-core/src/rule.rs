//! Not-before rules: "every token in this scope issued before T is revoked". Logging a user out
//! everywhere is one rule, not a million entries. At most one rule holds per scope; a later
//! `not_before` supersedes an earlier one, and an earlier one changes nothing.

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// The scope a rule applies to. The discriminant is part of the fingerprint input (offset so it
/// never equals a [`crate::Kind`]): never reorder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeKind {
    /// Every token of an issuer (the namespace).
    Issuer = 16,
    /// Every token carrying this tenant (the namespace), whatever its issuer.
    Tenant = 17,
    /// Every token of one subject of an issuer.
    Subject = 18,
    /// Every token an issuer gave to one client.
    Client = 19,
    /// Every token an issuer signed with one key.
    Key = 20,
}

impl ScopeKind {
    /// Every scope kind, in discriminant order.
    pub const ALL: [ScopeKind; 5] = [
        ScopeKind::Issuer,
        ScopeKind::Tenant,
        ScopeKind::Subject,
        ScopeKind::Client,
        ScopeKind::Key,
    ];

    /// The name used on the command line, in files and in JSON.
    pub const fn name(self) -> &'static str {
        match self {
            ScopeKind::Issuer => "issuer",
            ScopeKind::Tenant => "tenant",
            ScopeKind::Subject => "subject",
            ScopeKind::Client => "client",
            ScopeKind::Key => "key",
        }
    }

    /// Whether the scope names a value inside its namespace (subject, client, key) or the whole
    /// namespace (issuer, tenant).
    pub const fn has_value(self) -> bool {
        matches!(
            self,
            ScopeKind::Subject | ScopeKind::Client | ScopeKind::Key
        )
    }

    pub(crate) const fn tag(self) -> u8 {
        self as u8
    }
}

impl std::fmt::Display for ScopeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ScopeKind {
    type Err = crate::ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ScopeKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| crate::ValidationError::UnknownScope {
                given: s.to_owned(),
            })
    }
}

/// Which tokens a rule covers.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RuleScope {
    /// The kind of scope.
    pub kind: ScopeKind,
    /// The issuer, or the tenant for [`ScopeKind::Tenant`].
    pub namespace: String,
    /// The subject, client id or kid; empty for issuer and tenant scopes.
    pub value: String,
}

impl RuleScope {
    /// A scope of `kind` in `namespace` naming `value` (empty for issuer and tenant).
    pub fn new(kind: ScopeKind, namespace: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            kind,
            namespace: namespace.into(),
            value: value.into(),
        }
    }
}

impl std::fmt::Display for RuleScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.kind.has_value() {
            write!(f, "{}:{}/{}", self.kind, self.namespace, self.value)
        } else {
            write!(f, "{}:{}", self.kind, self.namespace)
        }
    }
}

/// A not-before rule: tokens in `scope` whose `iat` is before `not_before` are revoked.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rule {
    /// Which tokens the rule covers.
    pub scope: RuleScope,
    /// Tokens issued strictly before this time are revoked; a token issued at it is not.
    pub not_before: Timestamp,
    /// When the rule may be pruned (no token it covers can still be valid); `None` keeps it.
    pub expires_at: Option<Timestamp>,
}

/// Whether a token issued at `iat` (unix seconds, `None` if the token has no `iat`) falls before
/// `not_before`. A token without `iat` cannot prove it was issued after the rule: it is covered.
pub fn issued_before(iat: Option<i64>, not_before: Timestamp) -> bool {
    match iat {
        Some(secs) => Timestamp::from_secs(secs) < not_before,
        None => true,
    }
}
