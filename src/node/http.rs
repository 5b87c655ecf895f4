//! A node's HTTP listener (`--http-listen`, plain HTTP, meant for a private network):
//! `GET /metrics` in the Prometheus text format, the live page at `/ui`, `/healthz`. It serves
//! nothing that changes state and reads nothing but the path, so it needs no identity; bind it
//! where only your operators and monitoring reach it.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use super::metrics::{Live, NodeMetrics};
use super::ui;

/// The routes.
pub fn router(metrics: Arc<NodeMetrics>, live: Live) -> Router {
    let page = Router::new()
        .route("/ui", get(ui::index))
        .route("/ui/", get(ui::index))
        .route("/ui/app.js", get(ui::app))
        .route("/ui/style.css", get(ui::style))
        .route("/ui/state", get(ui::state))
        .with_state(live);
    Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "no such endpoint: a node's HTTP listener serves GET /metrics, /ui and /healthz \
                 (the operator API and the subscribe stream are gRPC on the client port)",
            )
        })
        .with_state(metrics)
        .merge(page)
}

async fn render(State(m): State<Arc<NodeMetrics>>) -> Response {
    crate::metrics::render(m.registry()).into_response()
}

/// Serves the routes on `listener` until `shutdown` resolves.
pub async fn serve(
    metrics: Arc<NodeMetrics>,
    live: Live,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let timeouts = crate::transport::HttpTimeouts::default();
    crate::transport::serve_http(router(metrics, live), listener, None, timeouts, shutdown).await
}
