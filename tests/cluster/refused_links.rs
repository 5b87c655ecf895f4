//! Both ports of a node speak only mutual TLS with the cluster's CA: a plaintext client, a
//! client whose certificate comes from another CA, and a client with an expired certificate are
//! refused on the client port and on the peer port, each told which of the three it was.

use recall::proto as pb;
use recall::proto::operator_client::OperatorClient;
use recall::transport::pki::{Ca, Validity};
use recall::transport::{Credentials, DEV_TRUST_DOMAIN, Dialer, Expect, Identity, Security};

use crate::fixture::{Cluster, leader, pki};

/// Credentials that trust the cluster's CA but present `cert` (from whatever CA issued it).
fn presenting(issued: recall::transport::pki::Issued) -> Security {
    let creds = Credentials::from_pem(
        pki().ca.cert_pem(),
        &issued.cert_pem,
        &issued.key_pem,
        DEV_TRUST_DOMAIN,
    )
    .expect("credentials load");
    Security::Tls(creds)
}

/// The error text a client gets for a Status call to `addr`.
async fn refusal(addr: &str, security: Security) -> String {
    match Dialer::new(security).connect(addr, Expect::AnyNode).await {
        Err(e) => e.to_string(),
        Ok(channel) => {
            let status = OperatorClient::new(channel)
                .status(pb::StatusRequest::default())
                .await
                .expect_err("the call is refused");
            recall::transport::errors::describe(&status)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_foreign_and_expired_clients_are_refused_on_every_port_saying_which() {
    let cluster = Cluster::start(1).await;
    leader(&cluster).await;
    let admin = Identity::operator(DEV_TRUST_DOMAIN, "admin");
    let foreign = Ca::generate(DEV_TRUST_DOMAIN).unwrap();
    for addr in [cluster.addr(1), cluster.peer_addr(1)] {
        // Plaintext: the port answers with a gRPC status that says what it wants.
        let plain = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .expect("TCP connects");
        let status = OperatorClient::new(plain)
            .status(pb::StatusRequest::default())
            .await
            .expect_err("plaintext is refused");
        assert_eq!(
            status.code(),
            tonic::Code::Unauthenticated,
            "{addr}: {status:?}"
        );
        assert!(
            status.message().contains("plaintext connection refused")
                && status.message().contains("mutual TLS"),
            "{addr}: {}",
            status.message()
        );

        // A certificate from another CA (the client itself trusts the cluster's CA).
        let other = foreign.issue(&admin, Validity::days(1)).unwrap();
        let msg = refusal(addr, presenting(other)).await;
        assert!(
            msg.contains("not issued by the cluster's CA"),
            "{addr}: {msg}"
        );

        // An expired certificate from the right CA.
        let expired = pki().ca.issue(&admin, Validity::expired()).unwrap();
        let msg = refusal(addr, presenting(expired)).await;
        assert!(msg.contains("expired"), "{addr}: {msg}");

        // And a client that does not trust the node's CA says so about the node.
        let distrusting = foreign.security(&admin).unwrap();
        let msg = refusal(addr, distrusting).await;
        assert!(msg.contains("not issued by our CA"), "{addr}: {msg}");
    }
}
