//! Real authority nodes for the scenarios, on 127.0.0.1 with their redb files in temporary
//! directories, and what a test needs to talk to them.
//!
//! - [`Cluster`]: nodes in this process (`RunningNode::start` on pre-bound listeners), stopped
//!   and restarted on the same data directory and port;
//! - [`Procs`] (in `procs.rs`): `recall server` processes, killed with SIGKILL and restarted the
//!   same way, or frozen with SIGSTOP and thawed;
//! - [`Nodes`], [`leader`], [`converged`], [`eventually`]: finding the leader and waiting for a
//!   state under a deadline (polling, never a bare sleep), for either kind of cluster.
//!
//! Every link is mutual TLS: [`pki`] is one development PKI per test binary (files for the
//! processes, in-memory credentials for the nodes in this process), and [`client`] connects as
//! the cluster's first admin.
//!
//! Nodes run with a short heartbeat and election timeout, so elections take well under a
//! second, unless a scenario sets its own. openraft 0.9 gives each AppendEntries one heartbeat
//! interval to complete, so a scenario writing big entries needs a longer heartbeat or smaller
//! entries (`NodeConfig::chunk_bytes`).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use recall::node::{Listeners, NodeConfig, RunningNode, clock};
use recall::proto as pb;
use recall::proto::operator_client::OperatorClient;
use recall::transport::pki::Ca;
use recall::transport::{DEV_TRUST_DOMAIN, Dialer, Expect, Identity, Security};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tonic::transport::Channel;

pub use super::procs::Procs;

/// The Raft heartbeat of every test node.
pub const HEARTBEAT: Duration = Duration::from_millis(50);
/// The Raft election timeout (lower bound) of every test node.
pub const ELECTION_TIMEOUT: Duration = Duration::from_millis(300);
/// How long a test waits for a cluster to reach a state before it fails.
pub const PATIENCE: Duration = Duration::from_secs(45);
/// The issuer of every key the tests revoke.
pub const ISSUER: &str = "https://idp.example";

/// An operator API client of one node.
pub type Client = OperatorClient<Channel>;

/// The development PKI of this test binary: a CA, and files for nodes 1 to 5 and the operator
/// `admin` in a temporary directory (what `recall pki init` writes).
pub struct TestPki {
    /// The directory (`--pki`).
    pub dir: TempDir,
    /// The CA, to issue more.
    pub ca: Ca,
}

/// The PKI, made on first use.
pub fn pki() -> &'static TestPki {
    static PKI: OnceLock<TestPki> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ca = Ca::generate(DEV_TRUST_DOMAIN).expect("a CA");
        ca.write(dir.path()).expect("writes the CA");
        let ids = (1..=5)
            .map(|n| Identity::node(DEV_TRUST_DOMAIN, n))
            .chain([Identity::operator(DEV_TRUST_DOMAIN, "admin")]);
        for id in ids {
            ca.issue_into(dir.path(), &id).expect("issues");
        }
        TestPki { dir, ca }
    })
}

/// In-memory credentials for `identity`, issued by [`pki`]'s CA.
pub fn security(identity: &Identity) -> Security {
    pki().ca.security(identity).expect("issues credentials")
}

/// The credentials of node `id`.
pub fn node_security(id: u64) -> Security {
    security(&Identity::node(DEV_TRUST_DOMAIN, id))
}

/// The credentials of operator `name`.
pub fn operator(name: &str) -> Security {
    security(&Identity::operator(DEV_TRUST_DOMAIN, name))
}

/// A client of the node at `addr` (its client port) as the first admin, connecting lazily (and
/// again after the node restarts).
pub fn client(addr: &str) -> Client {
    static ADMIN: OnceLock<Security> = OnceLock::new();
    client_as(addr, ADMIN.get_or_init(|| operator("admin")).clone())
}

/// A client of the node at `addr` with `security`.
pub fn client_as(addr: &str, security: Security) -> Client {
    let channel = Dialer::new(security)
        .with_connect_timeout(Duration::from_secs(1))
        .lazy(addr, Expect::AnyNode)
        .expect("a valid address");
    OperatorClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20)
}

/// A token revocation of `value` under [`ISSUER`], without expiry.
pub fn token(value: impl Into<String>) -> pb::Revocation {
    pb::Revocation {
        key: Some(pb::RevocationKey {
            kind: pb::Kind::Token as i32,
            namespace: ISSUER.into(),
            value: value.into(),
        }),
        expires_at_ms: None,
    }
}

/// A revoke request for `items`, by actor `tests`.
pub fn revoke(items: Vec<pb::Revocation>) -> pb::RevokeRequest {
    pb::RevokeRequest {
        items,
        actor: "tests".into(),
        reason: "cluster suite".into(),
        wait: None,
    }
}

/// A revoke request for tokens `prefix-i` for every `i` in `range`.
pub fn revoke_range(prefix: &str, range: std::ops::Range<usize>) -> pb::RevokeRequest {
    revoke(range.map(|i| token(format!("{prefix}-{i}"))).collect())
}

/// Polls `probe` until it succeeds, failing the test after `within` with the last reason it gave.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    let mut last = String::from("no probe finished");
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, probe()).await {
            Ok(Ok(v)) => return v,
            Ok(Err(why)) => last = why,
            // Cut off by the deadline: the reason the probe before gave is the one to report.
            Err(_) => last.push_str(" (the probe after it did not finish)"),
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}; last: {last}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A cluster whose running nodes a test can reach.
pub trait Nodes {
    /// The ids of the nodes running now, with a client of each.
    fn running(&self) -> Vec<(u64, Client)>;
}

/// The status of the node behind `client`.
pub async fn status(client: &mut Client) -> Result<pb::StatusReply, tonic::Status> {
    let req = pb::StatusRequest {
        version: None,
        local_only: true,
    };
    // A node that accepts the call but never answers is named, not waited on to the deadline.
    match tokio::time::timeout(Duration::from_secs(5), client.status(req)).await {
        Ok(reply) => Ok(reply?.into_inner()),
        Err(_) => Err(tonic::Status::deadline_exceeded(
            "no answer to Status within 5 s",
        )),
    }
}

/// Waits until every running node names the same leader, itself running, and returns it.
pub async fn leader(nodes: &impl Nodes) -> u64 {
    let running = nodes.running();
    eventually("a leader every running node agrees on", PATIENCE, || {
        let mut running = running.clone();
        async move {
            let mut leaders = BTreeMap::new();
            for (id, client) in &mut running {
                let s = status(client)
                    .await
                    .map_err(|e| format!("node {id}: {}", e.message()))?;
                leaders.insert(*id, s.leader_id);
            }
            let first = leaders.values().next().copied().flatten();
            match first {
                Some(l) if leaders.values().all(|v| *v == Some(l)) && leaders.contains_key(&l) => {
                    Ok(l)
                }
                _ => Err(format!("leaders as seen by each node: {leaders:?}")),
            }
        }
    })
    .await
}

/// Waits until every running node has applied `version` or later and all hold the same state
/// (applied version, digest, entries, rules); returns each node's status.
pub async fn converged(nodes: &impl Nodes, version: u64) -> BTreeMap<u64, pb::StatusReply> {
    let running = nodes.running();
    let what = format!("every running node to apply version {version} and agree");
    eventually(&what, PATIENCE, || {
        let mut running = running.clone();
        async move {
            let mut seen = BTreeMap::new();
            for (id, client) in &mut running {
                let s = status(client)
                    .await
                    .map_err(|e| format!("node {id}: {}", e.message()))?;
                seen.insert(*id, s);
            }
            let state = |s: &pb::StatusReply| (s.applied_version, s.digest, s.entries, s.rules);
            let states: Vec<_> = seen.values().map(state).collect();
            if states.iter().all(|s| s.0 >= version && *s == states[0]) {
                Ok(seen)
            } else {
                Err(format!(
                    "(applied version, digest, entries, rules) by node: {:?}",
                    seen.iter()
                        .map(|(id, s)| (id, state(s)))
                        .collect::<Vec<_>>()
                ))
            }
        }
    })
    .await
}

/// The checkpoint keys the cluster knows, as `recall audit keys` prints them.
pub async fn trusted_keys(c: &Client) -> BTreeMap<u64, [u8; 32]> {
    let lines = c
        .clone()
        .audit_keys(pb::AuditKeysRequest {})
        .await
        .unwrap()
        .into_inner()
        .lines;
    recall::node::history::export::parse_trust(&lines.join("\n")).unwrap()
}

/// Waits until `n` nodes have bound their checkpoint keys (each does within a second of the
/// seed) and returns a version every node must reach to have all of them.
pub async fn keys_bound(nodes: &impl Nodes, n: usize) -> u64 {
    let running = nodes.running();
    eventually("every node to bind its checkpoint key", PATIENCE, || {
        let mut running = running.clone();
        async move {
            let (_, client) = running.iter_mut().next().ok_or("no node runs")?;
            let keys = client
                .audit_keys(pb::AuditKeysRequest {})
                .await
                .map_err(|e| e.message().to_string())?
                .into_inner()
                .lines;
            if keys.len() < n {
                return Err(format!("{} keys bound: {keys:?}", keys.len()));
            }
            Ok(status(client)
                .await
                .map_err(|e| e.message().to_string())?
                .applied_version)
        }
    })
    .await
}

/// The audit chain check of the node behind `client`.
pub async fn audit_verify(client: &mut Client) -> pb::AuditVerifyReply {
    client
        .audit_verify(pb::AuditVerifyRequest {})
        .await
        .expect("audit verify answers")
        .into_inner()
}

/// The whole audit trail of the node behind `client` (up to 10000 records).
pub async fn audit_log(client: &mut Client) -> Vec<pb::AuditRecord> {
    let req = pb::AuditLogRequest {
        from_version: None,
        limit: 10_000,
    };
    let mut stream = client
        .audit_log(req)
        .await
        .expect("audit log answers")
        .into_inner();
    let mut records = Vec::new();
    while let Some(r) = stream.message().await.expect("audit log streams") {
        records.push(r);
    }
    records
}

/// The version of the snapshot stored in a stopped node's state file, if it has one. The node's
/// last tasks may hold the file for a moment after it stopped, so opening it is retried.
pub async fn stored_snapshot_version(data_dir: &Path) -> Option<u64> {
    use recall::node::raft::snapshot::{FILE_NAME, Meta};
    use redb::{ReadableDatabase, TableDefinition};
    const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");
    let path = data_dir.join("state").join(FILE_NAME);
    let db = eventually(
        "the stopped node to release its state file",
        PATIENCE,
        || {
            let path = path.clone();
            async move { redb::Database::open(&path).map_err(|e| e.to_string()) }
        },
    )
    .await;
    let txn = db.begin_read().expect("reads");
    let table = txn.open_table(SNAPSHOT).expect("the snapshot table");
    let meta = table.get("meta").expect("reads")?;
    let meta: Meta = postcard::from_bytes(meta.value()).expect("snapshot meta decodes");
    meta.last_log_id.map(|id| id.index)
}

/// The configuration of node `id` of a test cluster whose members are `peers` (peer addresses).
pub fn node_config(id: u64, peers: &BTreeMap<u64, String>, data_dir: PathBuf) -> NodeConfig {
    NodeConfig {
        id,
        advertise: peers[&id].clone(),
        data_dir,
        initial_members: peers.clone(),
        heartbeat: HEARTBEAT,
        election_timeout: ELECTION_TIMEOUT,
        // These tests are about replication; the step-up tests set the production policy.
        step_up: recall::node::stepup::StepUpPolicy::none(),
        ..NodeConfig::default()
    }
}

/// One node of a [`Cluster`].
struct Member {
    config: NodeConfig,
    /// The client port's address (the peer port's is `config.advertise`).
    client_addr: String,
    client: Client,
    node: Option<RunningNode>,
}

/// Authority nodes running in this process, each on its own listener and data directory.
pub struct Cluster {
    members: BTreeMap<u64, Member>,
    _root: TempDir,
}

impl Cluster {
    /// Starts an `n`-node cluster with the test defaults.
    pub async fn start(n: u64) -> Self {
        Self::start_with(n, |_| {}).await
    }

    /// Starts an `n`-node cluster, each node's configuration changed by `tweak` first. Every
    /// listener is bound before any node starts, so every node knows every address.
    pub async fn start_with(n: u64, tweak: impl Fn(&mut NodeConfig)) -> Self {
        let root = tempfile::tempdir().expect("a temporary directory");
        let mut listeners = BTreeMap::new();
        for id in 1..=n {
            let listeners_of = Listeners {
                client: TcpListener::bind("127.0.0.1:0").await.expect("binds"),
                peer: TcpListener::bind("127.0.0.1:0").await.expect("binds"),
                http: None,
            };
            listeners.insert(id, listeners_of);
        }
        let peers: BTreeMap<u64, String> = listeners
            .iter()
            .map(|(id, l)| (*id, l.peer.local_addr().expect("bound").to_string()))
            .collect();
        let mut members = BTreeMap::new();
        for (id, listeners) in listeners {
            let dir = root.path().join(format!("node-{id}"));
            let mut config = node_config(id, &peers, dir);
            tweak(&mut config);
            let client_addr = listeners.client.local_addr().expect("bound").to_string();
            let node = RunningNode::start(
                config.clone(),
                listeners,
                node_security(id),
                clock::system(),
            )
            .await
            .unwrap_or_else(|e| panic!("node {id} starts: {e:#}"));
            let member = Member {
                client: client(&client_addr),
                client_addr,
                config,
                node: Some(node),
            };
            members.insert(id, member);
        }
        Self {
            members,
            _root: root,
        }
    }

    /// Every node's id, running or not.
    pub fn ids(&self) -> Vec<u64> {
        self.members.keys().copied().collect()
    }

    /// A client of node `id`.
    pub fn client(&self, id: u64) -> Client {
        self.members[&id].client.clone()
    }

    /// Node `id`'s client port (`127.0.0.1:PORT`): operators and subscribers.
    pub fn addr(&self, id: u64) -> &str {
        &self.members[&id].client_addr
    }

    /// Node `id`'s peer port (`127.0.0.1:PORT`): the address in the membership.
    pub fn peer_addr(&self, id: u64) -> &str {
        &self.members[&id].config.advertise
    }

    /// Node `id` as it runs in this process (its metrics, state machine, Raft).
    pub fn node(&self, id: u64) -> &RunningNode {
        let member = &self.members[&id];
        member
            .node
            .as_ref()
            .unwrap_or_else(|| panic!("node {id} is running"))
    }

    /// Node `id`'s data directory.
    pub fn data_dir(&self, id: u64) -> &Path {
        &self.members[&id].config.data_dir
    }

    /// Stops node `id` (its server and Raft) and waits until it has.
    pub async fn stop(&mut self, id: u64) {
        let node = self.members.get_mut(&id).and_then(|m| m.node.take());
        let node = node.unwrap_or_else(|| panic!("node {id} is running"));
        tokio::time::timeout(Duration::from_secs(10), node.shutdown())
            .await
            .unwrap_or_else(|_| panic!("node {id} shuts down within 10s"))
            .unwrap_or_else(|e| panic!("node {id} shuts down cleanly: {e:#}"));
    }

    /// Starts node `id` again on its data directory and port. The stopped node's last tasks may
    /// still hold its files for a moment, so this retries until the deadline.
    pub async fn restart(&mut self, id: u64) {
        self.restart_with(id, |_| {}).await
    }

    /// Starts node `id` again as [`Cluster::restart`] does, its configuration changed by
    /// `tweak` first (and kept for later restarts).
    pub async fn restart_with(&mut self, id: u64, tweak: impl Fn(&mut NodeConfig)) {
        let member = self.members.get_mut(&id).expect("a member");
        assert!(member.node.is_none(), "node {id} is stopped");
        tweak(&mut member.config);
        let config = member.config.clone();
        let client_addr = member.client_addr.clone();
        let what = format!("node {id} to restart");
        let node = eventually(&what, PATIENCE, || {
            let (config, client_addr) = (config.clone(), client_addr.clone());
            async move {
                let bind = |addr: String| async move {
                    TcpListener::bind(&addr)
                        .await
                        .map_err(|e| format!("binding {addr}: {e}"))
                };
                let listeners = Listeners {
                    client: bind(client_addr).await?,
                    http: None,
                    peer: bind(config.advertise.clone()).await?,
                };
                RunningNode::start(config, listeners, node_security(id), clock::system())
                    .await
                    .map_err(|e| format!("{e:#}"))
            }
        })
        .await;
        member.node = Some(node);
    }
}

impl Nodes for Cluster {
    fn running(&self) -> Vec<(u64, Client)> {
        let running = self.members.iter().filter(|(_, m)| m.node.is_some());
        running.map(|(id, m)| (*id, m.client.clone())).collect()
    }
}
