//! `recall server`: flags, environment and an optional TOML file into a [`NodeConfig`], tracing
//! set-up, then one call to run the node until Ctrl-C or SIGTERM.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::node::{FileConfig, NodeConfig};

/// Flags of `recall server`. Precedence: flag, then environment, then the config file, then the
/// default.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// A TOML file with any of the settings below (flags and environment override it).
    #[arg(long, env = "RECALL_CONFIG")]
    config: Option<PathBuf>,
    /// This node's id (unique in the cluster, at least 1). Default 1.
    #[arg(long, env = "RECALL_ID")]
    id: Option<u64>,
    /// The client port (operator API and subscribe stream). Default 127.0.0.1:7070.
    #[arg(long, env = "RECALL_LISTEN")]
    listen: Option<String>,
    /// The peer port (the Raft RPC between nodes only). Default 127.0.0.1:7071.
    #[arg(long, env = "RECALL_PEER_LISTEN")]
    peer_listen: Option<String>,
    /// Plain-HTTP listener for `GET /metrics` (Prometheus), e.g. 127.0.0.1:7072. Default: none.
    /// Bind it where only your monitoring reaches it.
    #[arg(long, env = "RECALL_HTTP_LISTEN")]
    http_listen: Option<String>,
    /// The address other nodes reach this node's peer port at. Default: the peer listen address.
    #[arg(long, env = "RECALL_ADVERTISE")]
    advertise: Option<String>,
    /// The data directory. Default ./recall-data.
    #[arg(long, env = "RECALL_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The initial voters of a new cluster by their peer addresses:
    /// `1=host:peerport,2=host:peerport,3=host:peerport`. The node with the smallest id creates
    /// the cluster. Default: a single-node cluster of this node.
    #[arg(long, env = "RECALL_PEERS", value_delimiter = ',')]
    peers: Vec<String>,
    /// Where this node dials some of its peers instead of the address each advertises:
    /// `2=host:port,3=host:port` (a peer behind a NAT or a proxy). Every link to that peer uses
    /// it, and the peer must still prove it is that node (its certificate). Default: none.
    #[arg(long, env = "RECALL_PEER_DIAL", value_delimiter = ',')]
    peer_dial: Vec<String>,
    /// Join an existing cluster instead of creating one (wait for `recall cluster add-learner`).
    #[arg(long, env = "RECALL_JOIN")]
    join: bool,
    /// Raft heartbeat interval in milliseconds. Default 100.
    #[arg(long, env = "RECALL_HEARTBEAT_MS")]
    heartbeat_ms: Option<u64>,
    /// Raft election timeout (lower bound) in milliseconds. Default 500.
    #[arg(long, env = "RECALL_ELECTION_TIMEOUT_MS")]
    election_timeout_ms: Option<u64>,
    /// Snapshot and compact the log after this many entries. Default 10000.
    #[arg(long, env = "RECALL_SNAPSHOT_AFTER")]
    snapshot_after: Option<u64>,
    /// How long a write may wait for a quorum, in milliseconds. Default 5000.
    #[arg(long, env = "RECALL_WRITE_TIMEOUT_MS")]
    write_timeout_ms: Option<u64>,
    /// How often the leader prunes expired entries, in seconds. Default 60.
    #[arg(long, env = "RECALL_PRUNE_INTERVAL_S")]
    prune_interval_s: Option<u64>,
    /// The most bytes one AppendEntries carries to a follower (a larger batch is sent in
    /// parts; a follower that times out gets half as much, down to 8 KiB, until it keeps up).
    /// Between 8192 and 67108864. Default 1048576 (1 MiB).
    #[arg(long, env = "RECALL_APPEND_BYTES")]
    append_bytes: Option<usize>,
    /// The most bytes queued to one subscriber: past it the node queues it nothing more until
    /// it reads, then catches it up from the delta window or resyncs it (`too_slow`). Between
    /// 65536 and 67108864. Default 4194304 (4 MiB).
    #[arg(long, env = "RECALL_STREAM_QUEUE_BYTES")]
    stream_queue_bytes: Option<usize>,
    /// The largest batch one request may carry. Default 100000.
    #[arg(long, env = "RECALL_MAX_BATCH")]
    max_batch: Option<usize>,
    /// How long after its expiry a revocation still holds, in seconds: verifiers accept a token
    /// until `exp` plus their leeway, so an entry is pruned only once `expires_at` plus this has
    /// passed, and a revocation whose expiry passed less than this ago is accepted. Default 300.
    #[arg(long, env = "RECALL_PRUNE_GRACE_S")]
    prune_grace_s: Option<u64>,
    /// How many items (revoked keys, lifted keys, rules) one operator identity may write per
    /// second on this node. Default 500000.
    #[arg(long, env = "RECALL_WRITE_RATE")]
    write_rate: Option<u64>,
    /// The largest burst of items one identity may write at once. Default 1000000.
    #[arg(long, env = "RECALL_WRITE_BURST")]
    write_burst: Option<u64>,
    /// The first admins of a new cluster (operator names or SPIFFE IDs). Default: admin.
    #[arg(long, env = "RECALL_ADMINS", value_delimiter = ',')]
    admins: Vec<String>,
    /// The step-up policy of a new cluster: `production` (two_person for lifts, issuer-,
    /// tenant- and key-wide rules, large imports, role and policy changes) or `none` (roles
    /// alone decide; for development). Fixed with the cluster's seed; change it later with
    /// `recall policy set`. Default: production.
    #[arg(long, env = "RECALL_STEP_UP")]
    step_up: Option<String>,
    /// Log as JSON lines instead of readable text.
    #[arg(long, env = "RECALL_LOG_JSON")]
    log_json: bool,
    /// Certificates: this node's is PKI/node-ID.pem unless --cert names one.
    #[command(flatten)]
    tls: super::TlsArgs,
}

/// What `recall server` resolved its flags into.
struct Resolved {
    config: NodeConfig,
    listen: String,
    peer_listen: String,
    http_listen: Option<String>,
    json: bool,
    tls: super::TlsArgs,
}

/// Sets up tracing (RUST_LOG filters; default info).
pub(super) fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// `ID=HOST:PORT` pairs of the setting `what` (its flag and file key, for errors).
fn parse_peers(what: &str, peers: &[String]) -> anyhow::Result<BTreeMap<u64, String>> {
    let mut out = BTreeMap::new();
    for p in peers.iter().filter(|p| !p.is_empty()) {
        let Some((id, addr)) = p.split_once('=') else {
            bail!("{what}: {p:?} is not ID=HOST:PORT");
        };
        let id: u64 = id
            .trim()
            .parse()
            .with_context(|| format!("{what}: {id:?} is not a node id"))?;
        out.insert(id, addr.trim().to_string());
    }
    Ok(out)
}

/// The flag's values when given, else the file's map as `ID=ADDR` pairs.
fn flag_or_file(flag: Vec<String>, file: Option<BTreeMap<String, String>>) -> Vec<String> {
    if !flag.is_empty() {
        return flag;
    }
    file.unwrap_or_default()
        .into_iter()
        .map(|(id, addr)| format!("{id}={addr}"))
        .collect()
}

impl ServerArgs {
    /// The node configuration and the listen addresses.
    fn resolve(self) -> anyhow::Result<Resolved> {
        let file: FileConfig = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the config file {}", path.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("in the config file {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let d = NodeConfig::default();
        let listen = self
            .listen
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:7070".into());
        let peer_listen = self
            .peer_listen
            .or(file.peer_listen)
            .unwrap_or_else(|| d.advertise.clone());
        let mut tls = self.tls;
        tls.ca = tls.ca.or(file.ca);
        tls.cert = tls.cert.or(file.cert);
        tls.key = tls.key.or(file.key);
        let peers = flag_or_file(self.peers, file.peers);
        let peer_dial = flag_or_file(self.peer_dial, file.peer_dial);
        let ms = Duration::from_millis;
        let mut config = NodeConfig {
            id: self.id.or(file.id).unwrap_or(d.id),
            advertise: self
                .advertise
                .or(file.advertise)
                .unwrap_or_else(|| peer_listen.clone()),
            data_dir: self.data_dir.or(file.data_dir).unwrap_or(d.data_dir),
            initial_members: parse_peers("--peers", &peers)?,
            peer_dial: parse_peers("--peer-dial (peer_dial in the file)", &peer_dial)?,
            bootstrap: !self.join && file.bootstrap.unwrap_or(true),
            heartbeat: self
                .heartbeat_ms
                .or(file.heartbeat_ms)
                .map(ms)
                .unwrap_or(d.heartbeat),
            election_timeout: self
                .election_timeout_ms
                .or(file.election_timeout_ms)
                .map(ms)
                .unwrap_or(d.election_timeout),
            snapshot_after: self
                .snapshot_after
                .or(file.snapshot_after)
                .unwrap_or(d.snapshot_after),
            write_timeout: self
                .write_timeout_ms
                .or(file.write_timeout_ms)
                .map(ms)
                .unwrap_or(d.write_timeout),
            prune_interval: self
                .prune_interval_s
                .or(file.prune_interval_s)
                .map(Duration::from_secs)
                .unwrap_or(d.prune_interval),
            append_bytes: self
                .append_bytes
                .or(file.append_bytes)
                .unwrap_or(d.append_bytes),
            ..d
        };
        if let Some(b) = self.max_batch.or(file.max_batch) {
            config.limits.max_batch = b;
        }
        if let Some(b) = self.stream_queue_bytes.or(file.stream_queue_bytes) {
            config.streams.queue_bytes = b;
        }
        if let Some(g) = self.prune_grace_s.or(file.prune_grace_s) {
            config.limits.expiry_grace_ms =
                i64::try_from(g.saturating_mul(1000)).unwrap_or(i64::MAX);
        }
        if let Some(r) = self.write_rate {
            config.write_rate.items_per_second = r;
        }
        if let Some(b) = self.write_burst {
            config.write_rate.burst = b;
        }
        let admins = if self.admins.is_empty() {
            file.admins.unwrap_or_default()
        } else {
            self.admins
        };
        if !admins.is_empty() {
            config.admins = admins;
        }
        if let Some(name) = self.step_up.or(file.step_up) {
            config.step_up = crate::node::stepup::StepUpPolicy::preset(&name).ok_or_else(|| {
                anyhow::anyhow!(
                    "--step-up {name:?}: expected `production` or `none` (change single \
                     operations later with `recall policy set`)"
                )
            })?;
        }
        Ok(Resolved {
            config,
            listen,
            peer_listen,
            http_listen: self.http_listen.or(file.http_listen),
            json: self.log_json,
            tls,
        })
    }
}

/// Runs `recall server`.
pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let r = args.resolve()?;
    init_tracing(r.json);
    r.config.validate()?;
    let security = r.tls.security(&format!("node-{}", r.config.id))?;
    let bind = |addr: String, flag: &'static str| async move {
        tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr} ({flag})"))
    };
    let listeners = crate::node::Listeners {
        client: bind(r.listen, "--listen").await?,
        peer: bind(r.peer_listen, "--peer-listen").await?,
        http: match r.http_listen {
            Some(addr) => Some(bind(addr, "--http-listen").await?),
            None => None,
        },
    };
    crate::node::run(
        r.config,
        listeners,
        security,
        crate::node::clock::system(),
        shutdown_signal(),
    )
    .await
}

pub(super) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
