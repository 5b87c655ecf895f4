//! What the mirror tests share: a `redis-server` on a free loopback port, a `recall mirror`
//! process, reading back what Redis holds, and waiting on a deadline for a condition.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use recall::transport::{DEV_TRUST_DOMAIN, Identity, TlsFiles};
use tempfile::TempDir;

use super::fixture::{OneNode, ca};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `probe` until it gives `Some`, failing with `what` (and the last value seen) after
/// `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
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

/// A real `redis-server` on loopback in its own directory: without persistence, or with an
/// append-only file synced on every write.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: TempDir,
    aof: bool,
}

impl RedisServer {
    pub async fn start() -> Self {
        Self::start_with(false).await
    }

    /// With `appendonly yes` and `appendfsync always`: a SIGKILL loses nothing acknowledged.
    pub async fn start_persistent() -> Self {
        Self::start_with(true).await
    }

    async fn start_with(aof: bool) -> Self {
        let mut me = Self {
            port: free_port(),
            child: None,
            dir: tempfile::tempdir().unwrap(),
            aof,
        };
        me.spawn().await;
        me
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    async fn spawn(&mut self) {
        let bin = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let log = std::fs::File::create(self.dir.path().join("redis.log")).unwrap();
        let child = Command::new(&bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--protected-mode", "no"])
            .args(match self.aof {
                true => ["--appendonly", "yes", "--appendfsync", "always"],
                false => ["--appendonly", "no", "--appendfsync", "no"],
            })
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin} ({e}); run scripts/deps.sh"));
        self.child = Some(child);
        let url = self.url();
        eventually(
            "redis-server answering PING",
            Duration::from_secs(10),
            || {
                let url = url.clone();
                async move { connect(&url).await.map(|_| ()) }
            },
        )
        .await;
    }

    /// SIGKILLs the server: without an append-only file its data is gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port: empty, unless it keeps an append-only file.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

pub async fn connect(url: &str) -> Result<redis::aio::MultiplexedConnection, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    redis::cmd("PING")
        .query_async::<String>(&mut con)
        .await
        .map_err(|e| e.to_string())?;
    Ok(con)
}

/// What Redis holds under the default prefix.
#[derive(Debug, PartialEq, Eq)]
pub struct Held {
    pub version: Option<u64>,
    pub digest: Option<String>,
    pub state: Option<String>,
    pub refills: u64,
    pub entries: BTreeSet<u64>,
    pub rules: BTreeMap<u64, i64>,
}

pub async fn held(url: &str) -> Result<Held, String> {
    let mut con = connect(url).await?;
    let meta: BTreeMap<String, String> = redis::cmd("HGETALL")
        .arg("recall:mirror")
        .query_async(&mut con)
        .await
        .map_err(|e| e.to_string())?;
    let rules: BTreeMap<String, String> = redis::cmd("HGETALL")
        .arg("recall:rules")
        .query_async(&mut con)
        .await
        .map_err(|e| e.to_string())?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("recall:rev:*")
        .query_async(&mut con)
        .await
        .map_err(|e| e.to_string())?;
    let hex = |s: &str| u64::from_str_radix(s, 16).unwrap();
    Ok(Held {
        version: meta.get("version").map(|v| v.parse().unwrap()),
        digest: meta.get("digest").cloned(),
        state: meta.get("state").cloned(),
        refills: meta.get("refills").map_or(0, |v| v.parse().unwrap()),
        entries: keys
            .iter()
            .map(|k| hex(k.strip_prefix("recall:rev:").unwrap()))
            .collect(),
        rules: rules
            .iter()
            .map(|(k, v)| (hex(k), v.parse().unwrap()))
            .collect(),
    })
}

/// Waits until Redis holds exactly the node's set, at the node's version, and returns it.
pub async fn exact(node: &OneNode, url: &str, within: Duration) -> Held {
    eventually("Redis holding exactly the node's set", within, || async {
        let view = node.node.sm.with_set(|s| s.view());
        let h = held(url).await?;
        let want_entries: BTreeSet<u64> = view.fingerprints.iter().map(|f| f.0).collect();
        let want_rules: BTreeMap<u64, i64> = view
            .rules
            .iter()
            .map(|r| (r.scope.0, r.not_before.as_millis()))
            .collect();
        let ok = h.version == Some(view.version)
            && h.state.as_deref() == Some("ready")
            && h.digest.as_deref() == Some(format!("{:016x}", view.digest.0).as_str())
            && h.entries == want_entries
            && h.rules == want_rules;
        if ok {
            Ok(h)
        } else {
            Err(format!(
                "node at {} with {} entries and {} rules; Redis at {:?} ({:?}) with {} entries \
                 ({} missing, {} extra) and {} rules",
                view.version,
                want_entries.len(),
                want_rules.len(),
                h.version,
                h.state,
                h.entries.len(),
                want_entries.difference(&h.entries).count(),
                h.entries.difference(&want_entries).count(),
                h.rules.len()
            ))
        }
    })
    .await
}

/// The mirror's certificate files, issued by the test CA.
pub fn mirror_certs(dir: &Path) -> TlsFiles {
    ca().issue_into(dir, &Identity::subscriber(DEV_TRUST_DOMAIN, "mirror"))
        .unwrap()
}

/// A `recall mirror` process.
pub struct MirrorProc {
    child: Option<Child>,
    args: Vec<String>,
    pub log: PathBuf,
}

impl MirrorProc {
    pub fn start(node: &str, redis_url: &str, certs: &TlsFiles, log_dir: &Path) -> Self {
        let args = [
            "mirror",
            "--redis",
            redis_url,
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
        let mut me = Self {
            child: None,
            args,
            log: log_dir.join("mirror.log"),
        };
        me.spawn();
        me
    }

    fn spawn(&mut self) {
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
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for MirrorProc {
    fn drop(&mut self) {
        self.kill();
    }
}
