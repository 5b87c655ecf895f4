//! Where an issuer's keys come from, kept fresh: a JWKS file re-read when it changes, or a JWKS
//! URL fetched over HTTPS, refreshed by its cache headers, refetched (at a bounded rate) when a
//! token names an unknown key, and kept through fetch failures up to a bound.
//!
//! Checks never wait for a fetch: they read the current set (arc-swap). Only a token naming an
//! unknown `kid` may wait, briefly, for the refetch it caused.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use arc_swap::ArcSwap;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::sync::{Mutex, Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::keys::{Key, KeySet};
use super::policy::{IssuerPolicy, MIN_HMAC_SECRET};
use super::reason::{Reason, Rejection};

/// The largest JWKS document accepted.
pub const MAX_JWKS_BYTES: usize = 1 << 20;
/// How often a JWKS file is checked for changes.
const FILE_POLL: Duration = Duration::from_secs(1);
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a check waits for the refetch an unknown `kid` caused.
const REFETCH_WAIT: Duration = Duration::from_secs(3);

/// Numbers every key set a store takes in, so a cached verification can tell it was made with
/// keys that are no longer current.
static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn next_generation() -> u64 {
    GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The keys in use and when they were last fetched.
struct Current {
    set: KeySet,
    /// Which set this is (changes whenever the keys do).
    generation: u64,
    /// When a URL source last answered; `None` for a file or a secret.
    fetched: Option<Instant>,
    /// The last fetch failure, for the message once keys are too old.
    error: Option<String>,
}

/// The keys of one issuer, kept fresh by a background task.
pub struct KeyStore {
    issuer: String,
    current: Arc<ArcSwap<Current>>,
    hmac: Option<Key>,
    url: Option<UrlState>,
    max_stale: Duration,
    task: Option<JoinHandle<()>>,
}

/// What a URL source shares with its refresh task.
struct UrlState {
    wake: Arc<Notify>,
    fetches: watch::Receiver<u64>,
    last_refetch: Mutex<Option<Instant>>,
    min_refresh: Duration,
}

impl Drop for KeyStore {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

impl KeyStore {
    /// Loads the issuer's keys and starts keeping them fresh. A JWKS file that cannot be read
    /// is an error; a URL that cannot be fetched yet is not (it is retried, and the issuer's
    /// tokens are refused as `unknown_key` meanwhile).
    pub async fn start(policy: &IssuerPolicy) -> anyhow::Result<Self> {
        let who = &policy.issuer;
        let hmac = match &policy.hmac_secret_file {
            Some(path) => Some(Key::hmac(&read_secret(who, path)?)),
            None => None,
        };
        let mut store = Self {
            issuer: who.clone(),
            current: Arc::new(ArcSwap::from_pointee(Current {
                set: KeySet::default(),
                generation: next_generation(),
                fetched: None,
                error: None,
            })),
            hmac,
            url: None,
            max_stale: Duration::from_secs(policy.jwks_max_stale_s),
            task: None,
        };
        if let Some(path) = &policy.jwks_file {
            let (set, stamp) = read_file(who, path)?;
            store.current.store(Arc::new(Current {
                set,
                generation: next_generation(),
                fetched: None,
                error: None,
            }));
            store.task = Some(tokio::spawn(watch_file(
                who.clone(),
                path.clone(),
                stamp,
                store.current.clone(),
            )));
        }
        if let Some(url) = &policy.jwks_url {
            let client = https_client(policy.jwks_ca.as_deref())
                .with_context(|| format!("issuer {who:?}: jwks_url"))?;
            let wake = Arc::new(Notify::new());
            let (tx, rx) = watch::channel(0);
            let refresh = Refresh {
                issuer: who.clone(),
                url: url.clone(),
                client,
                current: store.current.clone(),
                wake: wake.clone(),
                fetches: tx,
                min: Duration::from_secs(policy.jwks_min_refresh_s),
                max: Duration::from_secs(policy.jwks_max_refresh_s),
            };
            let mut first = rx.clone();
            store.task = Some(tokio::spawn(refresh.run()));
            // The first fetch is given a moment, so a sidecar starts with keys when it can.
            let _ = tokio::time::timeout(FETCH_TIMEOUT, first.changed()).await;
            store.url = Some(UrlState {
                wake,
                fetches: rx,
                last_refetch: Mutex::new(None),
                min_refresh: Duration::from_secs(policy.jwks_min_refresh_s),
            });
        }
        Ok(store)
    }

    /// Runs `f` on the key that verifies `alg` for `kid`; also returns the generation of the
    /// key set the key came from.
    pub fn with_key<T>(
        &self,
        alg: jsonwebtoken::Algorithm,
        kid: Option<&str>,
        f: impl FnOnce(&Key) -> T,
    ) -> Result<(T, u64), Rejection> {
        let current = self.current.load();
        if alg.family() == jsonwebtoken::AlgorithmFamily::Hmac {
            return match &self.hmac {
                Some(k) => Ok((f(k), current.generation)),
                None => Err(Rejection::new(
                    Reason::AlgorithmNotAllowed,
                    "no HMAC secret is configured",
                )),
            };
        }
        self.usable(&current)?;
        current
            .set
            .select(alg, kid)
            .map(|k| (f(k), current.generation))
    }

    /// The generation of the current key set while it may be used: a verification made with
    /// it still stands. `None` once the keys changed since or are too old.
    pub fn generation(&self) -> Option<u64> {
        let current = self.current.load();
        self.usable(&current).ok().map(|()| current.generation)
    }

    /// Refuses keys of a URL source that were never fetched or are past `jwks_max_stale_s`.
    fn usable(&self, current: &Current) -> Result<(), Rejection> {
        if self.url.is_some() {
            let too_old = match current.fetched {
                None => Some("have never been fetched".to_string()),
                Some(at) if at.elapsed() > self.max_stale => Some(format!(
                    "were last fetched {}s ago, over jwks_max_stale_s ({}s)",
                    at.elapsed().as_secs(),
                    self.max_stale.as_secs()
                )),
                Some(_) => None,
            };
            if let Some(why) = too_old {
                let last = current.error.as_deref().unwrap_or("no answer yet");
                return Err(Rejection::new(
                    Reason::UnknownKey,
                    format!("the keys of {:?} {why} (last error: {last})", self.issuer),
                ));
            }
        }
        Ok(())
    }

    /// After an unknown `kid`: fetches the set again if the URL was not fetched for that reason
    /// within `jwks_min_refresh_s`, and waits (briefly) for the answer. Returns whether a new
    /// set arrived; a file source and a rate-limited refetch return `false` at once.
    pub async fn refetch(&self) -> bool {
        let Some(url) = &self.url else { return false };
        {
            let mut last = url.last_refetch.lock().await;
            if last.is_some_and(|t| t.elapsed() < url.min_refresh) {
                return false;
            }
            *last = Some(Instant::now());
        }
        let mut fetches = url.fetches.clone();
        fetches.borrow_and_update();
        url.wake.notify_one();
        matches!(
            tokio::time::timeout(REFETCH_WAIT, fetches.changed()).await,
            Ok(Ok(()))
        )
    }
}

/// An HMAC secret file: at least 32 bytes once a trailing newline is dropped.
fn read_secret(who: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut secret = std::fs::read(path).with_context(|| {
        format!(
            "issuer {who:?}: cannot read hmac_secret_file {}",
            path.display()
        )
    })?;
    while secret.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        secret.pop();
    }
    if secret.len() < MIN_HMAC_SECRET {
        anyhow::bail!(
            "issuer {who:?}: the HMAC secret in {} is {} bytes; it must be at least \
             {MIN_HMAC_SECRET} (256 bits) of random data",
            path.display(),
            secret.len()
        );
    }
    Ok(secret)
}

/// What identifies a version of a file.
type Stamp = (Option<SystemTime>, u64);

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let m = std::fs::metadata(path)?;
    Ok((m.modified().ok(), m.len()))
}

/// A JWKS file read, with the stamp of the version read.
fn read_file(who: &str, path: &Path) -> anyhow::Result<(KeySet, Stamp)> {
    let read = || -> anyhow::Result<(KeySet, Stamp)> {
        let s = stamp(path)?;
        let bytes = std::fs::read(path)?;
        if bytes.len() > MAX_JWKS_BYTES {
            anyhow::bail!(
                "{} bytes is over the limit of {MAX_JWKS_BYTES}",
                bytes.len()
            );
        }
        let (set, skipped) = KeySet::from_jwks(&bytes)?;
        for note in skipped {
            tracing::warn!(issuer = who, file = %path.display(), "JWKS {note}: left out");
        }
        if set.keys.is_empty() {
            anyhow::bail!("it holds no usable signing key");
        }
        Ok((set, s))
    };
    read().with_context(|| format!("issuer {who:?}: jwks_file {}", path.display()))
}

/// Re-reads a JWKS file when it changes; a change that cannot be read keeps the old keys.
async fn watch_file(who: String, path: PathBuf, mut seen: Stamp, current: Arc<ArcSwap<Current>>) {
    loop {
        tokio::time::sleep(FILE_POLL).await;
        match stamp(&path) {
            Ok(s) if s != seen => match read_file(&who, &path) {
                Ok((set, s)) => {
                    tracing::info!(issuer = %who, keys = set.keys.len(), "JWKS file reloaded");
                    current.store(Arc::new(Current {
                        set,
                        generation: next_generation(),
                        fetched: None,
                        error: None,
                    }));
                    seen = s;
                }
                Err(e) => {
                    tracing::warn!("{e:#}; keeping the keys read before");
                    seen = s;
                }
            },
            Ok(_) => {}
            Err(e) => tracing::warn!(issuer = %who, "jwks_file {}: {e}", path.display()),
        }
    }
}

/// The refresh task of a URL source.
struct Refresh {
    issuer: String,
    url: String,
    client: HttpClient,
    current: Arc<ArcSwap<Current>>,
    wake: Arc<Notify>,
    fetches: watch::Sender<u64>,
    min: Duration,
    max: Duration,
}

impl Refresh {
    async fn run(self) {
        let mut backoff = Duration::from_secs(1);
        loop {
            let next = match fetch(&self.client, &self.url).await {
                Ok((set, max_age)) => {
                    tracing::debug!(issuer = %self.issuer, keys = set.keys.len(), "JWKS fetched");
                    self.current.store(Arc::new(Current {
                        set,
                        generation: next_generation(),
                        fetched: Some(Instant::now()),
                        error: None,
                    }));
                    backoff = Duration::from_secs(1);
                    max_age.unwrap_or(self.max).clamp(self.min, self.max)
                }
                Err(e) => {
                    let error = format!("{e:#}");
                    tracing::warn!(issuer = %self.issuer, url = %self.url, "JWKS fetch failed: {error}; keeping the keys fetched before");
                    let old = self.current.load();
                    self.current.store(Arc::new(Current {
                        set: old.set.clone(),
                        generation: old.generation,
                        fetched: old.fetched,
                        error: Some(error),
                    }));
                    let wait = backoff;
                    backoff = (backoff * 2).min(self.min);
                    wait
                }
            };
            self.fetches.send_modify(|n| *n += 1);
            tokio::select! {
                _ = tokio::time::sleep(next) => {}
                _ = self.wake.notified() => {}
            }
        }
    }
}

/// The HTTPS client of a URL source.
type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Empty<bytes::Bytes>,
>;

/// One fetch: the key set and the answer's `max-age`. Redirects are not followed.
async fn fetch(client: &HttpClient, url: &str) -> anyhow::Result<(KeySet, Option<Duration>)> {
    use http_body_util::BodyExt;
    use hyper::header;
    let req = hyper::Request::get(url)
        .header(header::ACCEPT, "application/jwk-set+json, application/json")
        .header(
            header::USER_AGENT,
            concat!("recall/", env!("CARGO_PKG_VERSION")),
        )
        .body(http_body_util::Empty::new())?;
    let work = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| anyhow::anyhow!("{}", describe(&e)))?;
        let status = resp.status();
        if status.is_redirection() {
            anyhow::bail!("the server answered {status}: give the final URL as jwks_url");
        }
        if !status.is_success() {
            anyhow::bail!("the server answered {status}");
        }
        let max_age = resp
            .headers()
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age);
        let body = http_body_util::Limited::new(resp.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| {
                anyhow::anyhow!("reading the answer: {e} (the limit is {MAX_JWKS_BYTES} bytes)")
            })?
            .to_bytes();
        anyhow::Ok((body, max_age))
    };
    let (body, max_age) = tokio::time::timeout(FETCH_TIMEOUT, work)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {FETCH_TIMEOUT:?}"))??;
    let (set, skipped) = KeySet::from_jwks(&body)?;
    for note in skipped {
        tracing::warn!(url, "JWKS {note}: left out");
    }
    if set.keys.is_empty() {
        anyhow::bail!("the answer holds no usable signing key");
    }
    Ok((set, max_age))
}

/// An error with its causes, one line.
fn describe(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(c) = source {
        s.push_str(": ");
        s.push_str(&c.to_string());
        source = c.source();
    }
    s
}

/// `max-age` of a `Cache-Control` value; `no-cache` and `no-store` count as zero (the minimum
/// refresh then applies).
pub fn max_age(cache_control: &str) -> Option<Duration> {
    let mut out = None;
    for directive in cache_control.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-cache" || lower == "no-store" {
            return Some(Duration::ZERO);
        }
        if let Some(v) = lower.strip_prefix("max-age=") {
            out = v
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    out
}

/// An HTTPS client trusting the system's roots and `ca` (PEM), TLS through rustls with ring
/// (plain HTTP only reaches loopback: the policies refuse other `http://` URLs). Redirects are
/// never followed.
pub fn https_client<B>(
    ca: Option<&Path>,
) -> anyhow::Result<
    hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        B,
    >,
>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
{
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(ca) = ca {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
            .and_then(|i| i.collect::<Result<_, _>>())
            .with_context(|| format!("cannot read the CA file {}", ca.display()))?;
        if certs.is_empty() {
            anyhow::bail!("the CA file {} holds no certificate", ca.display());
        }
        for c in certs {
            roots.add(c)?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(https),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_max_age() {
        assert_eq!(
            max_age("public, max-age=600"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=abc"), None);
    }
}
