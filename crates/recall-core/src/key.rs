//! What can be revoked: a key `(kind, namespace, value)`. The namespace is the issuer or tenant
//! the value belongs to; a token is keyed by its `jti` within its issuer, never by a hash of the
//! raw JWT (signatures and encodings are malleable).

use serde::{Deserialize, Serialize};

/// The kind of a revoked value. The discriminant is part of the fingerprint input: never reorder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// One token, by its `jti` claim.
    Token = 1,
    /// One session, by its `sid` claim: every token of that session.
    Session = 2,
    /// One API key, by the lowercase hex SHA-256 of the key (never the raw secret).
    ApiKey = 3,
    /// Every token of one subject (`sub`), until lifted.
    Subject = 4,
    /// Every token issued to one client (`azp` / `client_id`), until lifted.
    Client = 5,
    /// Every token signed by one key (`kid`), until lifted.
    Key = 6,
}

impl Kind {
    /// Every kind, in discriminant order.
    pub const ALL: [Kind; 6] = [
        Kind::Token,
        Kind::Session,
        Kind::ApiKey,
        Kind::Subject,
        Kind::Client,
        Kind::Key,
    ];

    /// The name used on the command line, in files and in JSON.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Token => "token",
            Kind::Session => "session",
            Kind::ApiKey => "api_key",
            Kind::Subject => "subject",
            Kind::Client => "client",
            Kind::Key => "key",
        }
    }

    /// The byte that starts this kind's fingerprint input.
    pub(crate) const fn tag(self) -> u8 {
        self as u8
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Kind {
    type Err = crate::ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s || (*k == Kind::Token && s == "jti"))
            .ok_or_else(|| crate::ValidationError::UnknownKind {
                given: s.to_owned(),
            })
    }
}

/// A revocable value: `(kind, namespace, value)`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RevocationKey {
    /// What the value names.
    pub kind: Kind,
    /// The issuer or tenant the value belongs to.
    pub namespace: String,
    /// The value itself (a jti, sid, sub, client id, kid, or an API key's SHA-256 in hex).
    pub value: String,
}

impl RevocationKey {
    /// A key of `kind` in `namespace`.
    pub fn new(kind: Kind, namespace: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            kind,
            namespace: namespace.into(),
            value: value.into(),
        }
    }
}

impl std::fmt::Display for RevocationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}/{}", self.kind, self.namespace, self.value)
    }
}
