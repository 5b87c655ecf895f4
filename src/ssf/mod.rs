//! The OpenID Shared Signals receiver (`recall ssf`): identity providers tell recall that a
//! session was revoked or a credential changed (CAEP 1.0 events in Security Event Tokens), and
//! recall revokes what they name, within the same propagation and audit as an operator's write.
//!
//! - [`config`]: the file: the push endpoint, the audience, and each transmitter;
//! - [`set`]: a SET verified against its transmitter (type, issuer, signature, audience, age);
//! - [`event`]: what a verified event asks for (no I/O);
//! - [`seen`]: deliveries already handled, on disk, so a replay is acted on once;
//! - [`receive`]: one delivery end to end, and what the transmitter is told;
//! - [`push`]: push delivery (RFC 8935); [`poll`]: poll delivery (RFC 8936);
//! - [`tls`]: HTTPS for the push endpoint.
//!
//! The receiver writes as an operator identity of its own (role `recaller`: it adds rules); the
//! audit history names that identity as the actor, `ssf:<transmitter>` as whom it acted for,
//! and the SET's `jti` and event as the reason.

pub mod config;
pub mod event;
pub mod poll;
pub mod push;
pub mod receive;
pub mod seen;
pub mod set;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use config::{SsfConfig, TransmitterConfig};
pub use receive::{Outcome, Receiver};
use tokio::net::TcpListener;

use crate::cluster_client::ClusterClient;
use crate::node::clock::Clock;
use crate::transport::http::serve;

/// How often deliveries past their window are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// A running receiver.
pub struct SsfReceiver {
    /// The shared receiving end.
    pub receiver: Arc<Receiver>,
    /// Where pushes are served, if they are.
    pub push_addr: Option<SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl SsfReceiver {
    /// Starts the pollers, the pruning and, with `config.listen`, the push endpoint (bound here:
    /// a port in use fails now, by name).
    pub async fn start(
        config: SsfConfig,
        cluster: ClusterClient,
        clock: Clock,
    ) -> anyhow::Result<Self> {
        config.validate()?;
        let receiver = Receiver::new(&config, cluster, clock).await?;
        let mut tasks = Vec::new();
        for t in &config.transmitters {
            if let Some(p) = poll::Poller::new(t, receiver.clone())? {
                tasks.push(tokio::spawn(p.run()));
            }
        }
        let r = receiver.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                match r.prune().await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!("forgot {n} SET deliveries past their window"),
                    Err(e) => tracing::warn!("cannot prune the SET deliveries: {e:#}"),
                }
                tokio::time::sleep(PRUNE_EVERY).await;
            }
        }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (push_addr, server) = match config.listen {
            None => (None, None),
            Some(addr) => {
                let tcp = TcpListener::bind(addr)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen for SSF pushes on {addr}: {e}"))?;
                let local = tcp.local_addr()?;
                let app = push::router(receiver.clone(), config.max_set_bytes);
                let shutdown = async move {
                    let _ = stopped.await;
                };
                // The same connection deadlines as every HTTP listener (header read, idle).
                let timeouts = crate::transport::HttpTimeouts::default();
                let server = match (&config.tls_cert, &config.tls_key) {
                    (Some(cert), Some(key)) => {
                        let listener = tls::TlsListener::new(tcp, tls::acceptor(cert, key)?)?;
                        tokio::spawn(serve(listener, app, timeouts, shutdown))
                    }
                    _ => tokio::spawn(serve(tcp, app, timeouts, shutdown)),
                };
                tracing::info!(
                    addr = %local,
                    tls = config.tls_cert.is_some(),
                    "SSF push endpoint at POST /ssf/events"
                );
                (Some(local), Some(server))
            }
        };
        Ok(Self {
            receiver,
            push_addr,
            tasks,
            server,
            stop: Some(stop),
        })
    }

    /// Runs until `shutdown` resolves, then stops.
    pub async fn run_until(mut self, shutdown: impl Future<Output = ()>) {
        shutdown.await;
        self.stop().await;
    }

    /// Stops the pollers and the push endpoint (requests in progress finish).
    pub async fn stop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for SsfReceiver {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
