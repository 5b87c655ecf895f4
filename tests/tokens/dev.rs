//! The newcomer's path, with the real binary: `recall dev` makes a development issuer beside its
//! PKI, `recall token mint` signs a token with it, the sidecar lets it through `/v1/auth`, and
//! after the `revoke` command `recall dev` printed, run exactly as printed, refuses it.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tempfile::TempDir;

struct Dev(tokio::process::Child);

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn recall(args: &[&str], data: &Path) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_recall"))
        .args(args)
        .current_dir(data.parent().unwrap())
        .env_remove("RECALL_CLUSTER")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "recall {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn auth(http: &str, token: &str) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .get(format!("http://{http}/v1/auth"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recall_dev_verifies_minted_tokens_and_refuses_them_once_revoked() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("recall-data");
    let (client, peer, http, grpc) = (free_port(), free_port(), free_port(), free_port());
    let (client, http) = (format!("127.0.0.1:{client}"), format!("127.0.0.1:{http}"));
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_recall"))
        .args(["dev", "--listen", &client, "--http", &http])
        .args(["--peer-listen", &format!("127.0.0.1:{peer}")])
        .args(["--grpc", &format!("127.0.0.1:{grpc}")])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut dev = Dev(child);
    let stdout = dev.0.stdout.take().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let ready = reqwest::get(format!("http://{http}/readyz")).await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "recall dev never got ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(data.join("dev-issuer/issuers.toml").exists());

    // The command it prints to revoke a token, as a newcomer would copy it.
    let printed = {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let find = async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(cmd) = line.strip_prefix("revoke a token:") {
                    return cmd.trim().to_string();
                }
            }
            panic!("recall dev printed no revoke command");
        };
        tokio::time::timeout(Duration::from_secs(30), find)
            .await
            .unwrap()
    };
    assert!(printed.contains(" revoke --cluster "), "{printed}");

    let token = recall(
        &["token", "mint", "--sub", "alice", "--jti", "jti-123"],
        &data,
    )
    .await;
    let token = token.trim();
    let (code, body) = auth(&http, token).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["subject"], "alice", "{body}");

    let run = tokio::process::Command::new("sh")
        .args(["-c", &printed])
        .current_dir(dir.path())
        .env_remove("RECALL_CLUSTER")
        .output()
        .await
        .unwrap();
    assert!(
        run.status.success(),
        "`{printed}` as printed: {}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let _ = &client;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (code, body) = auth(&http, token).await;
        if code == 401 {
            assert_eq!(body["verdict"], "revoked", "{body}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still allowed: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `recall token init` (what the compose deployment's one-shot service runs) makes the
/// development issuer once: a second run keeps its key, the issuers file it writes is what
/// `recall sidecar --issuers` loads, and a token `recall token mint` signs verifies against it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recall_token_init_makes_an_issuer_the_sidecar_loads_and_keeps_it() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("recall-data");
    let issuer = dir.path().join("issuer");
    let arg = issuer.to_str().unwrap();
    let made = recall(&["token", "init", "--dir", arg], &data).await;
    assert!(made.starts_with("made "), "{made}");
    let key = std::fs::read(issuer.join("signing-key.pem")).unwrap();
    let kept = recall(&["token", "init", "--dir", arg], &data).await;
    assert!(kept.starts_with("kept "), "{kept}");
    assert_eq!(std::fs::read(issuer.join("signing-key.pem")).unwrap(), key);

    let policies = recall::token::IssuersFile::load(&issuer.join("issuers.toml")).unwrap();
    assert_eq!(policies.len(), 1);
    assert_eq!(
        policies[0].jwks_file.as_deref(),
        Some(issuer.join("jwks.json").as_path())
    );
    let verifier = recall::token::Verifier::start(policies, recall::node::clock::system())
        .await
        .unwrap();
    let token = recall(&["token", "mint", "--dir", arg, "--sub", "bob"], &data).await;
    let verified = verifier.verify(token.trim()).await.unwrap();
    assert_eq!(verified.sub.as_deref(), Some("bob"));
}
