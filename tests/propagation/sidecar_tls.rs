//! A sidecar started with TLS on its check APIs serves them over mutual TLS like every other
//! port: a client with a certificate of the cluster's CA gets verdicts over gRPC, a plaintext
//! HTTP client is told that the port wants TLS.

use std::time::Duration;

use recall::proto as pb;
use recall::proto::check_client::CheckClient;
use recall::sidecar::{RunningSidecar, SidecarConfig};
use recall::transport::{DEV_TRUST_DOMAIN, Dialer, Expect, Identity};
use tokio::net::TcpListener;

use crate::fixture::{OneNode, ca, revoke, subscriber_security, token};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_apis_with_tls_answer_verified_clients_and_refuse_plaintext() {
    let node = OneNode::start().await;
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = SidecarConfig::new(node.subscriber_config("sc-tls"));
    config.http_listen = http.local_addr().unwrap().to_string();
    config.grpc_listen = Some(grpc.local_addr().unwrap().to_string());
    config.check_tls = Some(subscriber_security("sc-tls"));
    let sidecar = RunningSidecar::start(config, http, Some(grpc))
        .await
        .unwrap();
    let v = revoke(
        &mut node.client().await,
        vec![token("https://iss", "t-tls")],
    )
    .await;
    sidecar
        .subscriber()
        .wait_version(v, Duration::from_secs(10))
        .await
        .unwrap();

    let service = ca()
        .security(&Identity::operator(DEV_TRUST_DOMAIN, "checkout-service"))
        .unwrap();
    let addr = sidecar.grpc_addr().unwrap().to_string();
    let channel = Dialer::new(service)
        .connect(&addr, Expect::Any)
        .await
        .unwrap();
    let reply = CheckClient::new(channel)
        .check(pb::CheckRequest {
            facts: Some(pb::TokenFacts {
                iss: "https://iss".into(),
                jti: Some("t-tls".into()),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.verdict, pb::Verdict::Revoked as i32, "{reply:?}");

    let plain = reqwest::get(format!("http://{}/healthz", sidecar.http_addr()))
        .await
        .unwrap();
    assert_eq!(plain.status().as_u16(), 400);
    let body = plain.text().await.unwrap();
    assert!(body.contains("requires mutual TLS"), "{body}");
    sidecar.shutdown().await.unwrap();
}
