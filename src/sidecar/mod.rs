//! The sidecar (`recall sidecar`): a thin server around the embedded [`Subscriber`]. It follows
//! the cluster, persists its state for warm restarts (both done by the subscriber), and answers
//! "is this token revoked?" locally over HTTP and, optionally, gRPC.
//!
//! - [`config`]: what a sidecar is started with;
//! - [`http`]: `GET /v1/check`, `/v1/status`, `/metrics`, `/healthz`, `/readyz` (axum);
//! - [`metrics`]: checks by verdict and the subscriber's state, for Prometheus;
//! - [`query`]: the check query string into a token's facts, with refusals that say what to fix;
//! - [`bearer`]: bearer tokens in, one verdict out (verification, then revocation);
//! - [`forward_auth`]: `/v1/auth` for nginx, Traefik and Envoy HTTP ext_authz, `POST /v1/token`;
//! - [`grpc`]: the `recall.v1.Check` service, single and batch;
//! - [`ext_authz`]: Envoy's gRPC `Authorization/Check`, on the same listener.
//!
//! Nothing here parses flags, reads the environment or binds a port: the binary does, and passes
//! a [`SidecarConfig`], bound listeners and a shutdown signal. No check waits on the network: an
//! answer comes from the local filter, with its staleness and the policy applied.

pub mod bearer;
pub mod config;
pub mod ext_authz;
pub mod forward_auth;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod query;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{ConfigError, SidecarConfig};

use crate::subscriber::Subscriber;
use crate::token::Verifier;
use bearer::Bearer;

/// How long shutdown waits for connection tasks to let go of the subscriber before it gives up
/// persisting the state.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// A running sidecar: the subscriber following the cluster and the servers answering checks.
pub struct RunningSidecar {
    subscriber: Arc<Subscriber>,
    http_addr: SocketAddr,
    grpc_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    servers: JoinHandle<anyhow::Result<()>>,
}

impl RunningSidecar {
    /// Loads the persisted state (if any), starts following the cluster and serves checks on the
    /// listeners (already bound, so tests can pass `127.0.0.1:0`).
    pub async fn start(
        config: SidecarConfig,
        http_listener: TcpListener,
        grpc_listener: Option<TcpListener>,
    ) -> anyhow::Result<Self> {
        config.validate()?;
        let http_addr = http_listener.local_addr()?;
        let grpc_addr = grpc_listener.as_ref().map(|l| l.local_addr()).transpose()?;
        let verifier = if config.issuers.is_empty() {
            None
        } else {
            Some(
                Verifier::start(config.issuers.clone(), crate::node::clock::system())
                    .await
                    .context("loading the issuers")?,
            )
        };
        let subscriber = Arc::new(
            Subscriber::start(config.subscriber)
                .await
                .context("starting the subscriber")?,
        );
        let bearer = Arc::new(Bearer {
            metrics: metrics::SidecarMetrics::new(subscriber.clone()),
            subscriber: subscriber.clone(),
            verifier,
            pass_claims: config.pass_claims,
        });
        let (stop, stopped) = watch::channel(false);
        let servers = tokio::spawn(serve(
            bearer,
            http_listener,
            grpc_listener,
            config.check_tls,
            config.http_timeouts,
            stopped,
        ));
        tracing::info!(
            id = %subscriber.config().id,
            http = %http_addr,
            grpc = ?grpc_addr,
            cluster = ?subscriber.config().cluster,
            "sidecar started"
        );
        Ok(Self {
            subscriber,
            http_addr,
            grpc_addr,
            stop,
            servers,
        })
    }

    /// The embedded subscriber.
    pub fn subscriber(&self) -> &Subscriber {
        &self.subscriber
    }

    /// Where HTTP is served.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Where gRPC is served, if it is.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc_addr
    }

    /// Stops serving (requests in flight finish), then stops following and persists the state.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let served = self.servers.await.context("the server task failed");
        stop_following(self.subscriber).await;
        served?
    }
}

/// Runs a sidecar until `shutdown` resolves (or a server fails).
pub async fn run(
    config: SidecarConfig,
    http_listener: TcpListener,
    grpc_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut sidecar = RunningSidecar::start(config, http_listener, grpc_listener).await?;
    tokio::select! {
        _ = shutdown => {
            tracing::info!("shutting down");
            sidecar.shutdown().await
        }
        served = &mut sidecar.servers => {
            stop_following(sidecar.subscriber).await;
            served.context("the server task failed")??;
            anyhow::bail!("the servers stopped on their own")
        }
    }
}

/// Serves HTTP and (if given a listener) gRPC until `stopped` turns true; the first failure ends
/// both.
async fn serve(
    bearer: Arc<Bearer>,
    http_listener: TcpListener,
    grpc_listener: Option<TcpListener>,
    tls: Option<crate::transport::Security>,
    timeouts: crate::transport::HttpTimeouts,
    stopped: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let http = http::serve(
        bearer.clone(),
        http_listener,
        tls.clone(),
        timeouts,
        until(stopped.clone()),
    );
    let grpc = async move {
        match grpc_listener {
            Some(l) => grpc::serve(bearer, l, tls, until(stopped)).await,
            None => Ok(()),
        }
    };
    tokio::try_join!(http, grpc).map(|_| ())
}

/// Resolves once `stopped` turns true (or its sender is gone).
async fn until(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

/// Stops the subscriber once the servers' connection tasks have let go of it, so its state is
/// persisted for a warm restart.
async fn stop_following(mut subscriber: Arc<Subscriber>) {
    let deadline = tokio::time::Instant::now() + RELEASE_TIMEOUT;
    loop {
        match Arc::try_unwrap(subscriber) {
            Ok(s) => return s.shutdown().await,
            Err(shared) if tokio::time::Instant::now() < deadline => {
                subscriber = shared;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(_) => {
                tracing::warn!(
                    "requests still hold the subscriber after {RELEASE_TIMEOUT:?}; its latest \
                     state is not persisted (the next start resyncs)"
                );
                return;
            }
        }
    }
}
