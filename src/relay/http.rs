//! A relay's HTTP port (`recall relay --http`): `/healthz`, `/readyz` (ready once it has synced
//! with its upstream, when it serves), `/v1/status` (what it holds, whom it follows, whom it
//! serves) and `/metrics` (its stream metrics).

use std::future::Future;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::Serialize;
use tokio::net::TcpListener;

use super::Relay;

/// The most subscribers `/v1/status` lists.
const LISTED: usize = 1_000;

/// One subscriber the relay serves.
#[derive(Serialize)]
struct Served {
    id: String,
    mode: String,
    applied_version: u64,
    /// The relays between this one and it, nearest first; empty when attached here directly.
    via: String,
}

/// `GET /v1/status`.
#[derive(Serialize)]
struct StatusBody {
    id: String,
    version: u64,
    digest: String,
    entries: usize,
    synced: bool,
    /// The upstream followed now, if connected.
    upstream: Option<String>,
    upstream_stale_reason: Option<String>,
    witnessed_version: u64,
    unwitnessed_ms: Option<u64>,
    /// How many subscribers it serves (those behind its own subscribers included).
    subscribers_total: usize,
    /// The first of them, by id.
    subscribers: Vec<Served>,
}

/// Serves the routes on `listener` until `shutdown` resolves.
pub async fn serve(
    relay: Arc<Relay>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/v1/status", get(status))
        .route("/metrics", get(metrics))
        .with_state(relay);
    crate::transport::serve_http(
        app,
        listener,
        None,
        crate::transport::HttpTimeouts::default(),
        shutdown,
    )
    .await
}

async fn readyz(State(r): State<Arc<Relay>>) -> (StatusCode, String) {
    let s = r.subscriber().status();
    if s.synced {
        return (StatusCode::OK, "ready".into());
    }
    let upstream = r.subscriber().config().upstream().join(", ");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "not ready: not synced with its upstream ({upstream}) yet; it refuses subscribers \
             until it is"
        ),
    )
}

async fn status(State(r): State<Arc<Relay>>) -> Json<StatusBody> {
    let s = r.subscriber().status();
    let all = r.subscribers();
    Json(StatusBody {
        id: r.subscriber().config().id.clone(),
        version: s.version,
        digest: s.digest.to_string(),
        entries: s.entries,
        synced: s.synced,
        upstream: s.node,
        upstream_stale_reason: s.node_stale_reason,
        witnessed_version: s.witnessed_version,
        unwitnessed_ms: s.unwitnessed_ms,
        subscribers_total: all.len(),
        subscribers: all
            .into_iter()
            .take(LISTED)
            .map(|i| Served {
                id: i.id,
                mode: i.mode,
                applied_version: i.applied,
                via: i.via,
            })
            .collect(),
    })
}

async fn metrics(State(r): State<Arc<Relay>>) -> Response {
    crate::metrics::render(r.metrics())
}
