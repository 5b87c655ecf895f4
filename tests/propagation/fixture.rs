//! A single node (or a few) on loopback with subscribers attached, every link mutual TLS with
//! credentials from one in-memory CA.

use std::sync::OnceLock;
use std::time::Duration;

use recall::node::{Listeners, NodeConfig, RunningNode, clock};
use recall::proto as pb;
use recall::proto::operator_client::OperatorClient;
use recall::subscriber::{Subscriber, SubscriberConfig};
use recall::transport::pki::Ca;
use recall::transport::{DEV_TRUST_DOMAIN as DOMAIN, Dialer, Expect, Identity, Security};
use tempfile::TempDir;
use tokio::net::TcpListener;

/// The CA of this test binary.
pub fn ca() -> &'static Ca {
    static CA: OnceLock<Ca> = OnceLock::new();
    CA.get_or_init(|| Ca::generate(DOMAIN).expect("a CA"))
}

/// Credentials of node `id`.
pub fn node_security(id: u64) -> Security {
    ca().security(&Identity::node(DOMAIN, id)).unwrap()
}

/// Credentials of subscriber `id`.
pub fn subscriber_security(id: &str) -> Security {
    ca().security(&Identity::subscriber(DOMAIN, id)).unwrap()
}

/// An operator client of the node at `addr`, as the first admin.
pub async fn admin_client(addr: &str) -> OperatorClient<tonic::transport::Channel> {
    let admin = ca().security(&Identity::operator(DOMAIN, "admin")).unwrap();
    let channel = Dialer::new(admin)
        .connect(addr, Expect::AnyNode)
        .await
        .unwrap();
    OperatorClient::new(channel)
}

/// Bound client and peer listeners on loopback.
pub async fn listeners() -> Listeners {
    Listeners {
        client: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        peer: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        http: None,
    }
}

/// A one-node cluster in a temporary directory.
pub struct OneNode {
    pub node: RunningNode,
    pub addr: String,
    pub _dir: TempDir,
}

/// A fast single-node configuration whose peer port is at `peer_addr`.
pub fn fast_config(dir: &std::path::Path, peer_addr: &str) -> NodeConfig {
    let mut c = NodeConfig {
        advertise: peer_addr.to_string(),
        data_dir: dir.to_path_buf(),
        heartbeat: Duration::from_millis(50),
        election_timeout: Duration::from_millis(300),
        step_up: recall::node::stepup::StepUpPolicy::none(),
        ..NodeConfig::default()
    };
    c.streams.heartbeat = Duration::from_millis(100);
    c
}

impl OneNode {
    pub async fn start_with(edit: impl FnOnce(&mut NodeConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let listeners = listeners().await;
        let addr = listeners.client.local_addr().unwrap().to_string();
        let peer = listeners.peer.local_addr().unwrap().to_string();
        let mut config = fast_config(dir.path(), &peer);
        edit(&mut config);
        let node = RunningNode::start(config, listeners, node_security(1), clock::system())
            .await
            .unwrap();
        let me = Self {
            node,
            addr,
            _dir: dir,
        };
        me.wait_seeded().await;
        me
    }

    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    async fn wait_seeded(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !self.node.sm.seeded() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the node never seeded its cluster"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn client(&self) -> OperatorClient<tonic::transport::Channel> {
        admin_client(&self.addr).await
    }

    pub fn subscriber_config(&self, id: &str) -> SubscriberConfig {
        let mut c = SubscriberConfig::new(vec![self.addr.clone()], id, subscriber_security(id));
        c.backoff_min = Duration::from_millis(20);
        c.backoff_max = Duration::from_millis(200);
        c
    }
}

pub async fn subscribe(config: SubscriberConfig) -> Subscriber {
    let s = Subscriber::start(config).await.unwrap();
    s.wait_synced(Duration::from_secs(10)).await.unwrap();
    s
}

pub fn token(iss: &str, jti: &str) -> pb::Revocation {
    pb::Revocation {
        key: Some(pb::RevocationKey {
            kind: pb::Kind::Token as i32,
            namespace: iss.into(),
            value: jti.into(),
        }),
        expires_at_ms: None,
    }
}

pub async fn revoke(
    client: &mut OperatorClient<tonic::transport::Channel>,
    items: Vec<pb::Revocation>,
) -> u64 {
    client
        .revoke(pb::RevokeRequest {
            items,
            actor: "test".into(),
            reason: "test".into(),
            wait: None,
        })
        .await
        .unwrap()
        .into_inner()
        .version
}
