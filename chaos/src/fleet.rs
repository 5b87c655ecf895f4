//! The subscribers under test: M `recall sidecar` processes, each reaching every node's client
//! port through a proxy of its own, so one sidecar can be partitioned or slowed without touching
//! the others. Each proves its own identity (`subscriber/ID`, from the run's PKI) to the nodes;
//! its check APIs, which the harness polls, stay plaintext on loopback.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use recall::proto as pb;
use recall::proto::check_client::CheckClient;
use serde::Deserialize;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::authority::Authority;
use crate::clocks::Clocks;
use crate::pki::Pki;
use crate::procs::{Proc, free_port};
use crate::proxy::{Link, Proxy};

/// The id of the fleet's sidecar `index` (a SPIFFE path segment: no `/`).
pub fn sidecar_id(index: usize) -> String {
    format!("sidecar-{index}")
}

/// The ids of a fleet of `count` sidecars.
pub fn sidecar_ids(count: usize) -> Vec<String> {
    (0..count).map(sidecar_id).collect()
}

/// What a sidecar's `GET /v1/status` says (the fields the harness reads).
#[derive(Clone, Debug, Deserialize)]
pub struct SidecarStatus {
    /// The version applied.
    pub version: u64,
    /// When that version was applied (Unix milliseconds).
    pub version_at_ms: i64,
    /// The digest, 16 hex digits.
    pub digest: String,
    /// Fingerprints held.
    pub entries: u64,
    /// Whether it has synced once.
    pub synced: bool,
    /// Connections opened since start.
    pub connects: u64,
}

/// What a sidecar answered for a set of tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counted {
    /// Answers "revoked", fresh.
    pub revoked: u64,
    /// Answers marked stale (the sidecar could not vouch for its state).
    pub stale: u64,
}

/// One sidecar process and its links.
pub struct Sidecar {
    /// Its position in the fleet.
    pub index: usize,
    /// The id the cluster knows it by.
    pub id: String,
    /// Its HTTP check API.
    pub http: SocketAddr,
    /// Its gRPC check API.
    pub grpc: SocketAddr,
    /// Its data directory (where it persists its state).
    pub data_dir: PathBuf,
    /// The process.
    pub proc: Mutex<Proc>,
    /// Its links, one per node.
    pub proxies: Vec<Proxy>,
}

impl Sidecar {
    /// The control handles of its links.
    pub fn links(&self) -> Vec<Link> {
        self.proxies.iter().map(Proxy::link).collect()
    }

    /// Its status page.
    pub async fn status(&self, http: &reqwest::Client) -> anyhow::Result<SidecarStatus> {
        Ok(http
            .get(format!("http://{}/v1/status", self.http))
            .timeout(Duration::from_millis(500))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// A gRPC check client.
    pub fn checker(&self) -> CheckClient<Channel> {
        let channel = Endpoint::from_shared(format!("http://{}", self.grpc))
            .expect("a socket address is a valid URI")
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(10))
            .connect_lazy();
        CheckClient::new(channel).max_decoding_message_size(64 << 20)
    }

    /// Whether it answers `/readyz` with 200.
    pub async fn ready(&self, http: &reqwest::Client) -> bool {
        http.get(format!("http://{}/readyz", self.http))
            .timeout(Duration::from_millis(500))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }
}

/// The running sidecars.
pub struct Fleet {
    /// The sidecars, by index.
    pub sidecars: Vec<Arc<Sidecar>>,
    /// The HTTP client the harness polls them with.
    pub http: reqwest::Client,
}

impl Fleet {
    /// Starts `count` sidecars of `recall` (the binary) following `authority`, with data under
    /// `dir`, certificates from `pki` (which must hold [`sidecar_ids`]`(count)`) and the
    /// staleness bound `staleness_bound` (fail-closed, full mode), each under a skewable wall
    /// clock when `clocks` is given, and waits until each has synced. Sidecar `i` tries node
    /// `i mod 3` first, so the streams spread over the nodes.
    pub async fn start(
        recall: &Path,
        dir: &Path,
        authority: &Authority,
        count: usize,
        pki: &Pki,
        staleness_bound: Duration,
        clocks: Option<&Clocks>,
    ) -> anyhow::Result<Self> {
        let mut sidecars = Vec::new();
        for index in 0..count {
            let id = sidecar_id(index);
            let mut proxies = Vec::new();
            for k in 0..authority.nodes.len() {
                let node = &authority.nodes[(index + k) % authority.nodes.len()];
                let name = format!("{id}→node-{} client", node.id);
                proxies.push(Proxy::start(name, node.listen).await?);
            }
            let http: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
            let grpc: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
            let data_dir = dir.join(&id);
            let cluster: Vec<String> = proxies.iter().map(|p| p.addr().to_string()).collect();
            let mut args = vec![
                "sidecar".into(),
                format!("--cluster={}", cluster.join(",")),
                format!("--id={id}"),
                format!("--http={http}"),
                format!("--grpc={grpc}"),
                format!("--data-dir={}", data_dir.display()),
                "--silence-timeout-ms=2000".into(),
                format!("--staleness-bound-ms={}", staleness_bound.as_millis()),
                "--policy=fail-closed".into(),
                "--mode=full".into(),
            ];
            args.extend(pki.args());
            let env = match clocks {
                Some(c) => c.env(&id)?,
                None => Vec::new(),
            };
            let proc = Proc::spawn_with_env(id.clone(), recall, args, env, dir)?;
            sidecars.push(Arc::new(Sidecar {
                index,
                id,
                http,
                grpc,
                data_dir,
                proc: Mutex::new(proc),
                proxies,
            }));
        }
        let fleet = Self {
            sidecars,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(2)
                .tcp_nodelay(true)
                .build()?,
        };
        for s in &fleet.sidecars {
            if let Err(e) = fleet.wait_ready(s, Duration::from_secs(30)).await {
                let log = s
                    .proc
                    .lock()
                    .expect("sidecar process lock")
                    .log()
                    .to_owned();
                fleet.stop();
                return Err(e.context(format!(
                    "{} never became ready; the end of {}:\n{}",
                    s.id,
                    log.display(),
                    crate::procs::tail(&log, 10)
                )));
            }
        }
        Ok(fleet)
    }

    /// Restarts `sidecar` (it must have been stopped) after `hold`, and waits until it is ready
    /// again; returns its new pid.
    pub async fn restart_after(&self, sidecar: &Sidecar, hold: Duration) -> anyhow::Result<u32> {
        tokio::time::sleep(hold).await;
        let pid = sidecar
            .proc
            .lock()
            .expect("sidecar process lock")
            .restart()?;
        self.wait_ready(sidecar, Duration::from_secs(30)).await?;
        Ok(pid)
    }

    /// Waits until `sidecar` answers `/readyz`, failing early if its process exited.
    pub async fn wait_ready(&self, sidecar: &Sidecar, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        while !sidecar.ready(&self.http).await {
            sidecar
                .proc
                .lock()
                .expect("sidecar process lock")
                .check_alive()?;
            if Instant::now() >= deadline {
                bail!("not ready within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Checks token ids (under `iss`, with `iat` when given) on `sidecar` in batches; returns
    /// how many answers were a fresh "revoked".
    pub async fn count_revoked(
        sidecar: &Sidecar,
        iss: &str,
        ids: &[String],
        iat: Option<i64>,
    ) -> anyhow::Result<u64> {
        Ok(Self::count_answers(sidecar, iss, ids, iat).await?.revoked)
    }

    /// Checks token ids (under `iss`, with `iat` when given) on `sidecar` in batches; returns
    /// how many answers were a fresh "revoked", and how many were stale.
    pub async fn count_answers(
        sidecar: &Sidecar,
        iss: &str,
        ids: &[String],
        iat: Option<i64>,
    ) -> anyhow::Result<Counted> {
        let mut client = sidecar.checker();
        let mut revoked = 0;
        let mut stale = 0;
        for chunk in ids.chunks(1000) {
            let facts = chunk
                .iter()
                .map(|id| pb::TokenFacts {
                    iss: iss.into(),
                    jti: Some(id.clone()),
                    iat,
                    ..Default::default()
                })
                .collect();
            let reply = client
                .check_batch(pb::CheckBatchRequest { facts })
                .await
                .with_context(|| format!("CheckBatch on {}", sidecar.id))?
                .into_inner();
            revoked += reply
                .replies
                .iter()
                .filter(|r| r.verdict == pb::Verdict::Revoked as i32 && !r.stale)
                .count() as u64;
            stale += reply.replies.iter().filter(|r| r.stale).count() as u64;
        }
        Ok(Counted { revoked, stale })
    }

    /// Stops every sidecar (SIGTERM, then SIGKILL).
    pub fn stop(&self) {
        for s in &self.sidecars {
            s.proc
                .lock()
                .expect("sidecar process lock")
                .terminate(Duration::from_secs(5));
        }
    }
}
