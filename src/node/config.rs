//! The configuration of an authority node: a plain struct, filled by the binary from flags, the
//! environment and an optional TOML file, and checked before anything starts.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use recall_core::Limits;
use serde::Deserialize;

use super::raft::{NodeId, StateMachineConfig};

/// Everything a node needs to start.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This node's id in the cluster (unique, non-zero).
    pub id: NodeId,
    /// The address peers reach this node's peer port at (`host:port`): the address in the
    /// cluster's membership.
    pub advertise: String,
    /// Where the Raft log and the state machine live.
    pub data_dir: PathBuf,
    /// The initial voters, by id, when the cluster is created. Empty: a single-node cluster of
    /// this node. The node with the smallest id initialises a fresh cluster; a node that is not
    /// listed waits to be added (`recall cluster add-learner`).
    pub initial_members: BTreeMap<NodeId, String>,
    /// Where this node dials some of its peers instead of the address each advertises (the one
    /// in the membership), by peer id: a peer behind a NAT, a proxy or another network view.
    /// Every channel to that peer (Raft, forwarded writes, the convergence view) uses it, and
    /// still expects the peer's own node certificate. Peers not listed are dialled at the
    /// address they advertise.
    pub peer_dial: BTreeMap<NodeId, String>,
    /// Whether this node may create a cluster at all (false for a node that joins later).
    pub bootstrap: bool,
    /// Raft heartbeat interval.
    pub heartbeat: Duration,
    /// Raft election timeout, lower bound (the upper bound is twice it).
    pub election_timeout: Duration,
    /// Build a snapshot (and compact the log) after this many applied entries.
    pub snapshot_after: u64,
    /// How long a write may take to commit before the client is told there is no quorum.
    pub write_timeout: Duration,
    /// Raft entries are cut at about this many bytes of revocations.
    pub chunk_bytes: usize,
    /// The most bytes one AppendEntries carries to a follower (an entry larger than this goes
    /// alone); a follower that times out gets half as much, down to 8 KiB, until it keeps up.
    pub append_bytes: usize,
    /// How often the leader checks for expired entries to prune.
    pub prune_interval: Duration,
    /// Validation limits.
    pub limits: Limits,
    /// The delta window.
    pub state_machine: StateMachineConfig,
    /// How subscriber streams are served.
    pub streams: crate::node::subscribe::StreamConfig,
    /// The first admins of a new cluster: operator names (`admin`) or SPIFFE IDs, bound with
    /// the cluster's seed by its first leader. Ignored once the cluster has role bindings.
    pub admins: Vec<String>,
    /// The step-up policy of a new cluster, fixed with its seed by its first leader (later
    /// changed only through `recall policy set`). Default: [`StepUpPolicy::production`].
    pub step_up: crate::node::stepup::StepUpPolicy,
    /// How often the node checks its stored history and signs a checkpoint when its audit
    /// head moved (and binds its checkpoint key if the cluster lacks it).
    pub checkpoint_interval: Duration,
    /// How fast one operator identity may write, per node.
    pub write_rate: crate::node::rate::WriteRate,
    /// Connection limits of both listeners.
    pub listener_limits: crate::transport::ListenerLimits,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            id: 1,
            advertise: "127.0.0.1:7070".into(),
            data_dir: PathBuf::from("recall-data"),
            initial_members: BTreeMap::new(),
            peer_dial: BTreeMap::new(),
            bootstrap: true,
            heartbeat: Duration::from_millis(100),
            election_timeout: Duration::from_millis(500),
            snapshot_after: 10_000,
            write_timeout: Duration::from_secs(5),
            chunk_bytes: 128 << 10,
            append_bytes: 1 << 20,
            prune_interval: Duration::from_secs(60),
            limits: Limits::default(),
            state_machine: StateMachineConfig::default(),
            streams: crate::node::subscribe::StreamConfig::default(),
            admins: vec!["admin".into()],
            step_up: crate::node::stepup::StepUpPolicy::production(),
            checkpoint_interval: Duration::from_secs(1),
            write_rate: crate::node::rate::WriteRate::default(),
            listener_limits: crate::transport::ListenerLimits::default(),
        }
    }
}

/// The smallest `append_bytes`: the floor a timed-out follower's budget is cut to.
const APPEND_BYTES_MIN: usize = super::raft::append_budget::FLOOR_BYTES;
/// The largest `append_bytes`.
const APPEND_BYTES_MAX: usize = 64 << 20;

/// The smallest bytes queued to one subscriber before the node stops queuing it changes.
const STREAM_QUEUE_BYTES_MIN: usize = 64 << 10;

/// A configuration that cannot work, naming the field.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {field}: {problem}")]
pub struct ConfigError {
    /// The field.
    pub field: &'static str,
    /// What is wrong.
    pub problem: String,
}

impl NodeConfig {
    /// Refuses a configuration that cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, problem: &str| {
            Err(ConfigError {
                field,
                problem: problem.into(),
            })
        };
        if self.id == 0 {
            return err("id", "must be at least 1");
        }
        if self.advertise.parse::<std::net::SocketAddr>().is_err() && !self.advertise.contains(':')
        {
            return err("advertise", "must be host:port");
        }
        if !self.initial_members.is_empty() && !self.initial_members.contains_key(&self.id) {
            return err("peers", "must include this node's own id (or be empty)");
        }
        for (id, addr) in &self.peer_dial {
            if *id == self.id {
                return err(
                    "peer_dial",
                    &format!(
                        "names this node's own id {id}: a node never dials itself; list only \
                         its peers (ID=HOST:PORT)"
                    ),
                );
            }
            if *id == 0 || !is_host_port(addr) {
                return err(
                    "peer_dial",
                    &format!("{id}={addr:?} is not ID=HOST:PORT with an id of at least 1"),
                );
            }
        }
        if self.election_timeout <= self.heartbeat * 2 {
            return err("election_timeout", "must be more than twice the heartbeat");
        }
        if self.write_timeout < Duration::from_millis(100) {
            return err("write_timeout", "must be at least 100ms");
        }
        if !(0..=86_400_000).contains(&self.limits.expiry_grace_ms) {
            return err("prune_grace", "must be between 0 and 1 day");
        }
        if !(APPEND_BYTES_MIN..=APPEND_BYTES_MAX).contains(&self.append_bytes) {
            return err(
                "append_bytes",
                "must be between 8192 (8 KiB) and 67108864 (64 MiB)",
            );
        }
        if !(STREAM_QUEUE_BYTES_MIN..=APPEND_BYTES_MAX).contains(&self.streams.queue_bytes) {
            return err(
                "stream_queue_bytes",
                "must be between 65536 (64 KiB) and 67108864 (64 MiB)",
            );
        }
        if self.snapshot_after == 0 {
            return err("snapshot_after", "must be at least 1");
        }
        if self.write_rate.items_per_second == 0 || self.write_rate.burst == 0 {
            return err("write_rate", "the rate and the burst must be at least 1");
        }
        self.state_machine.validate().map_err(|e| ConfigError {
            field: "state_machine",
            problem: e.to_string(),
        })
    }

    /// The openraft configuration derived from this one.
    pub fn raft_config(&self) -> Result<openraft::Config, ConfigError> {
        let config = openraft::Config {
            cluster_name: "recall".into(),
            heartbeat_interval: self.heartbeat.as_millis() as u64,
            election_timeout_min: self.election_timeout.as_millis() as u64,
            election_timeout_max: 2 * self.election_timeout.as_millis() as u64,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_after),
            max_in_snapshot_log_to_keep: 1_000,
            // One AppendEntries must fit in a heartbeat interval, or a lagging follower retries
            // the same batch forever. Its bytes are bounded by `append_bytes` (the Raft client
            // splits larger batches); this bounds how many small entries share one call.
            max_payload_entries: 64,
            // Snapshot chunks of a few MiB on a busy machine can exceed openraft's 200 ms default.
            install_snapshot_timeout: 2_000,
            ..Default::default()
        };
        config.validate().map_err(|e| ConfigError {
            field: "raft",
            problem: e.to_string(),
        })
    }
}

/// Whether `addr` is `host:port` that can be dialled (a name or an address, then a port number
/// other than 0).
fn is_host_port(addr: &str) -> bool {
    if let Ok(a) = addr.parse::<std::net::SocketAddr>() {
        return a.port() != 0;
    }
    match addr.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && !host.contains(['/', ' '])
                && port.parse::<u16>().is_ok_and(|p| p > 0)
        }
        None => false,
    }
}

/// The TOML file form of a node's configuration (every field optional; see `recall server --help`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// See [`NodeConfig::id`].
    pub id: Option<NodeId>,
    /// The client port's address.
    pub listen: Option<String>,
    /// The peer port's address.
    pub peer_listen: Option<String>,
    /// The HTTP listener's address (`/metrics`).
    pub http_listen: Option<String>,
    /// See [`NodeConfig::advertise`].
    pub advertise: Option<String>,
    /// See [`NodeConfig::data_dir`].
    pub data_dir: Option<PathBuf>,
    /// See [`NodeConfig::initial_members`]: `{ "1" = "10.0.0.1:7070", ... }`.
    pub peers: Option<BTreeMap<String, String>>,
    /// See [`NodeConfig::peer_dial`]: `{ "2" = "10.0.1.2:7071", ... }`.
    pub peer_dial: Option<BTreeMap<String, String>>,
    /// See [`NodeConfig::bootstrap`].
    pub bootstrap: Option<bool>,
    /// See [`NodeConfig::heartbeat`], in milliseconds.
    pub heartbeat_ms: Option<u64>,
    /// See [`NodeConfig::election_timeout`], in milliseconds.
    pub election_timeout_ms: Option<u64>,
    /// See [`NodeConfig::snapshot_after`].
    pub snapshot_after: Option<u64>,
    /// See [`NodeConfig::write_timeout`], in milliseconds.
    pub write_timeout_ms: Option<u64>,
    /// See [`NodeConfig::prune_interval`], in seconds.
    pub prune_interval_s: Option<u64>,
    /// See [`NodeConfig::append_bytes`].
    pub append_bytes: Option<usize>,
    /// See [`crate::node::subscribe::StreamConfig::queue_bytes`].
    pub stream_queue_bytes: Option<usize>,
    /// See [`Limits::max_batch`].
    pub max_batch: Option<usize>,
    /// See [`Limits::expiry_grace_ms`], in seconds.
    pub prune_grace_s: Option<u64>,
    /// See [`NodeConfig::admins`].
    pub admins: Option<Vec<String>>,
    /// See [`NodeConfig::step_up`]: `production` or `none`.
    pub step_up: Option<String>,
    /// The CA bundle (PEM).
    pub ca: Option<PathBuf>,
    /// This node's certificate (PEM).
    pub cert: Option<PathBuf>,
    /// This node's private key (PEM).
    pub key: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_bytes_outside_8_kib_to_64_mib_is_refused_by_name() {
        for bad in [0, 8191, (64 << 20) + 1] {
            let config = NodeConfig {
                append_bytes: bad,
                ..NodeConfig::default()
            };
            let e = config.validate().expect_err("refused");
            assert_eq!(e.field, "append_bytes", "{e}");
        }
        for good in [8192, 1 << 20, 64 << 20] {
            let config = NodeConfig {
                append_bytes: good,
                ..NodeConfig::default()
            };
            assert!(config.validate().is_ok(), "{good}");
        }
    }

    #[test]
    fn a_peer_dial_address_for_itself_or_not_host_port_is_refused_by_name() {
        let with = |id, addr: &str| NodeConfig {
            peer_dial: [(id, addr.to_owned())].into(),
            ..NodeConfig::default()
        };
        for (id, addr) in [
            (1, "127.0.0.1:9000"),
            (2, "127.0.0.1"),
            (2, "http://127.0.0.1:9000"),
            (2, "127.0.0.1:0"),
            (2, "host:port"),
            (0, "127.0.0.1:9000"),
        ] {
            let e = with(id, addr).validate().expect_err("refused");
            assert_eq!(e.field, "peer_dial", "{id}={addr}: {e}");
        }
        let own = with(1, "127.0.0.1:9000").validate().expect_err("refused");
        assert!(own.problem.contains("own id 1"), "{own}");
        for (id, addr) in [
            (2, "127.0.0.1:9000"),
            (3, "node-3.internal:7071"),
            (2, "[::1]:7071"),
        ] {
            assert!(with(id, addr).validate().is_ok(), "{id}={addr}");
        }
    }

    #[test]
    fn a_stream_queue_under_64_kib_is_refused_by_name() {
        let mut config = NodeConfig::default();
        config.streams.queue_bytes = (64 << 10) - 1;
        let e = config.validate().expect_err("refused");
        assert_eq!(e.field, "stream_queue_bytes", "{e}");
        config.streams.queue_bytes = 64 << 10;
        assert!(config.validate().is_ok());
    }
}
