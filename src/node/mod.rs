//! The authority node (`recall server`): an openraft member holding the revocation set durably,
//! serving the operator API and the internal Raft RPC on one gRPC port.
//!
//! - [`raft`]: the type configuration, the redb log and state machine, the gRPC transport;
//! - [`writer`]: the write path (validate, chunk, stamp, propose or forward to the leader);
//! - [`operator`]: the operator API;
//! - [`subscribe`]: the subscribe stream that feeds sidecars;
//! - [`leader`]: what only the leader does (the cluster seed, expiry prunes);
//! - [`audit`]: the hash-chained history of applied commands;
//! - [`config`] and [`clock`]: what a node is started with.
//!
//! Nothing here parses flags or reads the environment: the binary does, and passes a
//! [`NodeConfig`], a bound listener and a shutdown signal.

pub mod audit;
pub mod clock;
pub mod config;
pub mod contact;
pub mod convergence;
pub mod leader;
pub mod operator;
pub mod raft;
pub mod subscribe;
pub mod write_error;
pub mod writer;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;

pub use clock::Clock;
pub use config::{ConfigError, FileConfig, NodeConfig};
pub use write_error::WriteError;
pub use writer::Writer;

use raft::network::{GrpcNetwork, MAX_MESSAGE_BYTES};
use raft::{LogStore, Node, Raft, StateMachine};

/// A running node.
pub struct RunningNode {
    /// The node's Raft handle.
    pub raft: Raft,
    /// The node's state machine.
    pub sm: StateMachine,
    /// The node's write path.
    pub writer: Writer,
    /// The node's live subscribers.
    pub subscribers: Arc<subscribe::Registry>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    duties: JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl RunningNode {
    /// Starts a node on `listener` (already bound, so tests can pass `127.0.0.1:0`).
    pub async fn start(
        config: NodeConfig,
        listener: TcpListener,
        clock: Clock,
    ) -> anyhow::Result<Self> {
        config.validate()?;
        let raft_config = Arc::new(config.raft_config()?);
        let dir = config.data_dir.clone();
        let sm_config = config.state_machine;
        let (log, sm) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let log = LogStore::open(&dir.join("raft")).context("opening the Raft log")?;
            let sm = StateMachine::open(&dir.join("state"), sm_config)
                .context("opening the state machine")?;
            Ok((log, sm))
        })
        .await??;
        let network = GrpcNetwork::default();
        let raft = Raft::new(config.id, raft_config, network, log, sm.clone())
            .await
            .context("starting Raft")?;
        let writer = Writer::new(
            raft.clone(),
            sm.clone(),
            clock.clone(),
            config.limits,
            config.write_timeout,
            config.chunk_bytes,
        );

        let registry = Arc::new(subscribe::Registry::default());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let contact = Arc::new(contact::Contact::new(contact::out_of_touch_after(
            config.election_timeout,
        )));
        let server = {
            let raft_svc =
                raft::service::RaftService::new(raft.clone(), writer.clone(), contact.clone());
            let op_svc = operator::OperatorService::new(
                raft.clone(),
                sm.clone(),
                writer.clone(),
                registry.clone(),
            );
            let sub_svc = subscribe::SubscribeService::new(
                sm.clone(),
                raft.clone(),
                registry.clone(),
                config.streams,
                clock.clone(),
                contact.clone(),
                stopped.clone(),
            );
            let mut stopped = stopped.clone();
            let router = tonic::transport::Server::builder()
                .add_service(
                    crate::proto::raft_internal_server::RaftInternalServer::new(raft_svc)
                        .max_decoding_message_size(MAX_MESSAGE_BYTES)
                        .max_encoding_message_size(MAX_MESSAGE_BYTES),
                )
                .add_service(
                    crate::proto::operator_server::OperatorServer::new(op_svc)
                        .max_decoding_message_size(64 << 20),
                )
                .add_service(crate::proto::subscription_server::SubscriptionServer::new(
                    sub_svc,
                ));
            tokio::spawn(router.serve_with_incoming_shutdown(
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                async move {
                    let _ = stopped.wait_for(|s| *s).await;
                },
            ))
        };

        if config.bootstrap && !raft.is_initialized().await? {
            let mut members: BTreeMap<u64, Node> = config
                .initial_members
                .iter()
                .map(|(id, addr)| (*id, Node { addr: addr.clone() }))
                .collect();
            if members.is_empty() {
                members.insert(
                    config.id,
                    Node {
                        addr: config.advertise.clone(),
                    },
                );
            }
            if members.keys().next() == Some(&config.id) {
                tracing::info!(members = ?members.keys().collect::<Vec<_>>(), "creating the cluster");
                if let Err(e) = raft.initialize(members).await {
                    tracing::warn!(error = %e, "cluster initialisation refused");
                }
            }
        }

        let duties = tokio::spawn(leader::run(
            raft.clone(),
            sm.clone(),
            writer.clone(),
            clock,
            config.prune_interval,
            stopped,
        ));
        tracing::info!(id = config.id, addr = %config.advertise, data = %config.data_dir.display(), "node started");
        Ok(Self {
            subscribers: registry,
            raft,
            sm,
            writer,
            server,
            duties,
            stop,
        })
    }

    /// Stops serving and shuts Raft down.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.duties.abort();
        let _ = self.raft.shutdown().await;
        self.server.await??;
        Ok(())
    }
}

/// Runs a node until `shutdown` resolves.
pub async fn run(
    config: NodeConfig,
    listener: TcpListener,
    clock: Clock,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let node = RunningNode::start(config, listener, clock).await?;
    shutdown.await;
    tracing::info!("shutting down");
    node.shutdown().await
}
