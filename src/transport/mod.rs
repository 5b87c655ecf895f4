//! Every link recall makes or accepts goes through this module: mutual TLS (rustls), SPIFFE
//! identities, certificate rotation, message-size limits, HTTP/2 and TCP keepalive,
//! TCP_NODELAY, connection limits and the handshake deadline are decided here once.
//!
//! - [`identity`]: SPIFFE IDs (`spiffe://DOMAIN/node/ID`, `/operator/NAME`, `/subscriber/ID`);
//! - [`credentials`]: the CA, certificate and key files, reloaded when they change;
//! - [`incoming`]: accepting connections (limits, handshake, the peer's identity);
//! - [`http`]: serving HTTP connections, each under header-read, idle and close deadlines;
//! - [`dial`]: every outgoing gRPC channel;
//! - [`peer_dial`]: where a node dials each peer (the membership's address or its own override);
//! - [`pki`]: a development CA and its certificates (`recall pki init`);
//! - [`errors`]: TLS failures as sentences.
//!
//! tonic's own `ServerTlsConfig` is not used: it cannot reload certificates, and it would parse
//! the client certificate on every request. Here the handshake runs in [`incoming`], the
//! identity is read once per connection, and every request carries it as a [`Peer`].
//!
//! There is no plaintext mode in the service. The `bench-plaintext` cargo feature, enabled only
//! by the transport benchmark, adds [`Security::Plaintext`] so that TLS can be measured against
//! its absence.

pub mod credentials;
pub mod dial;
pub mod errors;
pub mod http;
pub mod identity;
pub mod incoming;
pub mod peer_dial;
pub mod pki;
mod refuse;
mod verify;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

pub use credentials::{Credentials, TlsError, TlsFiles};
pub use dial::{DialError, Dialer};
pub use http::HttpTimeouts;
pub use identity::{Identity, IdentityError, Principal};
pub use incoming::{ListenerLimits, Peer, Protocol};
pub use peer_dial::PeerDialer;
pub use verify::Expect;

/// The trust domain of the development PKI.
pub const DEV_TRUST_DOMAIN: &str = "recall.local";

/// How a party secures its links.
#[derive(Clone, Debug)]
pub enum Security {
    /// Mutual TLS with these credentials.
    Tls(Arc<Credentials>),
    /// No TLS and no identities: only the transport benchmark builds this.
    #[cfg(feature = "bench-plaintext")]
    Plaintext,
}

impl Security {
    /// Mutual TLS with the credentials in `files`, for an identity of `trust_domain`.
    pub fn tls(files: TlsFiles, trust_domain: &str) -> Result<Self, TlsError> {
        Ok(Self::Tls(Credentials::load(files, trust_domain)?))
    }

    /// The identity this party proves (`None` on the plaintext benchmark build).
    pub fn identity(&self) -> Option<Identity> {
        match self {
            Security::Tls(c) => Some(c.identity()),
            #[cfg(feature = "bench-plaintext")]
            Security::Plaintext => None,
        }
    }

    /// The trust domain (`None` on the plaintext benchmark build).
    pub fn trust_domain(&self) -> Option<&str> {
        match self {
            Security::Tls(c) => Some(c.trust_domain()),
            #[cfg(feature = "bench-plaintext")]
            Security::Plaintext => None,
        }
    }
}

/// The HTTP/2 ping interval of servers; a peer that does not answer within
/// [`KEEPALIVE_TIMEOUT`] is dropped.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// See [`KEEPALIVE_INTERVAL`].
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// A tonic server builder with recall's HTTP/2 settings: keepalive pings, a bound on concurrent
/// streams per connection, and on header size.
pub fn grpc_server() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .max_concurrent_streams(Some(256))
        .http2_max_header_list_size(Some(64 << 10))
}

/// Serves a tonic router on `listener` until `shutdown` resolves.
pub async fn serve_grpc(
    router: tonic::transport::server::Router,
    listener: TcpListener,
    security: Security,
    limits: ListenerLimits,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let incoming = incoming::incoming(listener, security, Protocol::Grpc, limits);
    router
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// Serves a local API (the sidecar's gRPC check) on `listener`: with `tls`, mutual TLS as on
/// every other port; without, plaintext (meant for loopback), TCP_NODELAY either way.
pub async fn serve_local_grpc(
    router: tonic::transport::server::Router,
    listener: TcpListener,
    tls: Option<Security>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    match tls {
        Some(security) => {
            serve_grpc(
                router,
                listener,
                security,
                ListenerLimits::default(),
                shutdown,
            )
            .await
        }
        None => {
            let incoming = incoming::plain(listener, ListenerLimits::default());
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
    }
}

/// Serves an axum app (the sidecar's HTTP check API, a node's HTTP listener) on `listener`,
/// with mutual TLS when `tls` is given, else plaintext (meant for loopback), each connection
/// under `timeouts` (see [`http`]).
pub async fn serve_http(
    app: axum::Router,
    listener: TcpListener,
    tls: Option<Security>,
    timeouts: HttpTimeouts,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    match tls {
        Some(security) => {
            let listener = HttpListener::new(listener, security, ListenerLimits::default())?;
            http::serve(listener, app, timeouts, shutdown).await
        }
        None => {
            let listener = HttpListener::plain(listener, ListenerLimits::default())?;
            http::serve(listener, app, timeouts, shutdown).await
        }
    }
}

/// A listener of [`incoming`] connections for [`http::serve`]: TLS, or plaintext for a local API.
pub struct HttpListener {
    rx: tokio_stream::wrappers::ReceiverStream<std::io::Result<incoming::Conn>>,
    local: std::net::SocketAddr,
}

impl HttpListener {
    /// Accepts TLS connections on `listener`.
    pub fn new(
        listener: TcpListener,
        security: Security,
        limits: ListenerLimits,
    ) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        Ok(Self {
            rx: incoming::incoming(listener, security, Protocol::Http, limits),
            local,
        })
    }

    /// Accepts plaintext connections on `listener` (a local API on loopback), under the same
    /// connection limits.
    pub fn plain(listener: TcpListener, limits: ListenerLimits) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        Ok(Self {
            rx: incoming::plain(listener, limits),
            local,
        })
    }
}

impl axum::serve::Listener for HttpListener {
    type Io = incoming::Conn;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        use futures::StreamExt;
        loop {
            match self.rx.next().await {
                Some(Ok(conn)) => {
                    let addr = tonic::transport::server::Connected::connect_info(&conn).addr;
                    return (conn, addr);
                }
                Some(Err(_)) => continue,
                // The accept loop only ends when this receiver is dropped.
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// The peer of a request served through [`serve_grpc`].
pub fn peer<T>(req: &tonic::Request<T>) -> Result<&Peer, tonic::Status> {
    req.extensions().get::<Peer>().ok_or_else(|| {
        tonic::Status::unauthenticated("the connection carries no verified identity")
    })
}
