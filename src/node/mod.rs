//! The authority node (`recall server`): an openraft member holding the revocation set durably.
//! It listens on two ports, both mutual TLS: the peer port serves only the internal Raft RPC to
//! member nodes, the client port the operator API (by role), the subscribe stream (to
//! subscriber identities) and `Check` (to subscribers and operators, from the exact state).
//!
//! - [`raft`]: the type configuration, the redb log and state machine, the gRPC transport;
//! - [`writer`]: the write path (validate, chunk, stamp, propose or forward to the leader);
//! - [`operator`]: the operator API;
//! - [`subscribe`]: the subscribe stream that feeds sidecars;
//! - [`check`]: `Check` from the applied exact state (lite-mode sidecars confirm hits with it);
//! - [`leader`]: what only the leader does (the cluster seed, expiry prunes);
//! - [`audit`]: the hash-chained history of applied commands;
//! - [`history`]: the commands kept with it, signed checkpoints, offline verification;
//! - [`access`] and [`rate`]: who may do what, and how fast;
//! - [`stepup`]: what the operations that can hurt need beyond a role (a code, a second operator);
//! - [`metrics`], [`ui`] and [`http`]: `/metrics` for Prometheus and the live page `/ui` on the
//!   optional HTTP listener;
//! - [`config`] and [`clock`]: what a node is started with.
//!
//! Nothing here parses flags or reads the environment: the binary does, and passes a
//! [`NodeConfig`], bound [`Listeners`], the node's [`Security`] and a shutdown signal.

pub mod access;
pub mod audit;
mod caught_up;
pub mod check;
pub mod clock;
pub mod config;
pub mod contact;
pub mod convergence;
pub mod history;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod operator;
pub mod peers;
pub mod raft;
pub mod rate;
pub mod sightings;
pub mod stepup;
pub mod subscribe;
pub mod ui;
pub mod write_error;
pub mod writer;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use clock::Clock;
pub use config::{ConfigError, FileConfig, NodeConfig};
pub use write_error::WriteError;
pub use writer::Writer;

use crate::transport::{Dialer, PeerDialer, Security};
use raft::network::GrpcNetwork;
use raft::{LogStore, Node, Raft, StateMachine};

/// The listeners of a node, already bound (tests pass `127.0.0.1:0`).
pub struct Listeners {
    /// The client port: operator API and subscribe stream.
    pub client: TcpListener,
    /// The peer port: the internal Raft RPC (its address is the one in the membership).
    pub peer: TcpListener,
    /// The HTTP listener for `/metrics`, if any (plain HTTP: see [`http`]).
    pub http: Option<TcpListener>,
}

/// The most bytes one subscriber message (a Hello or an Ack) may have.
pub(crate) const MAX_SUBSCRIBER_MESSAGE: usize = 64 << 10;

/// The most bytes one revocation item takes on the wire (kind, two 256-byte strings, expiry).
const MAX_ITEM_BYTES: usize = 640;

/// The largest reply a member sends another outside Raft itself (its subscribers, its
/// sightings).
pub const MAX_PEER_REPLY: usize = 8 << 20;

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
    /// The node's metrics (what `/metrics` renders).
    pub metrics: Arc<metrics::NodeMetrics>,
    servers: Vec<JoinHandle<Result<(), tonic::transport::Error>>>,
    http: Option<JoinHandle<std::io::Result<()>>>,
    watcher: JoinHandle<()>,
    duties: JoinHandle<()>,
    witness: JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl RunningNode {
    /// Starts a node on `listeners`, proving `security`'s identity (a node certificate whose id
    /// is `config.id`).
    pub async fn start(
        config: NodeConfig,
        listeners: Listeners,
        security: Security,
        clock: Clock,
    ) -> anyhow::Result<Self> {
        config.validate()?;
        if let Some(identity) = security.identity()
            && identity.node_id() != Some(config.id)
        {
            anyhow::bail!(
                "the node certificate names {identity}, but this node's id is {}: give the \
                 certificate of node {} (node-{}.pem in a development PKI)",
                config.id,
                config.id,
                config.id
            );
        }
        let trust_domain = security
            .trust_domain()
            .unwrap_or(crate::transport::DEV_TRUST_DOMAIN)
            .to_owned();
        let admins = config
            .admins
            .iter()
            .map(|a| access::operator_identity(&trust_domain, a).map(|i| i.to_string()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("invalid configuration: admins: {e}"))?;
        let raft_config = Arc::new(config.raft_config()?);
        let raft_limit = raft::network::message_limit(config.chunk_bytes, config.append_bytes);
        let dir = config.data_dir.clone();
        let sm_config = config.state_machine;
        let (log, sm) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let log = LogStore::open(&dir.join("raft")).context("opening the Raft log")?;
            let sm = StateMachine::open(&dir.join("state"), sm_config)
                .context("opening the state machine")?;
            Ok((log, sm))
        })
        .await??;
        // Every channel to a peer goes through one dialler: the configured addresses hold for
        // Raft, forwarded writes and the convergence view alike.
        let dialer = PeerDialer::new(Dialer::new(security.clone()), config.peer_dial.clone());
        let appends = Arc::new(raft::append_budget::AppendMetrics::new());
        let network = GrpcNetwork {
            dialer: dialer.clone(),
            max_message: raft_limit,
            append_bytes: config.append_bytes,
            appends: Arc::clone(&appends),
            retry_after: config.heartbeat,
        };
        let known_commit = log.known_commit();
        let raft = Raft::new(config.id, raft_config, network, log, sm.clone())
            .await
            .context("starting Raft")?;
        let writer = Writer::new(
            raft.clone(),
            sm.clone(),
            clock.clone(),
            writer::WriterConfig {
                limits: config.limits,
                timeout: config.write_timeout,
                chunk_bytes: config.chunk_bytes,
                admins,
                step_up: config.step_up.clone(),
            },
            dialer.clone(),
        );

        let registry = Arc::new(subscribe::Registry::default());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let until_stopped = |mut s: tokio::sync::watch::Receiver<bool>| async move {
            let _ = s.wait_for(|s| *s).await;
        };
        let contact = Arc::new(contact::Contact::new(
            contact::out_of_touch_after(config.election_timeout),
            contact::vouch_within(config.election_timeout),
            known_commit,
        ));
        let live = metrics::Live {
            raft: raft.clone(),
            sm: sm.clone(),
            subscribers: registry.clone(),
            contact: contact.clone(),
        };
        let node_metrics =
            metrics::NodeMetrics::new(live.clone(), writer.commit_histogram(), &appends);
        let watcher = node_metrics.watch(
            raft.clone(),
            &sm,
            registry.clone(),
            clock.clone(),
            stopped.clone(),
        );
        let http = listeners.http.map(|l| {
            tokio::spawn(http::serve(
                node_metrics.clone(),
                live.clone(),
                l,
                until_stopped(stopped.clone()),
            ))
        });
        let peers = Arc::new(peers::Peers::new(raft.clone(), dialer));
        let convergence = Arc::new(convergence::Convergence::new(
            peers.clone(),
            registry.clone(),
        ));
        let sightings = Arc::new(sightings::Store::new(sightings::MAX_HELD));
        let peer_server = {
            let raft_svc = raft::service::RaftService::new(
                raft.clone(),
                writer.clone(),
                contact.clone(),
                registry.clone(),
                sightings.clone(),
                config.initial_members.keys().copied().collect(),
            );
            let router = crate::transport::grpc_server().add_service(
                crate::proto::raft_internal_server::RaftInternalServer::new(raft_svc)
                    .max_decoding_message_size(raft_limit)
                    .max_encoding_message_size(raft_limit.max(MAX_PEER_REPLY)),
            );
            tokio::spawn(crate::transport::serve_grpc(
                router,
                listeners.peer,
                security.clone(),
                config.listener_limits,
                until_stopped(stopped.clone()),
            ))
        };
        let client_server = {
            let op_svc = operator::OperatorService::new(
                raft.clone(),
                sm.clone(),
                writer.clone(),
                convergence,
                contact.clone(),
                config.write_rate,
                trust_domain,
            );
            let sub_svc = subscribe::SubscribeService {
                origin: subscribe::NodeOrigin {
                    sm: sm.clone(),
                    raft: raft.clone(),
                    contact: contact.clone(),
                    snapshots: Default::default(),
                    witnesses: Default::default(),
                    max_lag: config.streams.max_lag,
                    clock: clock.clone(),
                    metrics: node_metrics.streams.clone(),
                },
                registry: registry.clone(),
                config: config.streams,
                stopped: stopped.clone(),
                metrics: node_metrics.streams.clone(),
            };
            let sightings_svc = sightings::service::SightingsService {
                store: sightings,
                sm: sm.clone(),
                peers,
                clock: clock.clone(),
                metrics: node_metrics.clone(),
                recording: Arc::new(tokio::sync::Semaphore::new(1)),
            };
            let check_svc = check::CheckService {
                sm: sm.clone(),
                raft: raft.clone(),
                contact: contact.clone(),
                max_lag: config.streams.max_lag,
                metrics: node_metrics.clone(),
            };
            let operator_limit = config
                .limits
                .max_batch
                .saturating_mul(MAX_ITEM_BYTES)
                .saturating_add(64 << 10);
            let router = crate::transport::grpc_server()
                .add_service(
                    crate::proto::operator_server::OperatorServer::new(op_svc)
                        .max_decoding_message_size(operator_limit),
                )
                .add_service(
                    crate::proto::subscription_server::SubscriptionServer::new(sub_svc)
                        .max_decoding_message_size(MAX_SUBSCRIBER_MESSAGE),
                )
                .add_service(
                    crate::proto::check_server::CheckServer::new(check_svc)
                        .max_decoding_message_size(check::MAX_REQUEST_BYTES),
                )
                .add_service(
                    crate::proto::sightings_server::SightingsServer::new(sightings_svc)
                        .max_decoding_message_size(sightings::MAX_REPORT_BYTES)
                        .max_encoding_message_size(MAX_PEER_REPLY),
                );
            tokio::spawn(crate::transport::serve_grpc(
                router,
                listeners.client,
                security,
                config.listener_limits,
                until_stopped(stopped.clone()),
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
                tracing::info!(members = ?members.keys().collect::<Vec<_>>(), step_up = %config.step_up.describe(), "creating the cluster");
                if let Err(e) = raft.initialize(members).await {
                    tracing::warn!(error = %e, "cluster initialisation refused");
                }
            }
        }

        let witness_key = history::checkpoint::load_or_create_key(&config.data_dir)
            .context("the checkpoint-signing key")?;
        let witness = tokio::spawn(history::witness::run(
            config.id,
            witness_key,
            sm.clone(),
            writer.clone(),
            clock.clone(),
            config.checkpoint_interval,
            stopped.clone(),
        ));
        let duties = tokio::spawn(leader::run(
            raft.clone(),
            sm.clone(),
            writer.clone(),
            clock,
            config.prune_interval,
            std::time::Duration::from_millis(
                u64::try_from(config.limits.expiry_grace_ms).unwrap_or(0),
            ),
            stopped,
        ));
        tracing::info!(id = config.id, addr = %config.advertise, data = %config.data_dir.display(), "node started");
        Ok(Self {
            subscribers: registry,
            metrics: node_metrics,
            http,
            watcher,
            raft,
            sm,
            writer,
            servers: vec![peer_server, client_server],
            duties,
            witness,
            stop,
        })
    }

    /// Stops serving and shuts Raft down.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.duties.abort();
        self.witness.abort();
        self.watcher.abort();
        let _ = self.raft.shutdown().await;
        if let Some(http) = self.http {
            http.await??;
        }
        for server in self.servers {
            server.await??;
        }
        Ok(())
    }
}

/// Runs a node until `shutdown` resolves.
pub async fn run(
    config: NodeConfig,
    listeners: Listeners,
    security: Security,
    clock: Clock,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let node = RunningNode::start(config, listeners, security, clock).await?;
    shutdown.await;
    tracing::info!("shutting down");
    node.shutdown().await
}
