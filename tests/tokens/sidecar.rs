//! A real node and a sidecar verifying bearer tokens: forward-auth allows a good token with its
//! identity in headers and refuses it with RFC 6750's challenge once revoked, by `jti` or under
//! its tenant; the JSON endpoint answers every verdict; a sidecar that never synced answers
//! `stale`.

use std::time::Duration;

use recall::sidecar::{RunningSidecar, SidecarConfig};
use recall::subscriber::SubscriberConfig;
use recall::token::IssuerPolicy;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpListener;

use crate::fixture::{OneNode, revoke, subscriber_security, token};
use crate::keys::{AUD, ISS, SigningKey, jwks, live_claims, now_s, with};
use recall::proto as pb;

/// A sidecar verifying [`ISS`]'s tokens signed by `key` (tenant claim `tid`), following
/// `subscriber`; its HTTP and gRPC faces on loopback.
pub async fn start(
    subscriber: SubscriberConfig,
    key: &SigningKey,
    dir: &TempDir,
) -> RunningSidecar {
    let file = dir.path().join("jwks.json");
    std::fs::write(&file, jwks(&[key])).unwrap();
    let mut policy = IssuerPolicy::new(ISS, AUD, file);
    policy.tenant_claim = Some("tid".into());
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = SidecarConfig::new(subscriber);
    config.http_listen = http.local_addr().unwrap().to_string();
    config.grpc_listen = Some(grpc.local_addr().unwrap().to_string());
    config.issuers = vec![policy];
    RunningSidecar::start(config, http, Some(grpc))
        .await
        .unwrap()
}

/// A node and a synced sidecar in front of it.
pub async fn node_and_sidecar(
    id: &str,
    key: &SigningKey,
    dir: &TempDir,
) -> (OneNode, RunningSidecar) {
    let node = OneNode::start().await;
    let sidecar = start(node.subscriber_config(id), key, dir).await;
    sidecar
        .subscriber()
        .wait_synced(Duration::from_secs(10))
        .await
        .unwrap();
    (node, sidecar)
}

/// `GET /v1/auth` with `authorization`: status, headers, JSON body.
pub async fn auth(
    sidecar: &RunningSidecar,
    authorization: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = reqwest::Client::new().get(format!("http://{}/v1/auth", sidecar.http_addr()));
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.json().await.unwrap())
}

fn header<'h>(h: &'h reqwest::header::HeaderMap, name: &str) -> &'h str {
    h.get(name).map(|v| v.to_str().unwrap()).unwrap_or("")
}

/// Revokes `items` and waits until the sidecar applied them.
pub async fn revoke_and_wait(node: &OneNode, sidecar: &RunningSidecar, items: Vec<pb::Revocation>) {
    let v = revoke(&mut node.client().await, items).await;
    sidecar
        .subscriber()
        .wait_version(v, Duration::from_secs(10))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_allows_a_good_token_and_refuses_it_once_revoked() {
    let dir = TempDir::new().unwrap();
    let key = SigningKey::es256("k1");
    let (node, sidecar) = node_and_sidecar("sc-tok-1", &key, &dir).await;
    let bearer = format!("Bearer {}", key.sign(&live_claims("t-1")));

    let (code, h, body) = auth(&sidecar, Some(&bearer)).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["verdict"], "allowed", "{body}");
    assert_eq!(header(&h, "x-recall-subject"), "alice");
    assert_eq!(header(&h, "x-recall-issuer"), ISS);
    assert_eq!(header(&h, "x-recall-client"), "web-app");
    assert_eq!(header(&h, "x-recall-tenant"), "acme");

    revoke_and_wait(&node, &sidecar, vec![token(ISS, "t-1")]).await;
    let (code, h, body) = auth(&sidecar, Some(&bearer)).await;
    assert_eq!(code, 401, "{body}");
    assert_eq!(body["verdict"], "revoked", "{body}");
    assert_eq!(
        body["matches"],
        json!([{"type": "entry", "kind": "token", "under": "issuer", "exact": true}])
    );
    let challenge = header(&h, "www-authenticate");
    assert!(
        challenge.starts_with("Bearer realm=\"recall\", error=\"invalid_token\""),
        "{challenge}"
    );
    assert!(
        challenge.contains("error_description=\"revoked: "),
        "{challenge}"
    );
    assert_eq!(header(&h, "x-recall-verdict"), "revoked");
    assert_eq!(
        header(&h, "x-recall-subject"),
        "",
        "a refusal names no identity"
    );
    // Another token of the same subject is still good.
    let other = format!("Bearer {}", key.sign(&live_claims("t-2")));
    assert_eq!(auth(&sidecar, Some(&other)).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_under_its_tenant_is_refused() {
    let dir = TempDir::new().unwrap();
    let key = SigningKey::eddsa("k1");
    let (node, sidecar) = node_and_sidecar("sc-tok-2", &key, &dir).await;
    let bearer = format!("Bearer {}", key.sign(&live_claims("t-9")));
    assert_eq!(auth(&sidecar, Some(&bearer)).await.0, 200);
    // The session is revoked in the tenant's namespace, not the issuer's.
    let item = pb::Revocation {
        key: Some(pb::RevocationKey {
            kind: pb::Kind::Session as i32,
            namespace: "acme".into(),
            value: "s-1".into(),
        }),
        expires_at_ms: None,
    };
    revoke_and_wait(&node, &sidecar, vec![item]).await;
    let (code, _, body) = auth(&sidecar, Some(&bearer)).await;
    assert_eq!(code, 401, "{body}");
    assert_eq!(
        body["matches"],
        json!([{"type": "entry", "kind": "session", "under": "tenant", "exact": true}])
    );
    assert!(
        body["description"]
            .as_str()
            .unwrap()
            .contains("tenant acme"),
        "{body}"
    );
    // The claims query finds it too (it used to look under `iss` only).
    let url = format!(
        "http://{}/v1/check?iss={ISS}&tenant=acme&sid=s-1",
        sidecar.http_addr()
    );
    let body: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    assert_eq!(body["status"], "revoked", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_other_credentials_get_a_challenge() {
    let dir = TempDir::new().unwrap();
    let key = SigningKey::es256("k1");
    let (_node, sidecar) = node_and_sidecar("sc-tok-3", &key, &dir).await;
    let (code, h, body) = auth(&sidecar, None).await;
    assert_eq!(code, 401, "{body}");
    assert_eq!(header(&h, "www-authenticate"), "Bearer realm=\"recall\"");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer"),
        "{body}"
    );
    let (code, h, body) = auth(&sidecar, Some("Basic YWxpY2U6cHc=")).await;
    assert_eq!(code, 401, "{body}");
    assert!(header(&h, "www-authenticate").contains("error=\"invalid_request\""));
    assert_eq!(body["verdict"], "malformed", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_endpoint_answers_every_verdict_and_refuses_bad_bodies() {
    let dir = TempDir::new().unwrap();
    let key = SigningKey::es256("k1");
    let (_node, sidecar) = node_and_sidecar("sc-tok-4", &key, &dir).await;
    let post = |body: Value| {
        let url = format!("http://{}/v1/token", sidecar.http_addr());
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let now = now_s();
    let cases = [
        (live_claims("a"), "allowed"),
        (
            with(
                live_claims("b"),
                json!({"exp": now - 3600, "iat": now - 4000}),
            ),
            "expired",
        ),
        (
            with(live_claims("c"), json!({"aud": "billing"})),
            "wrong_audience",
        ),
        (
            with(live_claims("d"), json!({"exp": now + 86400 * 30})),
            "lifetime_too_long",
        ),
    ];
    for (claims, want) in cases {
        let (code, body) = post(json!({"token": key.sign(&claims)})).await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["verdict"], want, "{body}");
        assert!(!body["description"].as_str().unwrap().is_empty(), "{body}");
    }
    let (code, body) = post(json!({"jwt": "x"})).await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("{\"token\""),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_that_never_synced_answers_stale_when_fail_closed() {
    let dir = TempDir::new().unwrap();
    let key = SigningKey::es256("k1");
    // Nothing listens there: the sidecar never syncs.
    let unused = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = unused.local_addr().unwrap().to_string();
    drop(unused);
    let sub = SubscriberConfig::new(vec![addr], "sc-tok-5", subscriber_security("sc-tok-5"));
    let sidecar = start(sub, &key, &dir).await;
    let bearer = format!("Bearer {}", key.sign(&live_claims("t-1")));
    let (code, h, body) = auth(&sidecar, Some(&bearer)).await;
    assert_eq!(code, 401, "{body}");
    assert_eq!(body["verdict"], "stale", "{body}");
    assert!(
        body["description"]
            .as_str()
            .unwrap()
            .contains("never synchronised"),
        "{body}"
    );
    assert_eq!(header(&h, "x-recall-verdict"), "stale");
    // A forged token is still refused for what it is, not for staleness.
    let forged = format!(
        "Bearer {}",
        SigningKey::es256("k1").sign(&live_claims("t-1"))
    );
    assert_eq!(
        auth(&sidecar, Some(&forged)).await.2["verdict"],
        "bad_signature"
    );
}
