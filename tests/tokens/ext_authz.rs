//! Envoy's gRPC ext_authz against the sidecar, with a client built from the same `envoy-types`
//! (no Envoy binary can be installed here): a bearer token is verified and checked, a payload
//! Envoy's `jwt_authn` verified is checked for revocation, and the headers an allowed request
//! carries overwrite any the client sent.

use std::collections::HashMap;

use envoy_types::ext_authz::v3::pb::{
    CheckRequest, CheckResponse, HeaderAppendAction, HttpResponse,
};
use envoy_types::pb::envoy::config::core::v3::Metadata;
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use recall::sidecar::RunningSidecar;
use tempfile::TempDir;

use crate::fixture::token;
use crate::keys::{ISS, SigningKey, live_claims};
use crate::sidecar::{node_and_sidecar, revoke_and_wait};

async fn client(sidecar: &RunningSidecar) -> AuthorizationClient<tonic::transport::Channel> {
    let addr = sidecar.grpc_addr().unwrap();
    AuthorizationClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
}

/// A request whose HTTP headers are `headers`, with `metadata` as Envoy's metadata context.
fn request(headers: &[(&str, &str)], metadata: Option<Metadata>) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    path: "/orders".into(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            metadata_context: metadata,
            ..Default::default()
        }),
    }
}

/// The metadata `jwt_authn` writes with `payload_in_metadata: jwt_payload`.
fn jwt_authn_metadata(claims: &serde_json::Value) -> Metadata {
    fn value(v: &serde_json::Value) -> Value {
        let kind = match v {
            serde_json::Value::String(s) => Kind::StringValue(s.clone()),
            serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap()),
            serde_json::Value::Bool(b) => Kind::BoolValue(*b),
            other => Kind::StringValue(other.to_string()),
        };
        Value { kind: Some(kind) }
    }
    let payload = Struct {
        fields: claims
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), value(v)))
            .collect(),
    };
    let ns = Struct {
        fields: HashMap::from([(
            "jwt_payload".to_string(),
            Value {
                kind: Some(Kind::StructValue(payload)),
            },
        )]),
    };
    Metadata {
        filter_metadata: HashMap::from([("envoy.filters.http.jwt_authn".to_string(), ns)]),
        ..Default::default()
    }
}

fn code(r: &CheckResponse) -> i32 {
    r.status.as_ref().unwrap().code
}

/// The headers of an OK response, with whether each overwrites what the client sent.
fn ok_headers(r: &CheckResponse) -> HashMap<String, (String, bool)> {
    let Some(HttpResponse::OkResponse(ok)) = &r.http_response else {
        panic!("not an OK response: {r:?}")
    };
    ok.headers
        .iter()
        .map(|h| {
            let hv = h.header.as_ref().unwrap();
            let overwrite = h.append_action == HeaderAppendAction::OverwriteIfExistsOrAdd as i32;
            (hv.key.clone(), (hv.value.clone(), overwrite))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ext_authz_verifies_the_bearer_token_and_refuses_it_once_revoked() {
    let dir = TempDir::new().unwrap();
    let key = SigningKey::rs256("rsa-1");
    let (node, sidecar) = node_and_sidecar("sc-ext-1", &key, &dir).await;
    let mut c = client(&sidecar).await;
    let bearer = format!("Bearer {}", key.sign(&live_claims("t-1")));
    let req = request(
        &[("authorization", &bearer), ("x-recall-subject", "root")],
        None,
    );

    let r = c.check(req.clone()).await.unwrap().into_inner();
    assert_eq!(code(&r), 0, "{r:?}");
    let h = ok_headers(&r);
    assert_eq!(
        h["x-recall-subject"],
        ("alice".to_string(), true),
        "a client's header is overwritten"
    );
    assert_eq!(h["x-recall-verdict"].0, "allowed");

    revoke_and_wait(&node, &sidecar, vec![token(ISS, "t-1")]).await;
    let r = c.check(req).await.unwrap().into_inner();
    assert_eq!(code(&r), tonic::Code::Unauthenticated as i32, "{r:?}");
    let Some(HttpResponse::DeniedResponse(denied)) = &r.http_response else {
        panic!("{r:?}")
    };
    assert_eq!(denied.status.as_ref().unwrap().code, 401);
    let challenge = denied
        .headers
        .iter()
        .find_map(|h| h.header.as_ref().filter(|h| h.key == "www-authenticate"))
        .unwrap();
    assert!(
        challenge.value.contains("error=\"invalid_token\""),
        "{challenge:?}"
    );
    let body: serde_json::Value = serde_json::from_str(&denied.body).unwrap();
    assert_eq!(body["verdict"], "revoked", "{body}");

    // No credentials, or a forged token.
    let r = c.check(request(&[], None)).await.unwrap().into_inner();
    assert_eq!(code(&r), tonic::Code::Unauthenticated as i32);
    let forged = format!(
        "Bearer {}",
        SigningKey::es256("rsa-1").sign(&live_claims("t-2"))
    );
    let r = c
        .check(request(&[("authorization", &forged)], None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r), tonic::Code::Unauthenticated as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ext_authz_checks_the_payload_jwt_authn_verified() {
    let dir = TempDir::new().unwrap();
    let key = SigningKey::es256("k");
    let (node, sidecar) = node_and_sidecar("sc-ext-2", &key, &dir).await;
    let mut c = client(&sidecar).await;
    let claims = live_claims("t-7");
    let req = request(&[], Some(jwt_authn_metadata(&claims)));
    let r = c.check(req.clone()).await.unwrap().into_inner();
    assert_eq!(code(&r), 0, "{r:?}");
    assert_eq!(ok_headers(&r)["x-recall-tenant"].0, "acme");

    revoke_and_wait(&node, &sidecar, vec![token(ISS, "t-7")]).await;
    let r = c.check(req).await.unwrap().into_inner();
    assert_eq!(code(&r), tonic::Code::Unauthenticated as i32, "{r:?}");

    // A payload in milliseconds is refused, not compared with rules.
    let mut ms = live_claims("t-8");
    ms["iat"] = serde_json::json!(ms["iat"].as_i64().unwrap() * 1000);
    let r = c
        .check(request(&[], Some(jwt_authn_metadata(&ms))))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r), tonic::Code::Unauthenticated as i32);
    let Some(HttpResponse::DeniedResponse(denied)) = &r.http_response else {
        panic!("{r:?}")
    };
    assert!(denied.body.contains("milliseconds?"), "{}", denied.body);
}
