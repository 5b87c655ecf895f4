//! Forward-auth behind a real nginx (Debian's, installed by `scripts/deps.sh`): nginx asks the
//! sidecar's `/v1/auth` with `auth_request`; a valid token reaches the upstream with the verified
//! subject, a revoked or missing one gets nginx's 401 with the sidecar's challenge.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::http::HeaderMap;
use tempfile::TempDir;
use tokio::net::TcpListener;

use crate::fixture::token;
use crate::keys::{ISS, SigningKey, live_claims};
use crate::sidecar::{node_and_sidecar, revoke_and_wait};

/// nginx in the foreground with its prefix in a temporary directory; killed on drop.
struct Nginx {
    child: Child,
    port: u16,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nginx_binary() -> &'static str {
    for p in ["/usr/sbin/nginx", "/usr/bin/nginx"] {
        if Path::new(p).exists() {
            return p;
        }
    }
    panic!("nginx is not installed: run `bash scripts/deps.sh` (bash scripts/test.sh does)")
}

/// The configuration this test gives nginx; the README shows the same `location` blocks.
fn config(dir: &Path, port: u16, sidecar: &str, upstream: &str) -> String {
    let d = dir.display();
    format!(
        r#"daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            auth_request /_recall;
            auth_request_set $recall_subject $upstream_http_x_recall_subject;
            proxy_set_header X-Recall-Subject $recall_subject;
            proxy_pass http://{upstream};
        }}
        location = /_recall {{
            internal;
            proxy_pass http://{sidecar}/v1/auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }}
    }}
}}
"#
    )
}

/// Starts nginx on a free loopback port in front of `upstream`, asking `sidecar`.
async fn start_nginx(dir: &Path, sidecar: &str, upstream: &str) -> Nginx {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, config(dir, port, sidecar, upstream)).unwrap();
    let child = Command::new(nginx_binary())
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nginx starts");
    let mut nginx = Nginx { child, port };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if let Some(status) = nginx.child.try_wait().unwrap() {
            let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            panic!("nginx exited ({status}): {log}");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nginx did not listen on {port}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    nginx.child.stderr.take();
    nginx
}

/// An upstream that answers with the subject nginx passed on.
async fn upstream() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let app = axum::Router::new().fallback(|h: HeaderMap| async move {
        let sub = h
            .get("x-recall-subject")
            .map(|v| v.to_str().unwrap_or("?").to_string())
            .unwrap_or_default();
        format!("upstream: hello {sub}")
    });
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_lets_a_valid_token_through_and_answers_401_once_it_is_revoked() {
    let dir = TempDir::new().unwrap();
    let key = SigningKey::es256("k1");
    let (node, sidecar) = node_and_sidecar("sc-nginx-1", &key, &dir).await;
    let nginx_dir = TempDir::new().unwrap();
    let nginx = start_nginx(
        nginx_dir.path(),
        &sidecar.http_addr().to_string(),
        &upstream().await,
    )
    .await;
    let url = format!("http://127.0.0.1:{}/orders", nginx.port);
    let http = reqwest::Client::new();
    let get = |bearer: Option<String>| {
        let mut req = http.get(&url);
        if let Some(b) = bearer {
            req = req.header("authorization", b);
        }
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let challenge = r
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_string());
            (status, challenge, r.text().await.unwrap())
        }
    };
    let bearer = format!("Bearer {}", key.sign(&live_claims("t-1")));

    let (status, _, body) = get(Some(bearer.clone())).await;
    assert_eq!((status, body.as_str()), (200, "upstream: hello alice"));

    let (status, challenge, body) = get(None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(challenge.as_deref(), Some("Bearer realm=\"recall\""));

    revoke_and_wait(&node, &sidecar, vec![token(ISS, "t-1")]).await;
    let (status, challenge, body) = get(Some(bearer)).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        !body.contains("upstream"),
        "the upstream must not be reached: {body}"
    );
    let challenge = challenge.expect("nginx passes the sidecar's challenge on");
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert!(challenge.contains("revoked"), "{challenge}");
}
