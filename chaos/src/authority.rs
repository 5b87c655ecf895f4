//! The authority under test: three `recall server` processes on loopback. Each node is reached,
//! by its peers, the sidecars and the harness alike, through its own fault-injecting proxy (the
//! address it advertises), so the harness sits on every link into a node.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use recall::proto as pb;
use recall::proto::operator_client::OperatorClient;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::procs::{Proc, free_port};
use crate::proxy::{Link, Proxy};

/// An operator API client.
pub type Client = OperatorClient<Channel>;

/// The Raft timing of the authority under test.
#[derive(Clone, Copy, Debug)]
pub struct RaftTiming {
    /// The heartbeat interval.
    pub heartbeat: Duration,
    /// The election timeout (lower bound).
    pub election_timeout: Duration,
}

impl Default for RaftTiming {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_millis(100),
            election_timeout: Duration::from_millis(500),
        }
    }
}

/// One node: its process, the proxy in front of it, a client through that proxy.
pub struct Node {
    /// Its Raft id (1, 2 or 3).
    pub id: u64,
    /// Where the process itself listens (behind the proxy).
    pub listen: SocketAddr,
    /// The process.
    pub proc: Mutex<Proc>,
    /// The proxy everyone reaches it through.
    pub proxy: Proxy,
    /// An operator client through the proxy.
    pub client: Client,
}

impl Node {
    /// The address it advertises (its proxy).
    pub fn addr(&self) -> SocketAddr {
        self.proxy.addr()
    }

    /// The control handle of its inbound link.
    pub fn link(&self) -> Link {
        self.proxy.link()
    }
}

/// The running authority.
pub struct Authority {
    /// Its nodes, by id order.
    pub nodes: Vec<Arc<Node>>,
    /// The Raft timing it runs with.
    pub timing: RaftTiming,
}

/// A client of `addr` that connects lazily and again after a failure.
pub fn client(addr: SocketAddr) -> Client {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .expect("a socket address is a valid URI")
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .connect_lazy();
    OperatorClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20)
}

impl Authority {
    /// Starts three nodes of `recall` (the binary) with data under `dir`, and waits for a leader
    /// every node follows.
    pub async fn start(recall: &Path, dir: &Path, timing: RaftTiming) -> anyhow::Result<Self> {
        let mut listens = Vec::new();
        let mut proxies = Vec::new();
        for id in 1..=3u64 {
            let listen: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
            proxies.push(Proxy::start(format!("node-{id}"), listen).await?);
            listens.push(listen);
        }
        let peers: Vec<String> = proxies
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}={}", i + 1, p.addr()))
            .collect();
        let mut nodes = Vec::new();
        for (i, proxy) in proxies.into_iter().enumerate() {
            let id = i as u64 + 1;
            let data: PathBuf = dir.join(format!("node-{id}"));
            let args = vec![
                "server".into(),
                format!("--id={id}"),
                format!("--listen={}", listens[i]),
                format!("--advertise={}", proxy.addr()),
                format!("--data-dir={}", data.display()),
                format!("--peers={}", peers.join(",")),
                format!("--heartbeat-ms={}", timing.heartbeat.as_millis()),
                format!(
                    "--election-timeout-ms={}",
                    timing.election_timeout.as_millis()
                ),
                "--max-batch=1000000".into(),
            ];
            let proc = Proc::spawn(format!("node-{id}"), recall, args, dir)?;
            nodes.push(Arc::new(Node {
                id,
                listen: listens[i],
                client: client(proxy.addr()),
                proc: Mutex::new(proc),
                proxy,
            }));
        }
        let authority = Self { nodes, timing };
        authority
            .wait_for_leader(Duration::from_secs(30))
            .await
            .context("the authority did not elect a leader")?;
        Ok(authority)
    }

    /// The node with `id`.
    pub fn node(&self, id: u64) -> &Arc<Node> {
        &self.nodes[(id - 1) as usize]
    }

    /// The status of node `id`, answered from its own state.
    pub async fn status(&self, id: u64) -> anyhow::Result<pb::StatusReply> {
        let mut c = self.node(id).client.clone();
        let req = pb::StatusRequest {
            version: None,
            local_only: true,
        };
        Ok(tokio::time::timeout(Duration::from_secs(1), c.status(req))
            .await
            .context("status timed out")??
            .into_inner())
    }

    /// The leader every reachable node agrees on, if any.
    pub async fn leader(&self) -> Option<u64> {
        let mut seen = None;
        for n in &self.nodes {
            if let Ok(s) = self.status(n.id).await {
                match (seen, s.leader_id) {
                    (_, None) => return None,
                    (None, Some(l)) => seen = Some(l),
                    (Some(a), Some(b)) if a != b => return None,
                    _ => {}
                }
            }
        }
        seen
    }

    /// Waits until the live nodes agree on a leader that answers as leader.
    pub async fn wait_for_leader(&self, within: Duration) -> anyhow::Result<u64> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(l) = self.leader().await
                && self
                    .status(l)
                    .await
                    .is_ok_and(|s| s.leader_id == Some(s.node_id))
            {
                return Ok(l);
            }
            if Instant::now() >= deadline {
                bail!("no leader within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Fails if a node that should run has exited.
    pub fn check_alive(&self) -> anyhow::Result<()> {
        for n in &self.nodes {
            let mut p = n.proc.lock().expect("node process lock");
            if p.pid().is_some() {
                p.check_alive()?;
            }
        }
        Ok(())
    }

    /// Stops every node (SIGTERM, then SIGKILL).
    pub fn stop(&self) {
        for n in &self.nodes {
            n.proc
                .lock()
                .expect("node process lock")
                .terminate(Duration::from_secs(5));
        }
    }
}

/// Writes to the authority the way a careful operator's tool does: to the node that led last
/// time, and on any failure (a dead node, no quorum during an election) to the next node after
/// a short backoff, until `deadline`. Revocations and rules are idempotent, so a retry of a
/// write that did commit changes nothing.
#[derive(Clone)]
pub struct Writer {
    authority: Arc<Authority>,
    preferred: Arc<std::sync::atomic::AtomicUsize>,
    patience: Duration,
}

impl Writer {
    /// A writer to `authority` that gives up on one request after `patience`.
    pub fn new(authority: Arc<Authority>, patience: Duration) -> Self {
        Self {
            authority,
            preferred: Arc::default(),
            patience,
        }
    }

    async fn retry<T, F, Fut>(&self, what: &str, call: F) -> anyhow::Result<T>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        use std::sync::atomic::Ordering;
        let deadline = Instant::now() + self.patience;
        let nodes = &self.authority.nodes;
        let mut backoff = Duration::from_millis(10);
        loop {
            let i = self.preferred.load(Ordering::Relaxed) % nodes.len();
            match call(nodes[i].client.clone()).await {
                Ok(r) => return Ok(r),
                Err(status) => {
                    if status.code() == tonic::Code::InvalidArgument {
                        bail!("{what} refused: {}", status.message());
                    }
                    if Instant::now() >= deadline {
                        bail!(
                            "{what} not acknowledged within {:?}: {status}",
                            self.patience
                        );
                    }
                    let _ = self.preferred.compare_exchange(
                        i,
                        i + 1,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(200));
                }
            }
        }
    }

    /// Revokes the token ids `ids[range]` under `iss`; returns the version it committed at.
    pub async fn revoke(
        &self,
        iss: &str,
        ids: &[String],
        range: std::ops::Range<usize>,
    ) -> anyhow::Result<u64> {
        let items: Vec<pb::Revocation> = ids[range]
            .iter()
            .map(|id| pb::Revocation {
                key: Some(pb::RevocationKey {
                    kind: pb::Kind::Token as i32,
                    namespace: iss.into(),
                    value: id.clone(),
                }),
                expires_at_ms: None,
            })
            .collect();
        let reply = self
            .retry("revoke", |mut c| {
                let req = pb::RevokeRequest {
                    items: items.clone(),
                    actor: "recall-chaos".into(),
                    reason: "chaos mass recall".into(),
                    wait: None,
                };
                async move { c.revoke(req).await }
            })
            .await?;
        Ok(reply.into_inner().version)
    }

    /// Revokes every token of issuer `iss` issued before `not_before_ms`; returns the version.
    pub async fn recall_issuer(&self, iss: &str, not_before_ms: i64) -> anyhow::Result<u64> {
        let reply = self
            .retry("add rule", |mut c| {
                let req = pb::AddRuleRequest {
                    rule: Some(pb::Rule {
                        scope: Some(pb::RuleScope {
                            kind: pb::ScopeKind::Issuer as i32,
                            namespace: iss.into(),
                            value: String::new(),
                        }),
                        not_before_ms,
                        expires_at_ms: None,
                    }),
                    actor: "recall-chaos".into(),
                    reason: "chaos not-before recall".into(),
                    wait: None,
                };
                async move { c.add_rule(req).await }
            })
            .await?;
        Ok(reply.into_inner().version)
    }
}
