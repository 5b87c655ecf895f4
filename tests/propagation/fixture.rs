//! A single node (or a few) on loopback with subscribers attached.

use std::time::Duration;

use recall::node::{NodeConfig, RunningNode, clock};
use recall::proto as pb;
use recall::proto::operator_client::OperatorClient;
use recall::subscriber::{Subscriber, SubscriberConfig};
use tempfile::TempDir;
use tokio::net::TcpListener;

/// A one-node cluster in a temporary directory.
pub struct OneNode {
    pub node: RunningNode,
    pub addr: String,
    pub _dir: TempDir,
}

pub fn fast_config(dir: &std::path::Path, addr: &str) -> NodeConfig {
    let mut c = NodeConfig {
        advertise: addr.to_string(),
        data_dir: dir.to_path_buf(),
        heartbeat: Duration::from_millis(50),
        election_timeout: Duration::from_millis(300),
        ..NodeConfig::default()
    };
    c.streams.heartbeat = Duration::from_millis(100);
    c
}

impl OneNode {
    pub async fn start_with(edit: impl FnOnce(&mut NodeConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut config = fast_config(dir.path(), &addr);
        edit(&mut config);
        let node = RunningNode::start(config, listener, clock::system())
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
        OperatorClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    pub fn subscriber_config(&self, id: &str) -> SubscriberConfig {
        let mut c = SubscriberConfig::new(vec![self.addr.clone()], id);
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
