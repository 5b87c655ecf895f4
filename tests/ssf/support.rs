//! What the SSF tests share: a node with the receiver's identity bound to `recaller`, a test
//! transmitter (its own signing keys and an RFC 8936 polling endpoint), SETs signed by it, and
//! a real `recall ssf` process.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use recall::proto as pb;
use recall::transport::{DEV_TRUST_DOMAIN, Identity, TlsFiles};
use serde_json::{Value, json};
use tempfile::TempDir;

use super::fixture::{OneNode, admin_client, ca};
use super::keys::SigningKey;

/// The transmitter's `iss`.
pub const TRANSMITTER: &str = "https://idp.example";
/// The receiver's audience.
pub const AUDIENCE: &str = "https://recall.example/ssf";
/// The push endpoint's bearer token.
pub const PUSH_TOKEN: &str = "push-secret-0123456789";

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Polls `probe` until it gives `Some`, failing with `what` after `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(last) if tokio::time::Instant::now() >= deadline => {
                panic!("{what} not within {within:?}; last: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
}

/// A signed SET of `event` with `payload` about `sub_id`, from the transmitter.
pub fn set(key: &SigningKey, jti: &str, event: &str, payload: Value, sub_id: Value) -> String {
    set_with(
        key,
        json!({"typ": "secevent+jwt"}),
        claims(jti, event, payload, sub_id),
    )
}

/// The claims of a good SET.
pub fn claims(jti: &str, event: &str, payload: Value, sub_id: Value) -> Value {
    json!({
        "iss": TRANSMITTER,
        "aud": AUDIENCE,
        "jti": jti,
        "iat": now(),
        "sub_id": sub_id,
        "events": { event: payload },
    })
}

/// `claims` signed by `key` with `header` fields added to its `alg` and `kid`.
pub fn set_with(key: &SigningKey, header: Value, claims: Value) -> String {
    use base64::Engine;
    let b64 = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    };
    let mut h = json!({"alg": format!("{:?}", key.alg), "kid": key.kid});
    for (k, v) in header.as_object().unwrap() {
        h[k] = v.clone();
    }
    let message = format!("{}.{}", b64(&h), b64(&claims));
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &key.encoding, key.alg).unwrap();
    format!("{message}.{sig}")
}

/// A node whose operator `ssf` holds `recaller` (unless `bind_role` is false).
pub async fn node(bind_role: bool) -> OneNode {
    let node = OneNode::start_with(|_| {}).await;
    if bind_role {
        grant(&node.addr).await;
    }
    node
}

/// Binds operator `ssf` to `recaller`.
pub async fn grant(addr: &str) {
    admin_client(addr)
        .await
        .set_role(pb::SetRoleRequest {
            identity: "ssf".into(),
            role: "recaller".into(),
            reason: "the SSF receiver".into(),
        })
        .await
        .unwrap();
}

/// The audit records whose reason names `jti`.
pub async fn audit_of(addr: &str, jti: &str) -> Vec<pb::AuditRecord> {
    let mut stream = admin_client(addr)
        .await
        .audit_log(pb::AuditLogRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut out = vec![];
    while let Some(r) = stream.message().await.unwrap() {
        if r.reason.contains(&format!("jti={jti} ")) {
            out.push(r);
        }
    }
    out
}

/// What the test transmitter's polling endpoint holds and was told.
#[derive(Default)]
pub struct Queue {
    /// SETs waiting to be acknowledged, by `jti`.
    pub pending: BTreeMap<String, String>,
    /// Every `jti` acknowledged, in order.
    pub acked: Vec<String>,
    /// Every error reported, by `jti`.
    pub errors: BTreeMap<String, Value>,
    /// Polls answered.
    pub polls: u64,
}

/// An RFC 8936 polling endpoint on loopback.
pub struct PollEndpoint {
    pub url: String,
    pub queue: Arc<Mutex<Queue>>,
    _server: tokio::task::JoinHandle<()>,
}

impl PollEndpoint {
    pub async fn start() -> Self {
        let queue = Arc::new(Mutex::new(Queue::default()));
        let app = axum::Router::new()
            .route("/poll", axum::routing::post(poll))
            .with_state(queue.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            url: format!("http://{addr}/poll"),
            queue,
            _server: server,
        }
    }

    pub fn offer(&self, jti: &str, set: String) {
        self.queue
            .lock()
            .unwrap()
            .pending
            .insert(jti.to_string(), set);
    }
}

async fn poll(
    State(q): State<Arc<Mutex<Queue>>>,
    headers: axum::http::HeaderMap,
    Json(body): Json<Value>,
) -> Result<Json<Value>, axum::http::StatusCode> {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer poll-secret") {
        return Err(axum::http::StatusCode::UNAUTHORIZED);
    }
    let mut q = q.lock().unwrap();
    q.polls += 1;
    for jti in body["ack"].as_array().unwrap() {
        let jti = jti.as_str().unwrap().to_string();
        q.pending.remove(&jti);
        q.acked.push(jti);
    }
    for (jti, err) in body["setErrs"].as_object().unwrap() {
        q.pending.remove(jti);
        q.errors.insert(jti.clone(), err.clone());
    }
    let max = body["maxEvents"].as_u64().unwrap() as usize;
    let sets: serde_json::Map<String, Value> = q
        .pending
        .iter()
        .take(max)
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let more = q.pending.len() > max;
    Ok(Json(json!({"sets": sets, "moreAvailable": more})))
}

/// A `recall ssf` process and its files.
pub struct Receiver {
    child: Option<Child>,
    args: Vec<String>,
    _dir: TempDir,
    pub push: Option<SocketAddr>,
    pub log: PathBuf,
    /// The CA of the push endpoint's certificate, when it serves HTTPS.
    tls_ca: Option<PathBuf>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Receiver {
    /// Writes the transmitter's JWKS of `keys`, a config with push (and poll from `poll_url`),
    /// and starts the receiver against the node at `node`.
    pub async fn start(node: &str, jwks: &str, poll_url: Option<&str>) -> Self {
        Self::start_with(node, jwks, poll_url, false).await
    }

    /// As [`Receiver::start`], serving pushes over HTTPS with a certificate for 127.0.0.1.
    pub async fn start_https(node: &str, jwks: &str) -> Self {
        Self::start_with(node, jwks, None, true).await
    }

    async fn start_with(node: &str, jwks: &str, poll_url: Option<&str>, https: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tls_ca = https.then(|| https_certs(dir.path()));
        let tls = match https {
            true => "tls_cert = \"server.pem\"\ntls_key = \"server.key\"\n",
            false => "",
        };
        let certs = certs(dir.path());
        std::fs::write(dir.path().join("jwks.json"), jwks).unwrap();
        std::fs::write(dir.path().join("push-token"), format!("{PUSH_TOKEN}\n")).unwrap();
        std::fs::write(dir.path().join("poll-token"), "poll-secret\n").unwrap();
        let port = free_port();
        let poll = match poll_url {
            Some(u) => format!(
                "poll_url = \"{u}\"\npoll_token_file = \"poll-token\"\npoll_interval_s = 1\n"
            ),
            None => String::new(),
        };
        std::fs::write(
            dir.path().join("ssf.toml"),
            format!(
                "{tls}listen = \"127.0.0.1:{port}\"\naudience = \"{AUDIENCE}\"\ndata_dir = \"state\"\n\
                 write_timeout_s = 3\n\n[[transmitter]]\nissuer = \"{TRANSMITTER}\"\n\
                 jwks_file = \"jwks.json\"\npush_token_file = \"push-token\"\n\
                 namespaces = [\"{TRANSMITTER}\", \"https://tokens.example\"]\n{poll}"
            ),
        )
        .unwrap();
        let args = [
            "ssf",
            "--config",
            dir.path().join("ssf.toml").to_str().unwrap(),
            "--cluster",
            node,
            "--ca",
            certs.ca.to_str().unwrap(),
            "--cert",
            certs.cert.to_str().unwrap(),
            "--key",
            certs.key.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec();
        let log = dir.path().join("ssf.log");
        let mut me = Self {
            child: None,
            args,
            _dir: dir,
            push: Some(SocketAddr::from(([127, 0, 0, 1], port))),
            log,
            tls_ca,
        };
        me.spawn().await;
        me
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_recall"))
            .args(&self.args)
            .env("RUST_LOG", "info,recall=debug")
            .env("NO_COLOR", "1")
            .env_remove("RECALL_CLUSTER")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        eventually(
            "the receiver answering /healthz",
            Duration::from_secs(10),
            || async {
                match self.request("GET", "/healthz", &[], "").await {
                    Ok((200, _)) => Ok(()),
                    other => Err(format!("{other:?}; log: {}", self.log())),
                }
            },
        )
        .await;
    }

    /// SIGKILL, then start again with the same files.
    pub async fn restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.spawn().await;
    }

    /// Pushes `body` as `content_type` with `bearer`; the status and the JSON body.
    pub async fn push_as(
        &self,
        body: &str,
        content_type: &str,
        bearer: Option<&str>,
    ) -> (u16, Value) {
        let auth = bearer.map(|b| format!("Bearer {b}"));
        let mut headers = vec![
            ("content-type", content_type),
            ("accept", "application/json"),
        ];
        if let Some(a) = &auth {
            headers.push(("authorization", a));
        }
        let (status, text) = self
            .request("POST", "/ssf/events", &headers, body)
            .await
            .unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// One request to the push endpoint (over HTTPS when it serves it, trusting its CA only).
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<(u16, String), String> {
        use http_body_util::{BodyExt, Full};
        let scheme = if self.tls_ca.is_some() {
            "https"
        } else {
            "http"
        };
        let client =
            recall::token::jwks::https_client::<Full<bytes::Bytes>>(self.tls_ca.as_deref())
                .map_err(|e| e.to_string())?;
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(format!("{scheme}://{}{path}", self.push.unwrap()));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(bytes::Bytes::from(body.to_string())))
            .unwrap();
        let resp = client.request(req).await.map_err(|e| format!("{e:?}"))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// Pushes a SET as the transmitter does.
    pub async fn push(&self, set: &str) -> (u16, Value) {
        self.push_as(set, "application/secevent+jwt", Some(PUSH_TOKEN))
            .await
    }

    /// The receiver's `/metrics`.
    pub async fn metrics(&self) -> String {
        self.request("GET", "/metrics", &[], "").await.unwrap().1
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The receiver's operator certificate (`ssf`), issued by the test CA.
pub fn certs(dir: &Path) -> TlsFiles {
    ca().issue_into(dir, &Identity::operator(DEV_TRUST_DOMAIN, "ssf"))
        .unwrap()
}

/// A CA and a certificate for 127.0.0.1 it issued (`server.pem`, `server.key` in `dir`); returns
/// the CA's file.
fn https_certs(dir: &Path) -> PathBuf {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![SanType::IpAddress([127, 0, 0, 1].into())];
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
    std::fs::write(dir.join("push-ca.pem"), ca_cert.pem()).unwrap();
    dir.join("push-ca.pem")
}
