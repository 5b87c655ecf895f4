//! The HTTP face of a sidecar (axum): `GET /v1/check` (a token's claims), `/v1/auth` and
//! `POST /v1/token` (the bearer token itself, see [`super::forward_auth`]), `/v1/status`,
//! `/healthz`, `/readyz`. Handlers only translate: the answer comes from the embedded
//! [`Subscriber`] (and the verifier), bad input becomes a 400 with `{"error": "..."}` that says
//! what to fix.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use axum::Json;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde::Serialize;
use tokio::net::TcpListener;

use super::bearer::Bearer;
use super::{forward_auth, query};
use crate::subscriber::Subscriber;

/// The largest request body (`POST /v1/token`): a token of the largest size any issuer allows
/// fits many times over.
const MAX_BODY_BYTES: usize = 64 << 10;

/// The body of every error response.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    /// What was wrong and what to do.
    pub error: String,
}

/// An error response: `status` and `{"error": message}`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(ErrorBody {
            error: message.into(),
        }),
    )
        .into_response()
}

/// What `GET /v1/status` shows: the subscriber's state and counters since start.
#[derive(Debug, Serialize)]
pub struct StatusBody {
    /// The subscriber id the cluster knows this sidecar by.
    pub id: String,
    /// The version applied.
    pub version: u64,
    /// When that version was applied (Unix milliseconds, the sidecar host's clock).
    pub version_at_ms: i64,
    /// The digest of what it holds, 16 hex digits (compare with `recall status`).
    pub digest: String,
    /// Revoked fingerprints held.
    pub entries: usize,
    /// Whether it has completed a sync.
    pub synced: bool,
    /// Snapshots applied.
    pub snapshots: u64,
    /// Deltas applied.
    pub deltas: u64,
    /// Resyncs the cluster asked for.
    pub resyncs: u64,
    /// Times its digest differed from the authority's.
    pub digest_mismatches: u64,
    /// The latest checkpoint a quorum of nodes signed that its set matched at that version (0:
    /// none yet).
    pub witnessed_version: u64,
    /// Whether checkpoints are checked against trusted node keys (`--checkpoint-keys`).
    pub witness_verified: bool,
    /// Checkpoints refused: bad signatures, or too few trusted signers.
    pub witness_refusals: u64,
    /// With `--checkpoint-keys`: how long the oldest change held has gone without a checkpoint a
    /// quorum signed covering it, in milliseconds (null: every change is covered, or no keys).
    /// Past `--checkpoint-lag-ms` answers are stale.
    pub unwitnessed_ms: Option<u64>,
    /// Connections opened.
    pub connects: u64,
    /// The node it follows now, if connected.
    pub node: Option<String>,
    /// Why that node cannot vouch that its state is current, if it cannot (its heartbeats then
    /// do not count as contact): "no_leader_contact", "new_leader" or "behind_commit".
    pub node_stale_reason: Option<String>,
}

/// The routes, answering from `bearer` (its subscriber, and its verifier for tokens).
pub fn router(bearer: Arc<Bearer>) -> Router {
    Router::new()
        .route("/v1/check", get(check))
        .route("/v1/auth", any(forward_auth::auth))
        .route("/v1/token", post(forward_auth::token))
        .route("/v1/status", get(status))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(bearer)
}

/// Serves the routes on `listener`, each connection under `timeouts`, until `shutdown`
/// resolves, then lets requests in flight finish (within the close grace).
pub async fn serve(
    bearer: Arc<Bearer>,
    listener: TcpListener,
    tls: Option<crate::transport::Security>,
    timeouts: crate::transport::HttpTimeouts,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    crate::transport::serve_http(router(bearer), listener, tls, timeouts, shutdown)
        .await
        .context("the HTTP server failed")
}

async fn check(
    State(b): State<Arc<Bearer>>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let pairs = match query {
        Ok(Query(pairs)) => pairs,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("cannot read the query string ({e}): use ?iss=...&jti=..."),
            );
        }
    };
    match query::parse(&pairs) {
        Ok(facts) => {
            let answer = b.subscriber.check_confirmed(&facts).await;
            b.metrics.claims(&answer);
            Json(answer).into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

async fn status(State(b): State<Arc<Bearer>>) -> Json<StatusBody> {
    let sub: &Subscriber = &b.subscriber;
    let s = sub.status();
    Json(StatusBody {
        id: sub.config().id.clone(),
        version: s.version,
        version_at_ms: s.version_at_ms,
        digest: s.digest.to_string(),
        entries: s.entries,
        synced: s.synced,
        snapshots: s.snapshots,
        deltas: s.deltas,
        resyncs: s.resyncs,
        digest_mismatches: s.digest_mismatches,
        witnessed_version: s.witnessed_version,
        witness_verified: s.witness_verified,
        witness_refusals: s.witness_refusals,
        unwitnessed_ms: s.unwitnessed_ms,
        connects: s.connects,
        node: s.node,
        node_stale_reason: s.node_stale_reason,
    })
}

async fn metrics(State(b): State<Arc<Bearer>>) -> Response {
    crate::metrics::render(b.metrics.registry())
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(b): State<Arc<Bearer>>) -> (StatusCode, String) {
    let sub: &Subscriber = &b.subscriber;
    if sub.is_synced() {
        return (StatusCode::OK, "ready".into());
    }
    let s = sub.status();
    let reason = match (&s.node, s.connects) {
        (_, 0) => format!(
            "not ready: no node of the cluster ({}) has answered yet",
            sub.config().cluster.join(", ")
        ),
        (Some(node), _) => match &s.node_stale_reason {
            Some(why) => format!(
                "not ready: connected to {node}, which cannot vouch that its state is current \
                 ({why}); it turns ready once that node hears from its leader and catches up, \
                 or list more nodes in --cluster"
            ),
            None => format!("not ready: connected to {node}, first sync in progress"),
        },
        (None, n) => format!("not ready: {n} connection(s) ended before the first full sync"),
    };
    (StatusCode::SERVICE_UNAVAILABLE, reason)
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such endpoint: use GET /v1/check?iss=..., /v1/auth (Authorization: Bearer), \
         POST /v1/token, /v1/status, /metrics, /healthz or /readyz",
    )
}
