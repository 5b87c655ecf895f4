//! A bearer token verified and checked for revocation, against the signature crate's own
//! verification of the same token in the same run (`jsonwebtoken::decode` with an equivalent
//! `Validation`): what recall adds to what a service pays anyway. The revocation state holds 1M
//! revoked token ids.
//!
//! Run: `cargo bench --bench tokens` (results and conditions in BENCHMARKS.md).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use recall::token::{IssuerPolicy, Verifier};
use recall_core::{Digest, Fingerprint, FingerprintSeed, Fingerprinter, Kind, View};
use recall_filter::{Filter, Mode};
use serde_json::{Map, Value, json};

const ISS: &str = "https://login.example.com";
const AUD: &str = "orders-api";
const REVOKED: usize = 1_000_000;
const SEED: FingerprintSeed = FingerprintSeed(0x70c3);

/// A filter holding `REVOKED` token ids of `ISS`.
fn revoked_filter() -> Filter {
    let fp = Fingerprinter::new(SEED);
    let mut all: Vec<Fingerprint> = Vec::with_capacity(REVOKED);
    for n in 0..REVOKED {
        all.push(fp.of(Kind::Token, ISS, &format!("revoked-{n}")));
    }
    all.sort_unstable();
    let mut filter = Filter::new(Mode::Full, SEED);
    let view = View {
        seed: SEED,
        version: 1,
        last_change: 1,
        digest: Digest::of(&all, &[]),
        fingerprints: all,
        rules: vec![],
    };
    filter.load_view(&view).expect("a valid view");
    filter
}

fn verify(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let encoding = EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes()).unwrap();
    let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256).unwrap();
    jwk.common.key_id = Some("k1".into());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwks.json");
    let set = JwkSet {
        keys: vec![jwk.clone()],
    };
    std::fs::write(&file, serde_json::to_string(&set).unwrap()).unwrap();

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = json!({
        "iss": ISS, "aud": AUD, "sub": "alice", "jti": "t-1", "sid": "s-1", "azp": "web",
        "iat": now - 60, "exp": now + 3600,
    });
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("k1".into());
    let token = jsonwebtoken::encode(&header, &claims, &encoding).unwrap();

    let policy = || vec![IssuerPolicy::new(ISS, AUD, &file)];
    let clock = recall::node::clock::system();
    let uncached = rt
        .block_on(Verifier::start_with_cache(policy(), clock.clone(), 0))
        .unwrap();
    let cached = rt.block_on(Verifier::start(policy(), clock)).unwrap();
    let filter = revoked_filter();
    let reader = filter.reader();

    let key = DecodingKey::from_jwk(&jwk).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[AUD]);
    validation.set_issuer(&[ISS]);
    validation.set_required_spec_claims(&["exp", "iat"]);
    validation.validate_nbf = true;
    validation.leeway = 30;

    let mut g = c.benchmark_group("verify_es256");
    g.bench_function("baseline/jsonwebtoken_decode", |b| {
        b.iter(|| {
            let t =
                jsonwebtoken::decode::<Map<String, Value>>(black_box(&token), &key, &validation);
            black_box(t.unwrap())
        })
    });
    g.bench_function("recall/verify_and_check", |b| {
        b.iter(|| {
            let v = uncached.verify_now(black_box(&token)).unwrap();
            black_box(reader.check_token(&v.facts()))
        })
    });
    g.bench_function("recall/remembered_verify_and_check", |b| {
        b.iter(|| {
            let v = cached.verify_now(black_box(&token)).unwrap();
            black_box(reader.check_token(&v.facts()))
        })
    });
    g.bench_function("part/revocation_check_only", |b| {
        let v = uncached.verify_now(&token).unwrap();
        b.iter(|| black_box(reader.check_token(black_box(&v.facts()))))
    });
    g.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
