//! Push delivery (RFC 8935): the transmitter `POST`s one SET to `/ssf/events` as
//! `application/secevent+jwt`. 202 Accepted, with no body, once it is handled (written and
//! committed, or handled before, or needing nothing); 400 with `{"err", "description"}` and the
//! RFC's code when it is refused; 401 when the transmitter's bearer token is missing or wrong;
//! 503 with `Retry-After` when the cluster did not take the write, so the transmitter delivers
//! it again. `GET /metrics` and `/healthz` are served beside it.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use super::receive::{Outcome, Receiver};
use super::set::{Delivery, ErrorCode};

/// The content type of a pushed SET.
pub const SET_CONTENT_TYPE: &str = "application/secevent+jwt";

/// The routes, for SETs of at most `max_bytes`.
pub fn router(receiver: Arc<Receiver>, max_bytes: usize) -> Router {
    Router::new()
        .route("/ssf/events", post(push))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "no such endpoint: SETs are pushed with POST /ssf/events (RFC 8935); GET /metrics \
                 and /healthz are served too",
            )
        })
        .layer(DefaultBodyLimit::max(max_bytes))
        .with_state(receiver)
}

async fn metrics(State(r): State<Arc<Receiver>>) -> Response {
    crate::metrics::render(r.metrics().registry())
}

/// An RFC 8935 error response.
fn error(status: StatusCode, code: ErrorCode, description: &str) -> Response {
    let mut resp = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"err": code.as_str(), "description": description}).to_string(),
    )
        .into_response();
    if code == ErrorCode::AuthenticationFailed {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    resp
}

async fn push(
    State(r): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if content_type.as_deref() != Some(SET_CONTENT_TYPE) {
        return error(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
            &format!(
                "the Content-Type is {}; a pushed SET is sent as {SET_CONTENT_TYPE}",
                content_type.as_deref().unwrap_or("missing")
            ),
        );
    }
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            return error(
                e.status(),
                ErrorCode::InvalidRequest,
                &format!("the body cannot be read: {}", e.body_text()),
            );
        }
    };
    let Ok(set) = std::str::from_utf8(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
            "the body is not UTF-8 text: a SET is a compact JWS",
        );
    };
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match r
        .deliver(set.trim(), Delivery::Push { authorization })
        .await
    {
        Outcome::Accepted { .. } | Outcome::Duplicate { .. } => {
            StatusCode::ACCEPTED.into_response()
        }
        Outcome::Refused(e) => {
            let status = if e.code == ErrorCode::AuthenticationFailed {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::BAD_REQUEST
            };
            error(status, e.code, &e.description)
        }
        Outcome::Retry(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::RETRY_AFTER, "5"),
            ],
            json!({"description": format!("not written yet, deliver it again: {why}")}).to_string(),
        )
            .into_response(),
    }
}
