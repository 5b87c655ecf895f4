//! A relay (`recall relay`): follows the subscribe stream upstream, from the cluster's nodes or
//! from another relay, like any full-mode subscriber (resuming, reconnecting, persisting,
//! checking checkpoints), and serves the same stream downstream under the same contract, from
//! what it holds. Acks flow upward: the relay reports the subscribers behind it on every
//! stream it follows, so `recall status` and `--wait-converged` count them. A tree of relays
//! is how a large fleet follows one cluster without every subscriber holding a stream to a node.
//!
//! - [`held`]: the filter and the window of recent deltas, changed together under one lock;
//! - [`origin`]: that state as the sessions read it, vouched for as far as the upstream did;
//! - [`report`]: the subscribers behind the relay, as reported upward.

pub mod held;
pub mod http;
pub mod origin;
pub mod report;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::node::subscribe::{Registry, StreamConfig, SubscribeService, metrics::StreamMetrics};
use crate::subscriber::{Subscriber, SubscriberConfig};
use crate::transport::ListenerLimits;

/// How a relay follows and serves.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// How it follows its upstream: `upstream` (or `cluster`) lists where from, `id` must be
    /// the id of its certificate (spiffe://DOMAIN/relay/ID), `data_dir` keeps its state for
    /// warm restarts; checkpoint keys and the staleness bound work as for a sidecar.
    pub subscriber: SubscriberConfig,
    /// How it serves its subscribers (queue bounds, heartbeats, the most subscribers).
    pub streams: StreamConfig,
    /// The most deltas kept for subscribers to resume from.
    pub max_deltas: usize,
    /// The most fingerprints and rules kept across those deltas.
    pub max_delta_entries: usize,
    /// Connection limits of its listener.
    pub listener_limits: ListenerLimits,
}

impl RelayConfig {
    /// Defaults for relaying `subscriber`'s stream.
    pub fn new(subscriber: SubscriberConfig) -> Self {
        Self {
            subscriber,
            streams: StreamConfig::default(),
            max_deltas: 4_096,
            max_delta_entries: 1 << 20,
            listener_limits: ListenerLimits::default(),
        }
    }
}

/// A running relay.
pub struct Relay {
    subscriber: Subscriber,
    registry: Arc<Registry>,
    metrics: prometheus::Registry,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Relay {
    /// Follows the upstream and serves on `listener` until [`Relay::shutdown`].
    pub async fn start(config: RelayConfig, listener: TcpListener) -> anyhow::Result<Self> {
        let mut sub = config.subscriber;
        if let Some(identity) = sub.security.identity()
            && !identity.is_relay()
        {
            bail!(
                "the certificate names {identity}, not a relay: a relay serves subscribers with \
                 a spiffe://DOMAIN/relay/ID certificate (`recall pki issue DIR \
                 spiffe://DOMAIN/relay/ID`)"
            );
        }
        if sub.mode != recall_filter::Mode::Full {
            bail!("a relay keeps the exact set: its filter must be in full mode");
        }
        // A relay checks no tokens: it has no sightings to report.
        sub.sightings.interval = Duration::ZERO;
        // Its upstream may be relays as well as nodes.
        if sub.upstream.is_empty() {
            sub.upstream = sub.cluster.clone();
        }
        let addr = listener.local_addr().context("the relay's listener")?;
        let registry = Arc::new(Registry::default());
        let reporter = Arc::new(report::Downstreams::new(registry.clone()));
        let (window, entries) = (config.max_deltas, config.max_delta_entries);
        let mut shared = None;
        let out_of_touch = sub.staleness_bound;
        let security = sub.security.clone();
        let subscriber = Subscriber::start_with(
            sub,
            |filter| {
                let held = held::Retained::new(filter, window, entries);
                shared = Some(held.shared());
                held
            },
            Some(reporter),
        )
        .await?;
        let held = shared.expect("the relay's state is made at start");
        let metrics = crate::metrics::registry();
        let streams = Arc::new(StreamMetrics::new(&metrics));
        let origin = origin::RelayOrigin {
            held,
            upstream: subscriber.shared().clone(),
            state: subscriber.watch(),
            snapshots: Default::default(),
            metrics: streams.clone(),
            out_of_touch,
            clock: crate::node::clock::system(),
            alarm: Arc::new(watch::channel(None).0),
        };
        let (stop, stopped) = watch::channel(false);
        let service = SubscribeService {
            origin,
            registry: registry.clone(),
            config: config.streams,
            stopped: stopped.clone(),
            metrics: streams,
        };
        let router = crate::transport::grpc_server().add_service(
            crate::proto::subscription_server::SubscriptionServer::new(service)
                .max_decoding_message_size(crate::node::MAX_SUBSCRIBER_MESSAGE),
        );
        let mut until = stopped;
        let server = tokio::spawn(crate::transport::serve_grpc(
            router,
            listener,
            security,
            config.listener_limits,
            async move {
                let _ = until.wait_for(|s| *s).await;
            },
        ));
        tracing::info!(%addr, upstream = ?subscriber.config().upstream(), "relaying");
        Ok(Self {
            subscriber,
            registry,
            metrics,
            addr,
            stop,
            server,
        })
    }

    /// Where it serves.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How it follows its upstream (its version, digest, contact).
    pub fn subscriber(&self) -> &Subscriber {
        &self.subscriber
    }

    /// The subscribers it serves, those behind its own subscribers included.
    pub fn subscribers(&self) -> Vec<crate::node::subscribe::SubscriberInfo> {
        self.registry.list()
    }

    /// Its stream metrics, to render at `/metrics`.
    pub fn metrics(&self) -> &prometheus::Registry {
        &self.metrics
    }

    /// Stops serving (its subscribers move on), then stops following and persists its state.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.server.await;
        self.subscriber.shutdown().await;
    }
}
