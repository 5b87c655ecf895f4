//! The authority under test: three `recall server` processes on loopback. Each node has two
//! listeners: its **peer port** (Raft, forwarded writes and the convergence view between nodes)
//! and its **client port** (operator API, subscribe stream). Every **directed pair of nodes**
//! has a fault-injecting proxy of its own: node X reaches node Y's peer port through the proxy
//! X→Y, the address X's `--peer-dial` gives for Y (each node advertises its real peer port; the
//! dial address overrides it), so a fault on X→Y leaves Y→X, and every other pair, untouched.
//! [`crate::links`] makes partitions, an isolated leader, one-way loss and slow links of them.
//! The harness's writer and observers reach each client port through that node's client proxy;
//! sidecars reach client ports through proxies of their own ([`crate::fleet`]). Every link is
//! mutual TLS with the run's [`Pki`]; the proxies carry the TLS records unchanged, and a node
//! still proves its own identity to whoever dials it through one.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use recall::proto as pb;
use recall::proto::operator_client::OperatorClient;
use recall::transport::Expect;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::clocks::Clocks;
use crate::pki::Pki;
use crate::procs::{Proc, free_port};
use crate::proxy::{Link, Proxy};

/// An operator API client.
pub type Client = OperatorClient<Channel>;

/// How long one operator request may take before the harness gives up on it (a blackholed link
/// never answers).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

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

/// One node: its process, the proxy in front of its client port, a client through it.
pub struct Node {
    /// Its Raft id (1, 2 or 3).
    pub id: u64,
    /// Where the process serves clients (operator API, subscribe stream), behind proxies.
    pub listen: SocketAddr,
    /// Where the process serves its peers (the address it advertises), behind one proxy per
    /// peer ([`Authority::link`]).
    pub peer_listen: SocketAddr,
    /// The process.
    pub proc: Mutex<Proc>,
    /// The proxy the harness reaches its client port through.
    pub client_proxy: Proxy,
    /// An operator client through the client proxy.
    pub client: Client,
}

impl Node {
    /// Where the harness reaches its client port (the client proxy).
    pub fn addr(&self) -> SocketAddr {
        self.client_proxy.addr()
    }
}

/// The running authority.
pub struct Authority {
    /// Its nodes, by id order.
    pub nodes: Vec<Arc<Node>>,
    /// The Raft timing it runs with.
    pub timing: RaftTiming,
    /// The proxy of every directed pair of nodes: `(x, y)` carries the connections x opens to
    /// y's peer port (x's requests "up", y's answers "down").
    peer_links: BTreeMap<(u64, u64), Proxy>,
}

/// An operator client of the node whose client port is reached at `addr`, with the run's
/// operator credentials; it connects lazily and again after a failure. Each call needs its own
/// deadline ([`REQUEST_TIMEOUT`]): the channel has none.
pub fn client(pki: &Pki, addr: SocketAddr) -> anyhow::Result<Client> {
    let channel = pki
        .dialer()
        .lazy(&addr.to_string(), Expect::AnyNode)
        .with_context(|| format!("a channel to {addr}"))?;
    Ok(OperatorClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20))
}

/// `call` within `within`; a call that takes longer fails as DEADLINE_EXCEEDED.
pub async fn timed<T>(
    within: Duration,
    call: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> Result<T, tonic::Status> {
    tokio::time::timeout(within, call)
        .await
        .unwrap_or_else(|_| {
            Err(tonic::Status::deadline_exceeded(format!(
                "no answer within {within:?}"
            )))
        })
}

/// The process name (and log file name) of node `id`.
pub fn node_name(id: u64) -> String {
    format!("node-{id}")
}

impl Authority {
    /// Starts three nodes of `recall` (the binary) with data under `dir` and certificates from
    /// `pki` (each under a skewable wall clock when `clocks` is given), and waits for a leader
    /// every node follows.
    pub async fn start(
        recall: &Path,
        dir: &Path,
        timing: RaftTiming,
        pki: &Pki,
        clocks: Option<&Clocks>,
    ) -> anyhow::Result<Self> {
        let local =
            || -> anyhow::Result<SocketAddr> { Ok(format!("127.0.0.1:{}", free_port()?).parse()?) };
        let ids = 1..=3u64;
        let mut ports = Vec::new();
        for id in ids.clone() {
            let (listen, peer_listen) = (local()?, local()?);
            let client_proxy = Proxy::start(format!("node-{id} client"), listen).await?;
            ports.push((listen, peer_listen, client_proxy));
        }
        let mut peer_links = BTreeMap::new();
        for x in ids.clone() {
            for y in ids.clone().filter(|y| *y != x) {
                let upstream = ports[(y - 1) as usize].1;
                let proxy = Proxy::start(format!("node-{x}→node-{y} peer"), upstream).await?;
                peer_links.insert((x, y), proxy);
            }
        }
        let peers: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer_listen, _))| format!("{}={peer_listen}", i + 1))
            .collect();
        let mut nodes = Vec::new();
        for (i, (listen, peer_listen, client_proxy)) in ports.into_iter().enumerate() {
            let id = i as u64 + 1;
            let data: PathBuf = dir.join(format!("node-{id}"));
            let dial: Vec<String> = peer_links
                .iter()
                .filter(|((x, _), _)| *x == id)
                .map(|((_, y), proxy)| format!("{y}={}", proxy.addr()))
                .collect();
            let mut args = vec![
                "server".into(),
                format!("--id={id}"),
                format!("--listen={listen}"),
                format!("--peer-listen={peer_listen}"),
                format!("--advertise={peer_listen}"),
                format!("--data-dir={}", data.display()),
                format!("--peers={}", peers.join(",")),
                // Every peer through this node's own proxy to it.
                format!("--peer-dial={}", dial.join(",")),
                // The harness measures propagation; a mass recall is one operator's command.
                "--step-up=none".into(),
                format!("--heartbeat-ms={}", timing.heartbeat.as_millis()),
                format!(
                    "--election-timeout-ms={}",
                    timing.election_timeout.as_millis()
                ),
                "--max-batch=1000000".into(),
            ];
            args.extend(pki.args());
            let name = node_name(id);
            let env = match clocks {
                Some(c) => c.env(&name)?,
                None => Vec::new(),
            };
            let proc = Proc::spawn_with_env(name, recall, args, env, dir)?;
            nodes.push(Arc::new(Node {
                id,
                listen,
                peer_listen,
                client: client(pki, client_proxy.addr())?,
                proc: Mutex::new(proc),
                client_proxy,
            }));
        }
        let authority = Self {
            nodes,
            timing,
            peer_links,
        };
        if let Err(e) = authority.wait_for_leader(Duration::from_secs(30)).await {
            let logs: Vec<String> = authority
                .nodes
                .iter()
                .map(|n| {
                    let p = n.proc.lock().expect("node process lock");
                    format!(
                        "the end of {}:\n{}",
                        p.log().display(),
                        crate::procs::tail(p.log(), 5)
                    )
                })
                .collect();
            authority.stop();
            bail!(
                "the authority did not elect a leader: {e:#}\n{}",
                logs.join("\n")
            );
        }
        Ok(authority)
    }

    /// The node with `id`.
    pub fn node(&self, id: u64) -> &Arc<Node> {
        &self.nodes[(id - 1) as usize]
    }

    /// The control handle of the link node `from` reaches node `to`'s peer port through.
    pub fn link(&self, from: u64, to: u64) -> Link {
        self.peer_links
            .get(&(from, to))
            .unwrap_or_else(|| panic!("no peer link node-{from}→node-{to}"))
            .link()
    }

    /// The control handles of every link into node `id` the harness owns as a node's: its
    /// peers' (one per peer) and the harness's (the client proxy). The sidecars' links are the
    /// fleet's.
    pub fn inbound(&self, id: u64) -> Vec<Link> {
        self.nodes
            .iter()
            .filter(|n| n.id != id)
            .map(|n| self.link(n.id, id))
            .chain([self.node(id).client_proxy.link()])
            .collect()
    }

    /// The ids of the nodes other than `id`.
    pub fn others(&self, id: u64) -> Vec<u64> {
        self.nodes
            .iter()
            .map(|n| n.id)
            .filter(|n| *n != id)
            .collect()
    }

    /// The status of node `id`, answered from its own state.
    pub async fn status(&self, id: u64) -> anyhow::Result<pb::StatusReply> {
        let mut c = self.node(id).client.clone();
        let req = pb::StatusRequest {
            version: None,
            local_only: true,
        };
        timed(Duration::from_secs(1), c.status(req))
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| anyhow::anyhow!("status of node {id}: {}", explain(&s)))
    }

    /// The leader every reachable node agrees on, if any; else why not.
    pub async fn leader(&self) -> Result<u64, String> {
        let mut seen = None;
        let mut silent = Vec::new();
        for n in &self.nodes {
            match self.status(n.id).await {
                Ok(s) => match (seen, s.leader_id) {
                    (_, None) => return Err(format!("node {} knows no leader", n.id)),
                    (None, Some(l)) => seen = Some(l),
                    (Some(a), Some(b)) if a != b => {
                        return Err(format!("nodes disagree on the leader ({a}, {b})"));
                    }
                    _ => {}
                },
                Err(e) => silent.push(format!("{e:#}")),
            }
        }
        seen.ok_or_else(|| format!("no node answered: {}", silent.join("; ")))
    }

    /// Waits until the live nodes agree on a leader that answers as leader.
    pub async fn wait_for_leader(&self, within: Duration) -> anyhow::Result<u64> {
        let deadline = Instant::now() + within;
        loop {
            let why = match self.leader().await {
                Ok(l) => match self.status(l).await {
                    Ok(s) if s.leader_id == Some(s.node_id) => return Ok(l),
                    Ok(_) => format!("node {l} does not answer as leader"),
                    Err(e) => format!("{e:#}"),
                },
                Err(why) => why,
            };
            if Instant::now() >= deadline {
                bail!("no leader within {within:?}: {why}");
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
/// time, and on any failure (a dead node, no quorum during an election, no answer within
/// [`REQUEST_TIMEOUT`]) to the next node after a short backoff, until `deadline`; a node that
/// refuses for its write rate (RESOURCE_EXHAUSTED) is asked again after the wait it names.
/// Revocations and rules are idempotent, so a retry of a write that did commit changes nothing.
/// It writes as the run's operator; the requests' `actor` (now an "on behalf of" note in the
/// audit trail) says `recall-chaos`.
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
            let status = match timed(REQUEST_TIMEOUT, call(nodes[i].client.clone())).await {
                Ok(r) => return Ok(r),
                Err(status) => status,
            };
            if status.code() == tonic::Code::InvalidArgument {
                bail!("{what} refused: {}", status.message());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{what} not acknowledged within {:?}: {}",
                    self.patience,
                    explain(&status)
                );
            }
            if let Some(wait) = retry_after(&status) {
                // Rate-limited: this node asks to wait; the same node takes the retry.
                tokio::time::sleep(wait.min(deadline.saturating_duration_since(Instant::now())))
                    .await;
                continue;
            }
            let _ = self
                .preferred
                .compare_exchange(i, i + 1, Ordering::Relaxed, Ordering::Relaxed);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(200));
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

    /// Lifts the revocation of token `id` under `iss`; returns the version it committed at, or
    /// `None` when it took more than one attempt (an earlier attempt may have committed at an
    /// earlier version: the version a retry names is only an upper bound).
    pub async fn lift(&self, iss: &str, id: &str) -> anyhow::Result<Option<u64>> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let key = pb::RevocationKey {
            kind: pb::Kind::Token as i32,
            namespace: iss.into(),
            value: id.into(),
        };
        let attempts = AtomicUsize::new(0);
        let reply = self
            .retry("lift", |mut c| {
                attempts.fetch_add(1, Ordering::Relaxed);
                let req = pb::LiftRequest {
                    keys: vec![key.clone()],
                    rules: Vec::new(),
                    actor: "recall-chaos".into(),
                    reason: "chaos lift".into(),
                    wait: None,
                };
                async move { c.lift(req).await }
            })
            .await?;
        let version = reply.into_inner().version;
        Ok((attempts.into_inner() == 1).then_some(version))
    }

    /// Revokes every token of issuer `iss` issued before `not_before_ms`; returns the version.
    pub async fn recall_issuer(&self, iss: &str, not_before_ms: i64) -> anyhow::Result<u64> {
        let req = issuer_rule(iss, not_before_ms);
        let reply = self
            .retry("add rule", |mut c| {
                let req = req.clone();
                async move { c.add_rule(req).await }
            })
            .await?;
        Ok(reply.into_inner().version)
    }
}

/// The request that revokes every token of issuer `iss` issued before `not_before_ms`.
pub fn issuer_rule(iss: &str, not_before_ms: i64) -> pb::AddRuleRequest {
    pb::AddRuleRequest {
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
    }
}

/// A failed call in one line: its code, and the TLS cause when there is one (else its message).
pub fn explain(status: &tonic::Status) -> String {
    format!(
        "{:?}: {}",
        status.code(),
        recall::transport::errors::describe(status)
    )
}

/// How long a RESOURCE_EXHAUSTED refusal (the node's per-identity write rate) asks to wait.
fn retry_after(status: &tonic::Status) -> Option<Duration> {
    if status.code() != tonic::Code::ResourceExhausted {
        return None;
    }
    let ms = status
        .metadata()
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(100);
    Some(Duration::from_millis(ms.clamp(1, 5_000)))
}
