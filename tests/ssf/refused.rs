//! What a transmitter is told when a SET is not accepted, with the RFC 8935 codes: forged,
//! unsigned, misaddressed, from an unknown issuer, too old, not a SET, naming an issuer the
//! transmitter may not act on, or pushed without the transmitter's bearer token. None of them
//! writes anything.

use serde_json::{Value, json};

use super::keys::{SigningKey, jwks};
use super::support::{self, AUDIENCE, PUSH_TOKEN, Receiver, TRANSMITTER, claims, set, set_with};

const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";

fn subject() -> Value {
    json!({"format": "opaque", "id": "erin"})
}

fn good(jti: &str) -> Value {
    claims(jti, SESSION_REVOKED, json!({}), subject())
}

fn with(mut v: Value, changes: Value) -> Value {
    for (k, x) in changes.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

#[tokio::test]
async fn forged_misaddressed_and_stale_sets_are_refused_with_the_rfc_codes() {
    let node = support::node(true).await;
    let key = SigningKey::es256("t-1");
    let rs = SigningKey::rs256("t-rsa");
    let rx = Receiver::start(&node.addr, &jwks(&[&key, &rs]), None).await;
    // What subscribers see: the node's own start-up entries may still raise its version.
    let view = node.node.sm.with_set(|s| (s.digest(), s.len()));
    let typ = json!({"typ": "secevent+jwt"});
    // The same kid, another key: a forgery.
    let forger = SigningKey::es256("t-1");
    let none = {
        use base64::Engine;
        let b = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "{}.{}.",
            b(&json!({"alg": "none", "typ": "secevent+jwt"})),
            b(&good("n"))
        )
    };
    // An RS256 public key used as an HMAC secret.
    let hs = {
        let secret = rs.public_pem.clone().unwrap();
        let k = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap();
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = Some("t-rsa".into());
        h.typ = Some("secevent+jwt".into());
        jsonwebtoken::encode(&h, &good("hs"), &k).unwrap()
    };
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "forged signature",
            set_with(&forger, typ.clone(), good("f")),
            400,
            "invalid_key",
        ),
        ("alg none", none, 400, "invalid_key"),
        ("public key as HMAC secret", hs, 400, "invalid_key"),
        (
            "another audience",
            set_with(
                &key,
                typ.clone(),
                with(good("a"), json!({"aud": "https://other/ssf"})),
            ),
            400,
            "invalid_audience",
        ),
        (
            "unknown transmitter",
            set_with(
                &key,
                typ.clone(),
                with(good("i"), json!({"iss": "https://evil.example"})),
            ),
            400,
            "invalid_issuer",
        ),
        (
            "issued two days ago",
            set_with(
                &key,
                typ.clone(),
                with(good("o"), json!({"iat": support::now() - 172_800})),
            ),
            400,
            "invalid_request",
        ),
        (
            "an access token, not a SET",
            set_with(&key, json!({"typ": "JWT"}), good("t")),
            400,
            "invalid_request",
        ),
        (
            "two events in one SET",
            set_with(
                &key,
                typ.clone(),
                with(
                    good("e"),
                    json!({"events": {SESSION_REVOKED: {}, "urn:x": {}}}),
                ),
            ),
            400,
            "invalid_request",
        ),
        (
            "another issuer's subject",
            set(
                &key,
                "d",
                SESSION_REVOKED,
                json!({}),
                json!({"format": "iss_sub", "iss": "https://bank.example", "sub": "erin"}),
            ),
            400,
            "access_denied",
        ),
        ("not a JWT", "hello".to_string(), 400, "invalid_request"),
    ];
    for (what, body, status, err) in cases {
        let (got, reply) = rx.push(&body).await;
        assert_eq!(
            (got, reply["err"].as_str()),
            (status, Some(err)),
            "{what}: {reply}"
        );
        assert!(
            !reply["description"].as_str().unwrap_or("").is_empty(),
            "{what}: a description says what was wrong"
        );
    }
    let s = set(&key, "auth", SESSION_REVOKED, json!({}), subject());
    let (got, reply) = rx.push_as(&s, "application/secevent+jwt", None).await;
    assert_eq!(
        (got, reply["err"].as_str()),
        (401, Some("authentication_failed"))
    );
    let (got, _) = rx
        .push_as(&s, "application/secevent+jwt", Some("wrong-token"))
        .await;
    assert_eq!(got, 401, "a wrong bearer token");
    let (got, reply) = rx.push_as(&s, "application/json", Some(PUSH_TOKEN)).await;
    assert_eq!((got, reply["err"].as_str()), (400, Some("invalid_request")));
    assert!(
        reply["description"]
            .as_str()
            .unwrap()
            .contains("secevent+jwt")
    );
    let huge = "x".repeat(64 * 1024);
    let (got, _) = rx.push(&huge).await;
    assert_eq!(got, 413, "an oversized body");
    assert_eq!(
        node.node.sm.with_set(|s| (s.digest(), s.len())),
        view,
        "nothing refused was written"
    );
    let m = rx.metrics().await;
    assert!(
        m.contains(r#"recall_ssf_refused_total{err="invalid_key"} 3"#),
        "{m}"
    );
    let _ = (AUDIENCE, TRANSMITTER);
}

#[tokio::test]
async fn a_flood_of_pushes_beyond_the_in_flight_limit_is_told_to_retry_at_once() {
    // No cluster answers: every accepted delivery keeps trying it until write_timeout_s (3 s).
    let dead = format!("127.0.0.1:{}", {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    });
    let key = SigningKey::es256("t-1");
    let rx = std::sync::Arc::new(Receiver::start(&dead, &jwks(&[&key]), None).await);
    let limit = recall::ssf::receive::MAX_IN_FLIGHT;
    let push = |i: usize| {
        let rx = rx.clone();
        let s = set(
            &key,
            &format!("flood-{i}"),
            SESSION_REVOKED,
            json!({}),
            subject(),
        );
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let (status, body) = rx.push(&s).await;
            (status, body, started.elapsed())
        })
    };
    // The limit's worth of deliveries, each held by the dead cluster for the write timeout.
    let held: Vec<_> = (0..limit).map(push).collect();
    let full = format!("recall_ssf_deliveries_in_progress {limit}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !rx.metrics().await.contains(&full) {
        assert!(
            std::time::Instant::now() < deadline,
            "{limit} deliveries never were in progress at once"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Every push past the limit is told at once that the receiver is busy, long before the
    // held ones give up on the cluster.
    let extra: Vec<_> = (limit..limit + 16).map(push).collect();
    for p in futures::future::join_all(extra).await {
        let (status, body, took) = p.unwrap();
        assert_eq!(status, 503, "{body}");
        let why = body["description"].as_str().unwrap_or_default();
        assert!(why.contains("already in progress"), "{why}");
        assert!(
            took < std::time::Duration::from_secs(2),
            "answered at once: {took:?}"
        );
    }
    for p in futures::future::join_all(held).await {
        let (status, body, _) = p.unwrap();
        assert_eq!(status, 503, "{body}");
        let why = body["description"].as_str().unwrap_or_default();
        assert!(why.contains("did not go through"), "{why}");
    }
    assert!(
        rx.metrics()
            .await
            .contains("recall_ssf_deliveries_in_progress 0"),
        "every delivery ended"
    );
}
