//! How a node reaches its peers' peer ports: at the address the cluster's membership gives each
//! peer (the one it advertises), unless this node's own configuration names another address for
//! that peer (`--peer-dial`), as behind a NAT, a proxy or a split-horizon network. Every
//! node-to-node channel (Raft, forwarded writes, the cluster-wide convergence view) is dialled
//! here, so the override holds for all of them or none. Whatever the address, the channel
//! expects the peer's own node identity: the certificate names the node, not the address, so an
//! override that leads to another node (or anything else) is refused at the handshake.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tonic::transport::Channel;

use super::{DialError, Dialer, Expect};

/// Dials peer nodes by id.
#[derive(Clone, Debug)]
pub struct PeerDialer {
    dialer: Dialer,
    overrides: Arc<BTreeMap<u64, String>>,
}

impl PeerDialer {
    /// Dials with `dialer`, reaching node `id` at `overrides[id]` when it is there.
    pub fn new(dialer: Dialer, overrides: BTreeMap<u64, String>) -> Self {
        Self {
            dialer,
            overrides: Arc::new(overrides),
        }
    }

    /// The same, with another connect timeout.
    pub fn with_connect_timeout(mut self, t: Duration) -> Self {
        self.dialer = self.dialer.with_connect_timeout(t);
        self
    }

    /// Where node `id`, which advertises `advertised`, is dialled.
    pub fn addr<'a>(&'a self, id: u64, advertised: &'a str) -> &'a str {
        self.overrides.get(&id).map_or(advertised, String::as_str)
    }

    /// A lazily connected channel to node `id` (advertising `advertised`), which must prove
    /// it is node `id`.
    pub fn lazy(&self, id: u64, advertised: &str) -> Result<Channel, DialError> {
        self.dialer
            .lazy(self.addr(id, advertised), Expect::Node(id))
    }

    /// A channel to node `id`, connected now (its error says why it could not be).
    pub async fn connect(&self, id: u64, advertised: &str) -> Result<Channel, DialError> {
        self.dialer
            .connect(self.addr(id, advertised), Expect::Node(id))
            .await
    }
}
