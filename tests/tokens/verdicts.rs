//! One test per verdict of the verifier, with tokens signed by real keys, and the classic
//! attacks refused: `alg: none`, a public key used as an HMAC secret, key-type confusion, a
//! token for another audience, a lifetime over the maximum, a JWKS swap without the old `kid`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use recall::token::{IssuerPolicy, Reason, Verifier};
use serde_json::json;
use tempfile::TempDir;

use crate::keys::{AUD, ISS, NOW, SigningKey, claims, clock, forged, jwks, with};

/// A verifier for [`ISS`] whose keys are `keys`, in a JWKS file in `dir`, with `edit` applied
/// to the policy.
async fn verifier(
    dir: &Path,
    keys: &[&SigningKey],
    edit: impl FnOnce(&mut IssuerPolicy),
) -> Arc<Verifier> {
    let file = dir.join("jwks.json");
    std::fs::write(&file, jwks(keys)).unwrap();
    let mut policy = IssuerPolicy::new(ISS, AUD, file);
    policy.tenant_claim = Some("tid".into());
    edit(&mut policy);
    Verifier::start(vec![policy], clock()).await.unwrap()
}

/// The reason `token` is refused, and its detail.
async fn refused(v: &Verifier, token: &str) -> (Reason, String) {
    let r = v
        .verify(token)
        .await
        .expect_err("the token must be refused");
    (r.reason, r.detail)
}

#[tokio::test]
async fn rs256_es256_and_eddsa_tokens_verify_and_yield_their_facts() {
    let dir = TempDir::new().unwrap();
    let (rsa, ec, ed) = (
        SigningKey::rs256("rsa-1"),
        SigningKey::es256("ec-1"),
        SigningKey::eddsa("ed-1"),
    );
    let v = verifier(dir.path(), &[&rsa, &ec, &ed], |_| {}).await;
    for key in [&rsa, &ec, &ed] {
        let ok = v.verify(&key.sign(&claims("t-1"))).await.unwrap();
        let f = ok.facts();
        assert_eq!(f.iss, ISS);
        assert_eq!(
            (f.sub, f.jti, f.sid, f.client, f.kid, f.tenant, f.iat),
            (
                Some("alice"),
                Some("t-1"),
                Some("s-1"),
                Some("web-app"),
                Some(key.kid.as_str()),
                Some("acme"),
                Some(NOW - 60)
            ),
            "{:?}",
            key.alg
        );
    }
    // `client_id` stands in for `azp`.
    let c = with(claims("t-2"), json!({"azp": null, "client_id": "cli"}));
    assert_eq!(
        v.verify(&ec.sign(&c)).await.unwrap().client.as_deref(),
        Some("cli")
    );
}

#[tokio::test]
async fn expired() {
    let dir = TempDir::new().unwrap();
    let k = SigningKey::es256("k");
    let v = verifier(dir.path(), &[&k], |p| p.leeway_s = 30).await;
    let t = k.sign(&with(
        claims("t"),
        json!({"exp": NOW - 31, "iat": NOW - 100}),
    ));
    let (reason, detail) = refused(&v, &t).await;
    assert_eq!(reason, Reason::Expired);
    assert!(detail.contains("31s ago"), "{detail}");
    // Within the leeway it still passes.
    let t = k.sign(&with(
        claims("t"),
        json!({"exp": NOW - 29, "iat": NOW - 100}),
    ));
    v.verify(&t).await.unwrap();
}

#[tokio::test]
async fn not_yet_valid() {
    let dir = TempDir::new().unwrap();
    let k = SigningKey::eddsa("k");
    let v = verifier(dir.path(), &[&k], |_| {}).await;
    let t = k.sign(&with(claims("t"), json!({"nbf": NOW + 120})));
    assert_eq!(refused(&v, &t).await.0, Reason::NotYetValid);
    let t = k.sign(&with(claims("t"), json!({"iat": NOW + 120})));
    let (reason, detail) = refused(&v, &t).await;
    assert_eq!(reason, Reason::NotYetValid);
    assert!(detail.contains("in the future"), "{detail}");
}

#[tokio::test]
async fn bad_signature() {
    let dir = TempDir::new().unwrap();
    let published = SigningKey::es256("k");
    let impostor = SigningKey::es256("k");
    let v = verifier(dir.path(), &[&published], |_| {}).await;
    let (reason, _) = refused(&v, &impostor.sign(&claims("t"))).await;
    assert_eq!(reason, Reason::BadSignature);
    // A claim changed after signing.
    let good = published.sign(&claims("t"));
    let parts: Vec<&str> = good.split('.').collect();
    let tampered = forged(
        &json!({"alg": "ES256", "kid": "k"}),
        &with(claims("t"), json!({"sub": "admin"})),
        b"",
    );
    let tampered = format!("{}.{}", &tampered[..tampered.rfind('.').unwrap()], parts[2]);
    assert_eq!(refused(&v, &tampered).await.0, Reason::BadSignature);
}

#[tokio::test]
async fn unknown_key() {
    let dir = TempDir::new().unwrap();
    let k = SigningKey::es256("k-1");
    let other = SigningKey::es256("k-2");
    let v = verifier(dir.path(), &[&k], |_| {}).await;
    let (reason, detail) = refused(&v, &other.sign(&claims("t"))).await;
    assert_eq!(reason, Reason::UnknownKey);
    assert!(detail.contains("k-2"), "{detail}");
}

#[tokio::test]
async fn algorithm_not_allowed_none_and_key_confusion() {
    let dir = TempDir::new().unwrap();
    let rsa = SigningKey::rs256("rsa");
    let ec = SigningKey::es256("ec");
    let v = verifier(dir.path(), &[&rsa, &ec], |p| {
        p.algorithms = vec!["RS256".into(), "ES256".into()]
    })
    .await;
    // alg: none, with or without a signature.
    for sig in [&b""[..], b"x"] {
        let t = forged(&json!({"alg": "none", "kid": "rsa"}), &claims("t"), sig);
        let (reason, detail) = refused(&v, &t).await;
        assert!(
            matches!(reason, Reason::AlgorithmNotAllowed | Reason::Malformed),
            "{reason:?}: {detail}"
        );
    }
    let t = forged(&json!({"alg": "none"}), &claims("t"), b"x");
    let (reason, detail) = refused(&v, &t).await;
    assert_eq!(reason, Reason::AlgorithmNotAllowed);
    assert!(detail.contains("never accepted"), "{detail}");
    // The RSA public key used as an HS256 secret.
    let secret = rsa.public_pem.clone().unwrap();
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("rsa".into());
    let t = jsonwebtoken::encode(
        &h,
        &claims("t"),
        &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(refused(&v, &t).await.0, Reason::AlgorithmNotAllowed);
    // An ES256 token naming the RSA key: the key's type must fit the algorithm.
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("rsa".into());
    let t = jsonwebtoken::encode(&h, &claims("t"), &ec.encoding).unwrap();
    let (reason, detail) = refused(&v, &t).await;
    assert_eq!(reason, Reason::AlgorithmNotAllowed);
    assert!(detail.contains("its own type"), "{detail}");
    // An algorithm outside the issuer's list.
    let ed = SigningKey::eddsa("ed");
    let v = verifier(dir.path(), &[&ed], |p| p.algorithms = vec!["ES256".into()]).await;
    assert_eq!(
        refused(&v, &ed.sign(&claims("t"))).await.0,
        Reason::AlgorithmNotAllowed
    );
}

#[tokio::test]
async fn public_key_as_hmac_secret_fails_even_where_hmac_is_allowed() {
    let dir = TempDir::new().unwrap();
    let rsa = SigningKey::rs256("rsa");
    let secret_file = dir.path().join("hmac.secret");
    std::fs::write(&secret_file, "0123456789abcdef0123456789abcdef\n").unwrap();
    let v = verifier(dir.path(), &[&rsa], |p| {
        p.algorithms = vec!["RS256".into(), "HS256".into()];
        p.hmac_secret_file = Some(secret_file.clone());
    })
    .await;
    let pem = rsa.public_pem.clone().unwrap();
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("rsa".into());
    let attack = jsonwebtoken::encode(
        &h,
        &claims("t"),
        &EncodingKey::from_secret(pem.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(refused(&v, &attack).await.0, Reason::BadSignature);
    // The real secret (without its newline) verifies.
    let honest = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims("t"),
        &EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef").unwrap(),
    )
    .unwrap();
    v.verify(&honest).await.unwrap();
}

#[tokio::test]
async fn wrong_issuer() {
    let dir = TempDir::new().unwrap();
    let k = SigningKey::es256("k");
    let v = verifier(dir.path(), &[&k], |_| {}).await;
    for iss in [json!("https://evil.example"), json!("https://idp.example/")] {
        let t = k.sign(&with(claims("t"), json!({ "iss": iss })));
        assert_eq!(refused(&v, &t).await.0, Reason::WrongIssuer, "{iss}");
    }
    let t = k.sign(&with(claims("t"), json!({"iss": null})));
    assert_eq!(refused(&v, &t).await.0, Reason::WrongIssuer);
}

#[tokio::test]
async fn wrong_audience() {
    let dir = TempDir::new().unwrap();
    let k = SigningKey::es256("k");
    let v = verifier(dir.path(), &[&k], |_| {}).await;
    for aud in [
        json!("billing-api"),
        json!(["billing-api", "x"]),
        json!(null),
    ] {
        let t = k.sign(&with(claims("t"), json!({ "aud": aud })));
        assert_eq!(refused(&v, &t).await.0, Reason::WrongAudience, "{aud}");
    }
    let t = k.sign(&with(claims("t"), json!({"aud": ["billing-api", AUD]})));
    v.verify(&t).await.unwrap();
}

#[tokio::test]
async fn lifetime_too_long() {
    let dir = TempDir::new().unwrap();
    let k = SigningKey::es256("k");
    let v = verifier(dir.path(), &[&k], |p| p.max_lifetime_s = 900).await;
    let t = k.sign(&with(
        claims("t"),
        json!({"iat": NOW - 10, "exp": NOW + 891}),
    ));
    let (reason, detail) = refused(&v, &t).await;
    assert_eq!(reason, Reason::LifetimeTooLong);
    assert!(detail.contains("901s"), "{detail}");
    let t = k.sign(&with(
        claims("t"),
        json!({"iat": NOW - 10, "exp": NOW + 890}),
    ));
    v.verify(&t).await.unwrap();
}

#[tokio::test]
async fn malformed_tokens_say_what_is_wrong() {
    let dir = TempDir::new().unwrap();
    let k = SigningKey::es256("k");
    let v = verifier(dir.path(), &[&k], |p| {
        p.required_claims = vec!["jti".into()];
        p.max_token_bytes = 2048;
    })
    .await;
    let cases = [
        ("not.a.jwt.at.all".to_string(), "three base64url parts"),
        (k.sign(&with(claims("t"), json!({"exp": null}))), "no `exp`"),
        (k.sign(&with(claims("t"), json!({"iat": null}))), "no `iat`"),
        (
            k.sign(&with(claims("t"), json!({"iat": (NOW - 60) * 1000}))),
            "milliseconds?",
        ),
        (
            k.sign(&with(claims("t"), json!({"jti": null}))),
            "`jti` is missing",
        ),
        (
            k.sign(&with(claims("t"), json!({"sub": 42}))),
            "`sub` claim is not a string",
        ),
        (
            k.sign(&with(claims("t"), json!({"pad": "x".repeat(3000)}))),
            "over the limit",
        ),
        (
            forged(
                &json!({"alg": "ES256", "kid": "k", "crit": ["b64"]}),
                &claims("t"),
                b"s",
            ),
            "crit",
        ),
    ];
    for (token, needle) in cases {
        let (reason, detail) = refused(&v, &token).await;
        assert_eq!(reason, Reason::Malformed, "{needle}: {detail}");
        assert!(detail.contains(needle), "{needle}: {detail}");
    }
}

#[tokio::test]
async fn a_jwks_swap_without_the_old_kid_refuses_its_tokens() {
    let dir = TempDir::new().unwrap();
    let old = SigningKey::es256("2026-11");
    let new = SigningKey::es256("2026-12");
    let v = verifier(dir.path(), &[&old], |_| {}).await;
    let old_token = old.sign(&claims("t-old"));
    v.verify(&old_token).await.unwrap();
    // The issuer rotates: the file now holds only the new key.
    std::fs::write(dir.path().join("jwks.json"), jwks(&[&new])).unwrap();
    let new_token = new.sign(&claims("t-new"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while v.verify(&new_token).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the JWKS file was not reloaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (reason, detail) = refused(&v, &old_token).await;
    assert_eq!(reason, Reason::UnknownKey);
    assert!(detail.contains("2026-11"), "{detail}");
}

#[tokio::test]
async fn policies_that_cannot_be_safe_are_refused_at_start() {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("jwks.json");
    std::fs::write(&file, r#"{"keys": []}"#).unwrap();
    let e = Verifier::start(vec![IssuerPolicy::new(ISS, AUD, &file)], clock())
        .await
        .err()
        .unwrap();
    assert!(format!("{e:#}").contains("no usable signing key"), "{e:#}");
    let k = SigningKey::es256("k");
    std::fs::write(&file, jwks(&[&k])).unwrap();
    let mut p = IssuerPolicy::new(ISS, AUD, &file);
    p.algorithms = vec!["none".into()];
    let e = Verifier::start(vec![p], clock()).await.err().unwrap();
    assert!(format!("{e:#}").contains("never allowed"), "{e:#}");
    let twice = vec![
        IssuerPolicy::new(ISS, AUD, &file),
        IssuerPolicy::new(ISS, AUD, &file),
    ];
    let e = Verifier::start(twice, clock()).await.err().unwrap();
    assert!(format!("{e:#}").contains("configured twice"), "{e:#}");
}

#[tokio::test]
async fn a_remembered_verification_ends_with_the_token() {
    use std::sync::atomic::{AtomicI64, Ordering};
    let dir = TempDir::new().unwrap();
    let k = SigningKey::es256("k");
    let file = dir.path().join("jwks.json");
    std::fs::write(&file, jwks(&[&k])).unwrap();
    let now = Arc::new(AtomicI64::new(NOW));
    let t = now.clone();
    let clock: recall::node::clock::Clock =
        Arc::new(move || recall_core::Timestamp::from_millis(t.load(Ordering::SeqCst) * 1000));
    let mut p = IssuerPolicy::new(ISS, AUD, file);
    p.leeway_s = 30;
    let v = Verifier::start(vec![p], clock).await.unwrap();
    let token = k.sign(&claims("t"));
    v.verify(&token).await.unwrap();
    v.verify(&token).await.unwrap();
    now.store(NOW + 600 + 29, Ordering::SeqCst);
    v.verify(&token).await.expect("within the leeway");
    now.store(NOW + 600 + 30, Ordering::SeqCst);
    assert_eq!(refused(&v, &token).await.0, Reason::Expired);
}
