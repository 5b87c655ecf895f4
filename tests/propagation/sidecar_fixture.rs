//! A real sidecar on loopback listeners, and clients of its HTTP and gRPC faces.

use std::future::Future;
use std::time::Duration;

use recall::proto::check_client::CheckClient;
use recall::sidecar::{RunningSidecar, SidecarConfig};
use recall::subscriber::SubscriberConfig;
use reqwest::Url;
use tokio::net::TcpListener;
use tonic::transport::Channel;

use crate::fixture::OneNode;
use recall_chaos::proxy::Proxy;

/// Starts a sidecar serving HTTP and gRPC on fresh `127.0.0.1:0` listeners.
pub async fn start_sidecar(subscriber: SubscriberConfig) -> RunningSidecar {
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = SidecarConfig::new(subscriber);
    config.http_listen = http.local_addr().unwrap().to_string();
    config.grpc_listen = Some(grpc.local_addr().unwrap().to_string());
    RunningSidecar::start(config, http, Some(grpc))
        .await
        .unwrap()
}

/// The URL of `path` on the sidecar's HTTP face, with `params` percent-encoded.
pub fn url(sidecar: &RunningSidecar, path: &str, params: &[(&str, &str)]) -> Url {
    let base = format!("http://{}{path}", sidecar.http_addr());
    Url::parse_with_params(&base, params).unwrap()
}

/// `GET` a URL: the status code and the body as text.
pub async fn get_text(url: Url) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

/// `GET` a URL: the status code and the body as JSON.
pub async fn get_json(url: Url) -> (u16, serde_json::Value) {
    let (status, body) = get_text(url).await;
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, json)
}

/// `GET /v1/check` with `params`: the status code and the JSON answer.
pub async fn check(sidecar: &RunningSidecar, params: &[(&str, &str)]) -> (u16, serde_json::Value) {
    get_json(url(sidecar, "/v1/check", params)).await
}

/// A gRPC client of the sidecar's `Check` service.
pub async fn check_client(sidecar: &RunningSidecar) -> CheckClient<Channel> {
    let addr = sidecar.grpc_addr().expect("the sidecar serves gRPC");
    CheckClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
}

/// Polls `probe` every 20 ms until it returns true, failing with `what` after `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !probe().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Takes the cluster away from sidecars that reach `node` through `proxy`: the links are cut
/// (new connections refused), then the node shuts down.
///
/// The cut comes first because `RunningNode::shutdown` waits for open Subscribe streams to end,
/// and nothing ends them from the node's side: with a subscriber attached it never returns.
pub async fn cluster_gone(proxy: Proxy, node: OneNode) {
    proxy.link().cut();
    tokio::time::timeout(Duration::from_secs(10), node.node.shutdown())
        .await
        .expect("the node shuts down once its streams are cut")
        .unwrap();
}
