//! Who is on the other end of a link: a SPIFFE ID (`spiffe://DOMAIN/node/ID`,
//! `.../operator/NAME`, `.../subscriber/ID`, `.../relay/ID`) read from the URI SAN of a verified certificate, so
//! that SPIRE, cert-manager or Vault PKI can issue recall's identities.

use std::fmt;

/// What kind of party an identity names.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Principal {
    /// An authority node, by its Raft node id.
    Node(u64),
    /// A person or system that operates the cluster (its roles are bound in the cluster).
    Operator(String),
    /// A sidecar or embedded subscriber, by the id it subscribes with.
    Subscriber(String),
    /// A relay, by the id it subscribes with: it follows the stream upstream like a subscriber,
    /// serves it downstream like a node, and reports the acks of the subscribers behind it.
    Relay(String),
}

/// A SPIFFE identity of recall's trust domain.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    /// The trust domain (`recall.local` for the development PKI).
    pub trust_domain: String,
    /// Who, within it.
    pub principal: Principal,
}

/// Why a certificate or a string is not a recall identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// Not a `spiffe://` URI of the expected shape.
    #[error(
        "{0:?} is not a recall identity: expected spiffe://DOMAIN/node/ID, \
         spiffe://DOMAIN/operator/NAME, spiffe://DOMAIN/subscriber/ID or \
         spiffe://DOMAIN/relay/ID"
    )]
    Malformed(String),
    /// The certificate carries no SPIFFE URI SAN, or more than one.
    #[error("the certificate {0}")]
    Certificate(String),
}

/// The longest name or id inside an identity.
const MAX_NAME: usize = 128;

fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 255
        && d.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= MAX_NAME
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._@".contains(&b))
}

impl Identity {
    /// A node identity.
    pub fn node(trust_domain: &str, id: u64) -> Self {
        Self {
            trust_domain: trust_domain.into(),
            principal: Principal::Node(id),
        }
    }

    /// An operator identity.
    pub fn operator(trust_domain: &str, name: &str) -> Self {
        Self {
            trust_domain: trust_domain.into(),
            principal: Principal::Operator(name.into()),
        }
    }

    /// A subscriber identity.
    pub fn subscriber(trust_domain: &str, id: &str) -> Self {
        Self {
            trust_domain: trust_domain.into(),
            principal: Principal::Subscriber(id.into()),
        }
    }

    /// A relay identity.
    pub fn relay(trust_domain: &str, id: &str) -> Self {
        Self {
            trust_domain: trust_domain.into(),
            principal: Principal::Relay(id.into()),
        }
    }

    /// Parses `spiffe://DOMAIN/KIND/NAME`.
    pub fn parse(uri: &str) -> Result<Self, IdentityError> {
        let bad = || IdentityError::Malformed(uri.to_owned());
        let rest = uri.strip_prefix("spiffe://").ok_or_else(bad)?;
        let mut parts = rest.split('/');
        let (Some(domain), Some(kind), Some(name), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        if !valid_domain(domain) || !valid_name(name) {
            return Err(bad());
        }
        let principal = match kind {
            "node" => match name.parse::<u64>() {
                Ok(id) if id > 0 && id.to_string() == name => Principal::Node(id),
                _ => return Err(bad()),
            },
            "operator" => Principal::Operator(name.into()),
            "subscriber" => Principal::Subscriber(name.into()),
            "relay" => Principal::Relay(name.into()),
            _ => return Err(bad()),
        };
        Ok(Self {
            trust_domain: domain.into(),
            principal,
        })
    }

    /// The identity in a DER certificate's URI SAN (exactly one `spiffe://` URI, as SPIFFE
    /// requires). The chain must already have been verified.
    pub fn from_certificate(der: &[u8]) -> Result<Self, IdentityError> {
        let cert_err = |m: &str| IdentityError::Certificate(m.into());
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|_| cert_err("does not parse as X.509"))?;
        let san = cert
            .subject_alternative_name()
            .map_err(|_| cert_err("has a malformed subject alternative name"))?
            .ok_or_else(|| cert_err("has no subject alternative name (a SPIFFE URI is needed)"))?;
        let uris: Vec<&str> = san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::URI(u) if u.starts_with("spiffe://") => {
                    Some(*u)
                }
                _ => None,
            })
            .collect();
        match uris.as_slice() {
            [one] => Self::parse(one),
            [] => Err(cert_err("has no spiffe:// URI SAN")),
            _ => Err(cert_err("has more than one spiffe:// URI SAN")),
        }
    }

    /// The node id, if this is a node.
    pub fn node_id(&self) -> Option<u64> {
        match self.principal {
            Principal::Node(id) => Some(id),
            _ => None,
        }
    }

    /// The subscriber id, if this is a subscriber.
    pub fn subscriber_id(&self) -> Option<&str> {
        match &self.principal {
            Principal::Subscriber(id) => Some(id),
            _ => None,
        }
    }

    /// The id this identity subscribes to the stream with: a subscriber's or a relay's.
    pub fn stream_id(&self) -> Option<&str> {
        match &self.principal {
            Principal::Subscriber(id) | Principal::Relay(id) => Some(id),
            _ => None,
        }
    }

    /// Whether this is a relay.
    pub fn is_relay(&self) -> bool {
        matches!(self.principal, Principal::Relay(_))
    }

    /// The file stem the development PKI uses for this identity (`node-1`, `operator-admin`).
    pub fn file_stem(&self) -> String {
        match &self.principal {
            Principal::Node(id) => format!("node-{id}"),
            Principal::Operator(n) => format!("operator-{n}"),
            Principal::Subscriber(n) => format!("subscriber-{n}"),
            Principal::Relay(n) => format!("relay-{n}"),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, name) = match &self.principal {
            Principal::Node(id) => ("node", id.to_string()),
            Principal::Operator(n) => ("operator", n.clone()),
            Principal::Subscriber(n) => ("subscriber", n.clone()),
            Principal::Relay(n) => ("relay", n.clone()),
        };
        write!(f, "spiffe://{}/{kind}/{name}", self.trust_domain)
    }
}

impl std::str::FromStr for Identity {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_round_trip_through_their_uri() {
        for id in [
            Identity::node("recall.local", 3),
            Identity::operator("example.org", "alice"),
            Identity::subscriber("example.org", "sidecar-1.eu"),
            Identity::relay("example.org", "edge-eu-1"),
        ] {
            assert_eq!(Identity::parse(&id.to_string()).unwrap(), id);
        }
    }

    #[test]
    fn malformed_identities_are_refused() {
        for bad in [
            "https://recall.local/node/1",
            "spiffe://recall.local/node/0",
            "spiffe://recall.local/node/01",
            "spiffe://recall.local/node/x",
            "spiffe://recall.local/admin/x",
            "spiffe://recall.local/operator/a/b",
            "spiffe://recall.local/operator/",
            "spiffe://Recall.Local/operator/a",
            "spiffe:///operator/a",
            "spiffe://recall.local/operator/a b",
        ] {
            assert!(Identity::parse(bad).is_err(), "{bad}");
        }
    }
}
