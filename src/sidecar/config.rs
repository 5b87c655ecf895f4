//! What a sidecar is started with.

use crate::subscriber::SubscriberConfig;

/// The HTTP address a sidecar listens on unless told otherwise.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:7080";

/// The configuration of a sidecar: how it follows the cluster and where it answers checks.
#[derive(Clone, Debug)]
pub struct SidecarConfig {
    /// How it follows the cluster: nodes, id, mode, data directory, staleness bound and policy.
    pub subscriber: SubscriberConfig,
    /// Where the HTTP check API listens (`host:port`); the binary binds it.
    pub http_listen: String,
    /// Where the gRPC `recall.v1.Check` service listens, if it is served at all.
    pub grpc_listen: Option<String>,
    /// Serve both check APIs over mutual TLS with these credentials; `None`: plaintext, for
    /// loopback.
    pub check_tls: Option<crate::transport::Security>,
    /// The issuers whose bearer tokens `/v1/auth`, `/v1/token` and ext_authz verify; empty:
    /// those endpoints answer that none is configured.
    pub issuers: Vec<crate::token::IssuerPolicy>,
    /// Whether an allowed request carries all its verified claims on (`X-Recall-Claims`,
    /// base64url JSON), besides issuer, subject, client and tenant.
    pub pass_claims: bool,
    /// The deadlines of the HTTP check API's connections (header read, idle, close); the
    /// defaults suit every deployment, tests shorten them.
    pub http_timeouts: crate::transport::HttpTimeouts,
}

/// A sidecar configuration that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The subscriber part is refused (the message names its field).
    #[error("{0:#}")]
    Subscriber(anyhow::Error),
    /// A field is refused.
    #[error("{field}: {problem}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong and what to do.
        problem: String,
    },
}

impl SidecarConfig {
    /// Follows `subscriber.cluster` and answers HTTP on [`DEFAULT_HTTP_LISTEN`], no gRPC.
    pub fn new(subscriber: SubscriberConfig) -> Self {
        Self {
            subscriber,
            http_listen: DEFAULT_HTTP_LISTEN.to_string(),
            grpc_listen: None,
            check_tls: None,
            issuers: vec![],
            pass_claims: false,
            http_timeouts: crate::transport::HttpTimeouts::default(),
        }
    }

    /// Refuses a configuration that cannot work, naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.subscriber
            .validate()
            .map_err(ConfigError::Subscriber)?;
        if self.subscriber.staleness_bound.is_zero() {
            return Err(ConfigError::Field {
                field: "staleness_bound",
                problem: "must be positive (every answer would be stale); the default is 10 s"
                    .into(),
            });
        }
        address("http_listen", &self.http_listen)?;
        self.http_timeouts
            .validate()
            .map_err(|problem| ConfigError::Field {
                field: "http_timeouts",
                problem,
            })?;
        for issuer in &self.issuers {
            issuer.validate().map_err(|e| ConfigError::Field {
                field: "issuers",
                problem: format!("{e:#}"),
            })?;
        }
        if let Some(grpc) = &self.grpc_listen {
            address("grpc_listen", grpc)?;
            if grpc == &self.http_listen && !grpc.ends_with(":0") {
                return Err(ConfigError::Field {
                    field: "grpc_listen",
                    problem: format!("{grpc} is also the HTTP address; give each its own port"),
                });
            }
        }
        Ok(())
    }
}

fn address(field: &'static str, addr: &str) -> Result<(), ConfigError> {
    let port = addr
        .rsplit_once(':')
        .map(|(host, port)| (host, port.parse::<u16>()));
    match port {
        Some((host, Ok(_))) if !host.is_empty() => Ok(()),
        _ => Err(ConfigError::Field {
            field,
            problem: format!("{addr:?} is not HOST:PORT (e.g. 127.0.0.1:7080)"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SidecarConfig {
        let ca = crate::transport::pki::Ca::generate("test.local").unwrap();
        let security = ca
            .security(&crate::transport::Identity::subscriber(
                "test.local",
                "sc-1",
            ))
            .unwrap();
        SidecarConfig::new(SubscriberConfig::new(
            vec!["127.0.0.1:7070".into()],
            "sc-1",
            security,
        ))
    }

    #[test]
    fn defaults_are_valid() {
        config().validate().unwrap();
    }

    #[test]
    fn refusals_name_the_field() {
        let mut c = config();
        c.http_listen = "7080".into();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .starts_with("http_listen:")
        );
        let mut c = config();
        c.grpc_listen = Some(c.http_listen.clone());
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .starts_with("grpc_listen:")
        );
        let mut c = config();
        c.subscriber.cluster.clear();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .starts_with("cluster:")
        );
        let mut c = config();
        c.subscriber.staleness_bound = std::time::Duration::ZERO;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .starts_with("staleness_bound:")
        );
    }
}
