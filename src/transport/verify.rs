//! How a client checks the server it dialled: the chain must lead to the cluster's CA and the
//! certificate must name the identity the client expects (a node, or one node in particular).
//! Host names play no part: nodes are reached at whatever address the operator gave, and their
//! identity is the SPIFFE ID in the certificate, as SPIFFE prescribes.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};

use super::identity::{Identity, Principal};

/// Whom a client expects to reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Any authority node of the trust domain (the CLI and subscribers dial any node).
    AnyNode,
    /// One node in particular (a peer link: node 2 must not answer for node 3).
    Node(u64),
    /// Where a subscriber follows the stream from: any authority node or relay of the trust
    /// domain.
    Upstream,
    /// Any identity of the trust domain (a sidecar's check API).
    Any,
}

impl Expect {
    fn check(&self, trust_domain: &str, got: &Identity) -> Result<(), String> {
        if got.trust_domain != trust_domain {
            return Err(format!(
                "the server is {got}, outside the trust domain {trust_domain}"
            ));
        }
        match (self, &got.principal) {
            (Expect::Any, _)
            | (Expect::AnyNode | Expect::Upstream, Principal::Node(_))
            | (Expect::Upstream, Principal::Relay(_)) => Ok(()),
            (Expect::Node(want), Principal::Node(id)) if want == id => Ok(()),
            (Expect::Node(want), _) => Err(format!(
                "the server is {got}, not node {want} of the cluster"
            )),
            (Expect::AnyNode, _) => Err(format!(
                "the server is {got}, not an authority node of the cluster"
            )),
            (Expect::Upstream, _) => Err(format!(
                "the server is {got}, neither an authority node nor a relay of the cluster"
            )),
        }
    }
}

/// The verifier of one dial.
#[derive(Debug)]
pub(super) struct ServerVerifier {
    pub(super) roots: Arc<RootCertStore>,
    pub(super) provider: Arc<CryptoProvider>,
    pub(super) trust_domain: String,
    pub(super) expect: Expect,
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        let identity = Identity::from_certificate(end_entity).map_err(|e| {
            Error::InvalidCertificate(CertificateError::Other(other(e.to_string())))
        })?;
        self.expect
            .check(&self.trust_domain, &identity)
            .map_err(|e| Error::InvalidCertificate(CertificateError::Other(other(e))))?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A verification failure of our own, carried inside rustls' error.
#[derive(Debug)]
struct WrongIdentity(String);

impl std::fmt::Display for WrongIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WrongIdentity {}

fn other(msg: String) -> rustls::OtherError {
    rustls::OtherError(Arc::new(WrongIdentity(msg)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relay_serves_the_stream_only_where_an_upstream_is_expected() {
        let d = "recall.local";
        let relay = Identity::relay(d, "edge");
        let node = Identity::node(d, 2);
        assert!(Expect::Upstream.check(d, &relay).is_ok());
        assert!(Expect::Upstream.check(d, &node).is_ok());
        let e = Expect::AnyNode.check(d, &relay).unwrap_err();
        assert!(e.contains("not an authority node"), "{e}");
        let e = Expect::Upstream
            .check(d, &Identity::subscriber(d, "svc"))
            .unwrap_err();
        assert!(e.contains("neither an authority node nor a relay"), "{e}");
        assert!(Expect::Upstream.check("other.org", &relay).is_err());
    }
}
