//! Envoy's gRPC external authorization (`envoy.service.auth.v3.Authorization/Check`), served
//! beside `recall.v1.Check` on the sidecar's gRPC listener.
//!
//! Two ways in:
//! - the request's `Authorization: Bearer <token>` header, verified here like `/v1/auth`;
//! - or, when Envoy's `jwt_authn` filter has verified the token already and put its payload in
//!   the metadata (`payload_in_metadata`, with `metadata_context_namespaces:
//!   [envoy.filters.http.jwt_authn]` on the ext_authz filter), that payload: only revocation is
//!   checked then. The `kid` is not in the payload, so key-wide revocations need the header way.
//!
//! Allowed: OK, with the verified identity as `x-recall-*` request headers that overwrite any
//! the client sent. Refused: UNAUTHENTICATED and a 401 with the RFC 6750 challenge.

use std::collections::HashMap;
use std::sync::Arc;

use envoy_types::ext_authz::v3::pb::{
    Authorization, CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction,
    HeaderValue, HeaderValueOption, HttpResponse, HttpStatus, HttpStatusCode, OkHttpResponse,
};
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use envoy_types::pb::google::rpc;
use serde_json::Map;
use tonic::{Request, Response, Status};

use super::bearer::{self, Bearer, NO_ISSUERS};
use crate::token::{Reason, Rejection, TokenVerdict, Verified};

/// The metadata namespace Envoy's JWT filter writes verified payloads under.
pub const JWT_AUTHN_NAMESPACE: &str = "envoy.filters.http.jwt_authn";

/// The ext_authz service over a sidecar's [`Bearer`].
pub struct ExtAuthz {
    bearer: Arc<Bearer>,
}

impl ExtAuthz {
    /// Answers from `bearer`.
    pub fn new(bearer: Arc<Bearer>) -> Self {
        Self { bearer }
    }

    async fn verdict(&self, req: &CheckRequest) -> Result<TokenVerdict, &'static str> {
        if let Some(payload) = jwt_payload(req) {
            return Ok(self.check_payload(payload).await);
        }
        let header = req
            .attributes
            .as_ref()
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref())
            .and_then(|h| h.headers.get("authorization"));
        let Some(header) = header else {
            return Ok(self.bearer.refuse(Rejection::new(
                Reason::Malformed,
                "no Authorization header: send `Authorization: Bearer <token>`",
            )));
        };
        match bearer::from_authorization(header.as_bytes()) {
            Err(r) => Ok(self.bearer.refuse(r)),
            Ok(token) => self.bearer.check(token).await.ok_or(NO_ISSUERS),
        }
    }

    /// The verdict on a payload Envoy verified: the revocation check on its claims.
    async fn check_payload(&self, payload: &Struct) -> TokenVerdict {
        let claims: Map<String, serde_json::Value> = payload
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), to_json(v)))
            .collect();
        let tenant_claim = self
            .bearer
            .verifier
            .as_ref()
            .zip(claims.get("iss").and_then(|v| v.as_str()))
            .and_then(|(v, iss)| v.tenant_claim(iss).map(str::to_string));
        let verified = Verified::from_claims(claims, tenant_claim.as_deref()).map(Arc::new);
        self.bearer.decide(verified).await
    }
}

/// The payload Envoy's JWT filter left in the metadata: the only struct under its namespace
/// that has an `iss`, or the one named `jwt_payload` when there are several.
fn jwt_payload(req: &CheckRequest) -> Option<&Struct> {
    let ns = req
        .attributes
        .as_ref()?
        .metadata_context
        .as_ref()?
        .filter_metadata
        .get(JWT_AUTHN_NAMESPACE)?;
    let payloads: HashMap<&str, &Struct> = ns
        .fields
        .iter()
        .filter_map(|(k, v)| match &v.kind {
            Some(Kind::StructValue(s)) if s.fields.contains_key("iss") => Some((k.as_str(), s)),
            _ => None,
        })
        .collect();
    match payloads.len() {
        1 => payloads.into_values().next(),
        _ => payloads.get("jwt_payload").copied(),
    }
}

fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => J::Null,
        Some(Kind::NumberValue(n)) => {
            if n.fract() == 0.0 && n.abs() < 9.0e15 {
                J::from(*n as i64)
            } else {
                serde_json::Number::from_f64(*n).map_or(J::Null, J::Number)
            }
        }
        Some(Kind::StringValue(s)) => J::String(s.clone()),
        Some(Kind::BoolValue(b)) => J::Bool(*b),
        Some(Kind::StructValue(s)) => J::Object(
            s.fields
                .iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect(),
        ),
        Some(Kind::ListValue(l)) => J::Array(l.values.iter().map(to_json).collect()),
    }
}

fn header(key: &str, value: String) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.to_string(),
            value,
            raw_value: Vec::new(),
        }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    }
}

fn status(code: tonic::Code, message: String) -> Option<rpc::Status> {
    Some(rpc::Status {
        code: code as i32,
        message,
        details: vec![],
    })
}

fn denied(code: HttpStatusCode, headers: Vec<HeaderValueOption>, body: String) -> HttpResponse {
    HttpResponse::DeniedResponse(DeniedHttpResponse {
        status: Some(HttpStatus { code: code as i32 }),
        headers,
        body,
    })
}

/// The response for a verdict.
pub fn response(v: &TokenVerdict, pass_claims: bool) -> CheckResponse {
    let body = serde_json::to_string(v).unwrap_or_default();
    if v.verdict.allows() {
        let headers = bearer::identity_headers(v, pass_claims)
            .into_iter()
            .map(|(k, v)| header(k, v))
            .collect();
        return CheckResponse {
            status: status(tonic::Code::Ok, String::new()),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                headers,
                ..Default::default()
            })),
            ..Default::default()
        };
    }
    let description = format!("{}: {}", v.verdict, v.description);
    let headers = vec![
        header(
            "www-authenticate",
            bearer::challenge("invalid_token", &description),
        ),
        header("x-recall-verdict", v.verdict.as_str().to_string()),
        header("content-type", "application/json".to_string()),
    ];
    CheckResponse {
        status: status(tonic::Code::Unauthenticated, description),
        http_response: Some(denied(HttpStatusCode::Unauthorized, headers, body)),
        ..Default::default()
    }
}

#[tonic::async_trait]
impl Authorization for ExtAuthz {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let req = request.into_inner();
        let reply = match self.verdict(&req).await {
            Ok(v) => response(&v, self.bearer.pass_claims),
            Err(why) => CheckResponse {
                status: status(tonic::Code::Internal, why.to_string()),
                http_response: Some(denied(
                    HttpStatusCode::InternalServerError,
                    vec![],
                    why.to_string(),
                )),
                ..Default::default()
            },
        };
        Ok(Response::new(reply))
    }
}
