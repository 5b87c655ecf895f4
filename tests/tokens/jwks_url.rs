//! Keys over HTTPS: a real TLS server (its own CA, given as `jwks_ca`) publishes the JWKS; an
//! unknown `kid` makes the verifier fetch again, at a bounded rate; a failing endpoint keeps the
//! keys fetched before, up to `jwks_max_stale_s`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
use recall::token::{IssuerPolicy, Reason, Verifier};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::keys::{AUD, ISS, SigningKey, claims, clock, jwks};

/// A JWKS endpoint over HTTPS on loopback.
struct JwksServer {
    url: String,
    ca_pem: String,
    body: Arc<Mutex<String>>,
    failing: Arc<AtomicBool>,
    hits: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(body: String, max_age_s: u64) -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        leaf.subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf_cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
            )
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(tls));

        let body = Arc::new(Mutex::new(body));
        let failing = Arc::new(AtomicBool::new(false));
        let hits = Arc::new(AtomicUsize::new(0));
        let (b, f, h) = (body.clone(), failing.clone(), hits.clone());
        let app = axum::Router::new().route(
            "/keys",
            axum::routing::get(move || {
                let (b, f, h) = (b.clone(), f.clone(), h.clone());
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    if f.load(Ordering::SeqCst) {
                        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
                    }
                    let cache = format!("public, max-age={max_age_s}");
                    let body = b.lock().unwrap().clone();
                    ([(header::CACHE_CONTROL, cache)], body).into_response()
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "https://127.0.0.1:{}/keys",
            listener.local_addr().unwrap().port()
        );
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                        .await;
                });
            }
        });
        Self {
            url,
            ca_pem: ca_cert.pem(),
            body,
            failing,
            hits,
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn verifier(
    server: &JwksServer,
    dir: &TempDir,
    edit: impl FnOnce(&mut IssuerPolicy),
) -> Arc<Verifier> {
    let ca = dir.path().join("jwks-ca.pem");
    std::fs::write(&ca, &server.ca_pem).unwrap();
    let mut p = IssuerPolicy::new(ISS, AUD, "unused");
    p.jwks_file = None;
    p.jwks_url = Some(server.url.clone());
    p.jwks_ca = Some(ca);
    edit(&mut p);
    Verifier::start(vec![p], clock()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kid_refetches_the_keys_at_a_bounded_rate() {
    let dir = TempDir::new().unwrap();
    let (a, b, c) = (
        SigningKey::es256("a"),
        SigningKey::es256("b"),
        SigningKey::eddsa("c"),
    );
    let server = JwksServer::start(jwks(&[&a]), 3600).await;
    let v = verifier(&server, &dir, |p| p.jwks_min_refresh_s = 60).await;
    v.verify(&a.sign(&claims("t"))).await.unwrap();
    assert_eq!(
        server.hits(),
        1,
        "one fetch at start, then the cache header holds"
    );

    // The issuer adds key b: a token naming it makes the verifier fetch again.
    *server.body.lock().unwrap() = jwks(&[&a, &b, &c]);
    v.verify(&b.sign(&claims("t"))).await.unwrap();
    assert_eq!(server.hits(), 2);

    // Another unknown kid right after: no second fetch within jwks_min_refresh_s.
    let d = SigningKey::es256("d");
    let e = v.verify(&d.sign(&claims("t"))).await.unwrap_err();
    assert_eq!(e.reason, Reason::UnknownKey);
    assert_eq!(server.hits(), 2, "refetches are rate limited");
    // Key c arrived with the last fetch.
    v.verify(&c.sign(&claims("t"))).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_survive_a_failing_endpoint_up_to_the_bound() {
    let dir = TempDir::new().unwrap();
    let a = SigningKey::es256("a");
    let server = JwksServer::start(jwks(&[&a]), 0).await;
    let v = verifier(&server, &dir, |p| {
        p.jwks_min_refresh_s = 1;
        p.jwks_max_refresh_s = 1;
        p.jwks_max_stale_s = 3;
    })
    .await;
    let t = a.sign(&claims("t"));
    v.verify(&t).await.unwrap();
    server.failing.store(true, Ordering::SeqCst);
    let failed_from = server.hits();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while server.hits() < failed_from + 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no refresh was attempted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    v.verify(&t)
        .await
        .expect("the keys fetched before are kept");
    // Past jwks_max_stale_s the keys are no longer trusted.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let e = loop {
        match v.verify_now(&t) {
            Err(e) => break e,
            Ok(_) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "keys were kept forever"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(e.reason, Reason::UnknownKey);
    assert!(
        e.detail.contains("jwks_max_stale_s") && e.detail.contains("503"),
        "{}",
        e.detail
    );
    // The endpoint comes back: so do the keys.
    server.failing.store(false, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while v.verify_now(&t).is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the keys never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_with_a_certificate_of_another_ca_is_never_trusted() {
    let dir = TempDir::new().unwrap();
    let a = SigningKey::es256("a");
    let server = JwksServer::start(jwks(&[&a]), 3600).await;
    let other = JwksServer::start(jwks(&[&a]), 3600).await;
    let ca = dir.path().join("other-ca.pem");
    std::fs::write(&ca, &other.ca_pem).unwrap();
    let mut p = IssuerPolicy::new(ISS, AUD, "unused");
    p.jwks_file = None;
    p.jwks_url = Some(server.url.clone());
    p.jwks_ca = Some(ca);
    let v = Verifier::start(vec![p], clock()).await.unwrap();
    let e = v.verify_now(&a.sign(&claims("t"))).unwrap_err();
    assert_eq!(e.reason, Reason::UnknownKey);
    assert!(e.detail.contains("never been fetched"), "{}", e.detail);
    assert!(
        e.detail.to_lowercase().contains("certificate"),
        "{}",
        e.detail
    );
}
