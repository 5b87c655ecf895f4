//! Bearer tokens over HTTP: the forward-auth endpoint that nginx `auth_request`, Traefik
//! `forwardAuth` and Envoy's HTTP `ext_authz` call, and a JSON endpoint for services.
//!
//! - `/v1/auth` (any method): reads `Authorization: Bearer <token>`. Allowed: 200 with the
//!   verified identity in `X-Recall-*` headers (the proxy copies them upstream). Refused: 401
//!   with `WWW-Authenticate: Bearer error="invalid_token", error_description="..."` (RFC 6750)
//!   and `X-Recall-Verdict`, the body the verdict in JSON.
//! - `POST /v1/token` with `{"token": "..."}`: 200 with the verdict in JSON, whatever it is.
//!
//! With no issuers configured both answer 500 and say how to configure them: a proxy then
//! refuses the request, and the log says why.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::bearer::{self, Bearer, NO_ISSUERS};
use super::http::error;
use crate::token::TokenVerdict;

/// `/v1/auth`: the forward-auth check of the request's bearer token.
pub async fn auth(State(b): State<Arc<Bearer>>, headers: HeaderMap) -> Response {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        // RFC 6750 section 3.1: a request without credentials gets a challenge, no error code.
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "no Authorization header: send `Authorization: Bearer <token>`",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"recall\""),
        );
        return r;
    };
    let token = match bearer::from_authorization(value.as_bytes()) {
        Ok(t) => t,
        Err(r) => return refused(&b.refuse(r), "invalid_request"),
    };
    match b.check(token).await {
        None => error(StatusCode::INTERNAL_SERVER_ERROR, NO_ISSUERS),
        Some(v) if v.verdict.allows() => {
            let mut r = (StatusCode::OK, Json(&v)).into_response();
            for (name, value) in bearer::identity_headers(&v, b.pass_claims) {
                if let Ok(value) = HeaderValue::from_str(&value) {
                    r.headers_mut().insert(HeaderName::from_static(name), value);
                }
            }
            r
        }
        Some(v) => refused(&v, "invalid_token"),
    }
}

/// A refusal: 401, the RFC 6750 challenge, the verdict in a header and in the body.
fn refused(v: &TokenVerdict, error: &str) -> Response {
    let mut r = (StatusCode::UNAUTHORIZED, Json(v)).into_response();
    let description = format!("{}: {}", v.verdict, v.description);
    if let Ok(value) = HeaderValue::from_str(&bearer::challenge(error, &description)) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    r.headers_mut().insert(
        HeaderName::from_static("x-recall-verdict"),
        HeaderValue::from_static(v.verdict.as_str()),
    );
    r
}

/// The body of `POST /v1/token`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The bearer token, as presented (without `Bearer `).
    pub token: String,
}

/// `POST /v1/token`: the verdict on a token in a JSON body.
pub async fn token(
    State(b): State<Arc<Bearer>>,
    body: Result<Json<TokenRequest>, JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("{e}: send {{\"token\": \"<the bearer token>\"}}"),
            );
        }
    };
    match b.check(&req.token).await {
        Some(v) => Json(v).into_response(),
        None => error(StatusCode::INTERNAL_SERVER_ERROR, NO_ISSUERS),
    }
}
