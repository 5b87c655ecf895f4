//! A node's HTTP listener (`--http-listen`, plain HTTP, meant for a scraper on a private
//! network): `GET /metrics` in the Prometheus text format, `/healthz`. It serves nothing that
//! changes state and reads nothing but the path, so it needs no identity; bind it where only
//! the monitoring system reaches it.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use super::metrics::NodeMetrics;

/// The routes.
pub fn router(metrics: Arc<NodeMetrics>) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "no such endpoint: a node's HTTP listener serves GET /metrics and /healthz \
                 (the operator API and the subscribe stream are gRPC on the client port)",
            )
        })
        .with_state(metrics)
}

async fn render(State(m): State<Arc<NodeMetrics>>) -> Response {
    crate::metrics::render(m.registry()).into_response()
}

/// Serves the routes on `listener` until `shutdown` resolves.
pub async fn serve(
    metrics: Arc<NodeMetrics>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::transport::serve_http(router(metrics), listener, None, shutdown).await
}
