//! What the cluster benchmarks (`authority`, `propagation`, `sidecar`, `transport`) share:
//! credentials, listeners, in-process nodes and clusters, operator clients, the revocation
//! workloads, statistics and the machine's conditions. Each benchmark includes it with
//! `mod common;` and uses part of it.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use recall::node::{Listeners, NodeConfig, RunningNode, clock};
use recall::proto as pb;
use recall::proto::operator_client::OperatorClient;
use recall::transport::pki::Ca;
use recall::transport::{DEV_TRUST_DOMAIN, Dialer, Expect, Identity, Security};
use tokio::net::TcpListener;
use tonic::transport::Channel;

/// The operator the benchmarks act as: the first admin of a new cluster (`NodeConfig::admins`).
pub const OPERATOR: &str = "admin";
/// The issuer of the benchmarks' token revocations.
pub const ISSUER: &str = "https://login.example.com";
/// The "on behalf of" note of the benchmarks' writes.
pub const ACTOR: &str = "bench";
/// The largest gRPC message an operator client sends or accepts.
const MAX_MESSAGE: usize = 64 << 20;

/// `name` from the environment as a number (`_` allowed as a separator), or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .replace('_', "")
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

// ---------------------------------------------------------------------------------------------
// Machine conditions and CPU accounting.

/// Linux's USER_HZ: the unit of the CPU times in /proc.
const TICKS_PER_SEC: f64 = 100.0;

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The CPU model, from /proc/cpuinfo.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The cores this process may use.
pub fn nproc() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The peak resident set size of this process, from /proc/self/status.
pub fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.trim_start_matches("VmHWM:").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// CPU ticks (user + system) of this process, dead threads included.
fn own_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15, so 11 and 12 after the state.
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

/// CPU seconds (user + system) this process has used.
pub fn cpu_secs() -> f64 {
    own_ticks() as f64 / TICKS_PER_SEC
}

/// (busy, total) ticks of the whole machine.
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// A point to measure CPU use from: this benchmark (its nodes and clients) and everything else
/// on the machine.
#[derive(Clone, Copy)]
pub struct CpuMark {
    /// When.
    pub at: Instant,
    own: u64,
    busy: u64,
    total: u64,
}

/// Where CPU time went between two points, in cores (and CPU seconds for this process).
#[derive(Clone, Copy, Default)]
pub struct CpuUse {
    /// This process, in cores.
    pub own_cores: f64,
    /// Every other process, in cores.
    pub other_cores: f64,
    /// This process, in CPU seconds.
    pub own_secs: f64,
}

impl CpuMark {
    /// Now.
    pub fn now() -> Self {
        let (busy, total) = machine_ticks();
        Self {
            at: Instant::now(),
            own: own_ticks(),
            busy,
            total,
        }
    }

    /// The CPU use from this mark until now.
    pub fn since(self) -> CpuUse {
        let end = Self::now();
        let wall = end.at.duration_since(self.at).as_secs_f64().max(1e-9);
        let own_secs = (end.own - self.own) as f64 / TICKS_PER_SEC;
        let own = own_secs / wall;
        let total = (end.total - self.total).max(1) as f64;
        let all = (end.busy - self.busy) as f64 / total * nproc() as f64;
        CpuUse {
            own_cores: own,
            other_cores: (all - own).max(0.0),
            own_secs,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Statistics.

/// The `p` quantile (0..=1) of sorted samples, by the nearest-rank method.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Milliseconds with three decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// A rate per second, in thousands past 1000.
pub fn rate(per_sec: f64) -> String {
    if per_sec >= 1e3 {
        format!("{:.1}k/s", per_sec / 1e3)
    } else {
        format!("{per_sec:.0}/s")
    }
}

/// The median (the mean of the middle two for an even count; 0 for none).
pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => 0.0,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

/// Calls that failed: reported with the results, not fatal (the cluster under test may lose its
/// leader or quorum for a while, and that is a result too).
#[derive(Default)]
pub struct Failures {
    /// How many.
    pub count: usize,
    /// The first one's message.
    pub first: Option<String>,
}

impl Failures {
    /// Counts `e` (and prints it if it is the first).
    pub fn record(&mut self, e: anyhow::Error) {
        self.count += 1;
        if self.first.is_none() {
            let msg = format!("{e:#}");
            println!("  FAILED: {msg}");
            self.first = Some(msg);
        }
    }

    /// Adds `other`'s.
    pub fn add(&mut self, other: Failures) {
        self.count += other.count;
        if self.first.is_none() {
            self.first = other.first;
        }
    }

    /// `; FAILED: N (first: ...)`, or nothing.
    pub fn note(&self) -> String {
        match &self.first {
            None => String::new(),
            Some(first) => format!("; FAILED: {} (first: {first})", self.count),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Credentials.

/// How the benchmark's parties secure their links: mutual TLS with certificates from a CA made
/// in memory for this run, or (the `bench-plaintext` build only) no TLS at all.
pub enum Creds {
    /// Mutual TLS; every party gets its own certificate from this CA.
    Tls(Box<Ca>),
    /// No TLS and no identities.
    #[cfg(feature = "bench-plaintext")]
    Plaintext,
}

impl Creds {
    /// A new CA for the development trust domain.
    pub fn tls() -> anyhow::Result<Self> {
        Ok(Self::Tls(Box::new(Ca::generate(DEV_TRUST_DOMAIN)?)))
    }

    /// What the tables call it.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Tls(_) => "mTLS",
            #[cfg(feature = "bench-plaintext")]
            Self::Plaintext => "plaintext",
        }
    }

    fn security(&self, identity: &Identity) -> anyhow::Result<Security> {
        match self {
            Self::Tls(ca) => Ok(ca.security(identity)?),
            #[cfg(feature = "bench-plaintext")]
            Self::Plaintext => Ok(Security::Plaintext),
        }
    }

    /// Node `id`'s credentials.
    pub fn node(&self, id: u64) -> anyhow::Result<Security> {
        self.security(&Identity::node(DEV_TRUST_DOMAIN, id))
    }

    /// The operator's ([`OPERATOR`], an admin of a new cluster).
    pub fn operator(&self) -> anyhow::Result<Security> {
        self.security(&Identity::operator(DEV_TRUST_DOMAIN, OPERATOR))
    }

    /// Subscriber `id`'s (a SPIFFE path segment: no `/`).
    pub fn subscriber(&self, id: &str) -> anyhow::Result<Security> {
        self.security(&Identity::subscriber(DEV_TRUST_DOMAIN, id))
    }

    /// Credentials of relay `id`.
    pub fn relay(&self, id: &str) -> anyhow::Result<Security> {
        self.security(&Identity::relay(DEV_TRUST_DOMAIN, id))
    }

    /// The operator's dialler.
    pub fn operator_dialer(&self) -> anyhow::Result<Dialer> {
        Ok(Dialer::new(self.operator()?))
    }
}

// ---------------------------------------------------------------------------------------------
// Nodes and clusters.

/// A node's two listeners, bound on 127.0.0.1, and their addresses.
pub struct Bound {
    /// The listeners.
    pub listeners: Listeners,
    /// The client port (operators, subscribers).
    pub client: String,
    /// The peer port (Raft; the address in the membership).
    pub peer: String,
}

/// Binds a node's client and peer listeners on ephemeral loopback ports, as `recall server`
/// binds them. Must run on the runtime that will serve them.
pub async fn bind() -> anyhow::Result<Bound> {
    let client = TcpListener::bind("127.0.0.1:0").await?;
    let peer = TcpListener::bind("127.0.0.1:0").await?;
    Ok(Bound {
        client: client.local_addr()?.to_string(),
        peer: peer.local_addr()?.to_string(),
        listeners: Listeners {
            client,
            peer,
            http: None,
        },
    })
}

/// Starts a single-node cluster (node 1) on the current runtime, with its data in `dir`, and
/// waits until it has committed its seed; returns it and its client address. `tweak` adjusts
/// the default configuration.
pub async fn start_node(
    dir: &Path,
    creds: &Creds,
    tweak: impl FnOnce(&mut NodeConfig),
) -> anyhow::Result<(RunningNode, String)> {
    let bound = bind().await?;
    let mut config = NodeConfig {
        id: 1,
        advertise: bound.peer.clone(),
        data_dir: dir.to_path_buf(),
        step_up: recall::node::stepup::StepUpPolicy::none(),
        ..NodeConfig::default()
    };
    tweak(&mut config);
    let node = RunningNode::start(config, bound.listeners, creds.node(1)?, clock::system()).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !node.sm.seeded() {
        if Instant::now() > deadline {
            bail!("the node did not commit its seed within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok((node, bound.client))
}

/// A node of an in-process cluster, on its own runtime.
pub struct ClusterNode {
    /// Its Raft id.
    pub id: u64,
    /// Its client port's address.
    pub client: String,
    /// Its peer port's address.
    pub peer: String,
    /// Its runtime.
    pub rt: tokio::runtime::Runtime,
    /// The node.
    pub running: RunningNode,
}

/// Starts `n` nodes (ids 1..=n) forming one cluster, each on its own 2-worker runtime (what
/// `recall server` gets here) with its data in `root/node<ID>`; `tweak` adjusts each node's
/// default configuration.
pub fn start_cluster(
    root: &Path,
    creds: &Creds,
    n: u64,
    tweak: impl Fn(&mut NodeConfig),
) -> anyhow::Result<Vec<ClusterNode>> {
    let mut bound = Vec::new();
    for id in 1..=n {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("node{id}"))
            .enable_all()
            .build()?;
        let b = rt.block_on(bind())?;
        bound.push((id, rt, b));
    }
    let members: BTreeMap<u64, String> = bound
        .iter()
        .map(|(id, _, b)| (*id, b.peer.clone()))
        .collect();
    let mut nodes = Vec::new();
    for (id, rt, b) in bound {
        let mut config = NodeConfig {
            id,
            advertise: b.peer.clone(),
            data_dir: root.join(format!("node{id}")),
            initial_members: members.clone(),
            bootstrap: true,
            step_up: recall::node::stepup::StepUpPolicy::none(),
            ..NodeConfig::default()
        };
        tweak(&mut config);
        let running = rt
            .block_on(RunningNode::start(
                config,
                b.listeners,
                creds.node(id)?,
                clock::system(),
            ))
            .with_context(|| format!("starting node {id}"))?;
        nodes.push(ClusterNode {
            id,
            client: b.client,
            peer: b.peer,
            rt,
            running,
        });
    }
    Ok(nodes)
}

/// Shuts every node down, then its runtime.
pub fn stop_cluster(nodes: Vec<ClusterNode>) {
    for node in nodes {
        if let Err(e) = node.rt.block_on(node.running.shutdown()) {
            eprintln!("node {} did not shut down cleanly: {e:#}", node.id);
        }
        node.rt.shutdown_timeout(Duration::from_secs(5));
    }
}

// ---------------------------------------------------------------------------------------------
// Operator clients.

/// An operator client connected to `addr` now (its own connection, TCP_NODELAY set by the
/// dialler), with room for large batches.
pub async fn connect(dialer: &Dialer, addr: &str) -> anyhow::Result<OperatorClient<Channel>> {
    let channel = dialer
        .connect(addr, Expect::AnyNode)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    Ok(client(channel))
}

fn client(channel: Channel) -> OperatorClient<Channel> {
    OperatorClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

/// One node as the operator reaches it: its id, client address, and a shared channel for the
/// benchmark's own polling (Status), so that polling does not open a connection each time.
#[derive(Clone, Debug)]
pub struct Target {
    /// The node's id.
    pub id: u64,
    /// Its client port's address.
    pub addr: String,
    dialer: Dialer,
    shared: Channel,
}

impl Target {
    /// `addr` (node `id`) through `dialer`. Must be called on a runtime (the shared channel's
    /// worker is spawned on it).
    pub fn new(id: u64, addr: &str, dialer: &Dialer) -> anyhow::Result<Self> {
        Ok(Self {
            id,
            addr: addr.to_owned(),
            dialer: dialer.clone(),
            shared: dialer.lazy(addr, Expect::AnyNode)?,
        })
    }

    /// A client on its own, new connection.
    pub async fn connect(&self) -> anyhow::Result<OperatorClient<Channel>> {
        connect(&self.dialer, &self.addr).await
    }

    /// A client on the shared connection.
    pub fn shared(&self) -> OperatorClient<Channel> {
        client(self.shared.clone())
    }

    /// This node's status, with its own subscribers only (`local_only`: without it, Status
    /// asks every peer for its subscribers).
    pub async fn status(&self) -> anyhow::Result<pb::StatusReply> {
        let req = pb::StatusRequest {
            local_only: true,
            ..Default::default()
        };
        let reply = self
            .shared()
            .status(req)
            .await
            .with_context(|| format!("Status of node {} ({})", self.id, self.addr))?;
        Ok(reply.into_inner())
    }
}

/// The operator's targets of every node of a cluster (on a runtime; see [`Target::new`]).
pub fn targets(nodes: &[ClusterNode], dialer: &Dialer) -> anyhow::Result<Vec<Target>> {
    nodes
        .iter()
        .map(|n| Target::new(n.id, &n.client, dialer))
        .collect()
}

/// Waits until every node names the same leader; returns its id.
pub async fn wait_for_leader(nodes: &[Target]) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut leaders = Vec::new();
        for t in nodes {
            leaders.push(t.status().await.ok().and_then(|s| s.leader_id));
        }
        if let Some(Some(leader)) = leaders.first()
            && leaders.iter().all(|l| *l == Some(*leader))
        {
            return Ok(*leader);
        }
        if Instant::now() > deadline {
            bail!("no leader after 30s: {leaders:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The current leader, a follower, and the leader's term.
pub async fn roles(nodes: &[Target]) -> anyhow::Result<(Target, Target, u64)> {
    let leader_id = wait_for_leader(nodes).await?;
    let leader = nodes
        .iter()
        .find(|t| t.id == leader_id)
        .context("the leader is not a member")?
        .clone();
    let follower = nodes
        .iter()
        .find(|t| t.id != leader_id)
        .context("no follower")?
        .clone();
    let term = leader.status().await?.term;
    Ok((leader, follower, term))
}

/// Waits until every node has applied at least what `leader` has applied now.
pub async fn wait_applied(nodes: &[Target], leader: &Target) -> anyhow::Result<u64> {
    let target = leader.status().await?.applied_version;
    let deadline = Instant::now() + Duration::from_secs(60);
    for t in nodes {
        while t.status().await?.applied_version < target {
            if Instant::now() > deadline {
                bail!("node {} has not applied version {target} within 60 s", t.id);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    Ok(target)
}

/// The highest term any node reports: it moves when an election happens.
pub async fn max_term(nodes: &[Target]) -> u64 {
    let mut term = 0;
    for node in nodes {
        if let Ok(s) = node.status().await {
            term = term.max(s.term);
        }
    }
    term
}

// ---------------------------------------------------------------------------------------------
// Workloads.

/// A token revocation of `value` from [`ISSUER`].
pub fn revocation(value: String, expires_at_ms: Option<i64>) -> pb::Revocation {
    pb::Revocation {
        key: Some(pb::RevocationKey {
            kind: pb::Kind::Token as i32,
            namespace: ISSUER.into(),
            value,
        }),
        expires_at_ms,
    }
}

/// Unix milliseconds one hour from now.
pub fn in_one_hour() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    now.as_millis() as i64 + 3_600_000
}

/// `n` fresh token revocations (a jti-like value unique to `tag`), expiring in one hour, in
/// batches of `batch`.
pub fn batches(tag: &str, n: usize, batch: usize) -> Vec<Vec<pb::Revocation>> {
    let exp = in_one_hour();
    let items: Vec<pb::Revocation> = (0..n)
        .map(|i| revocation(format!("{tag}-{i:010}"), Some(exp)))
        .collect();
    items.chunks(batch.max(1)).map(<[_]>::to_vec).collect()
}

/// Sends `batches` as one Import client stream; returns the time until the reply (every chunk
/// committed) and how many revocations it counts as newly added.
pub async fn import_stream(
    client: &mut OperatorClient<Channel>,
    batches: Vec<Vec<pb::Revocation>>,
) -> anyhow::Result<(Duration, u64)> {
    let chunks: Vec<pb::ImportChunk> = batches
        .into_iter()
        .map(|items| pb::ImportChunk {
            items,
            actor: ACTOR.into(),
            reason: "import".into(),
        })
        .collect();
    let start = Instant::now();
    let reply = client
        .import(futures::stream::iter(chunks))
        .await?
        .into_inner();
    Ok((start.elapsed(), reply.added))
}

/// One single-key revocation of a fresh key, timed from request to committed reply.
pub async fn revoke_one(
    client: &mut OperatorClient<Channel>,
    value: String,
    exp: i64,
) -> anyhow::Result<Duration> {
    let req = pb::RevokeRequest {
        items: vec![revocation(value, Some(exp))],
        actor: ACTOR.into(),
        reason: "latency".into(),
        wait: None,
    };
    let start = Instant::now();
    let reply = client.revoke(req).await?.into_inner();
    let elapsed = start.elapsed();
    if reply.added != 1 {
        bail!("a fresh key was not added: {reply:?}");
    }
    Ok(elapsed)
}

/// `n` single revocations of fresh keys sent one after the other to `target` on a new
/// connection; the sorted latencies of those that succeeded.
pub async fn sequential_latency(
    target: &Target,
    tag: &str,
    n: usize,
) -> anyhow::Result<(Vec<Duration>, Failures)> {
    let mut client = target.connect().await?;
    let exp = in_one_hour();
    let mut out = Vec::with_capacity(n);
    let mut failures = Failures::default();
    for i in 0..n {
        match revoke_one(&mut client, format!("{tag}-{i:010}"), exp).await {
            Ok(d) => out.push(d),
            Err(e) => failures.record(e),
        }
    }
    out.sort_unstable();
    Ok((out, failures))
}
