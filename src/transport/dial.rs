//! Dialling: every gRPC channel recall opens (node to node, CLI to node, subscriber to node) is
//! built here, over TCP with TCP_NODELAY and keepalive, then TLS with this party's certificate,
//! checking that the server is who the caller expects.

use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint, Uri};

use super::{Expect, Security};

/// How a party dials.
#[derive(Clone, Debug)]
pub struct Dialer {
    security: Security,
    connect_timeout: Duration,
}

/// Why a channel could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// The address is not `host:port`.
    #[error("bad address {0:?}: expected host:port")]
    Address(String),
    /// Connecting failed (the message says why, TLS causes named).
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
}

impl Dialer {
    /// A dialler with these credentials.
    pub fn new(security: Security) -> Self {
        Self {
            security,
            connect_timeout: Duration::from_secs(2),
        }
    }

    /// The same, with another connect timeout.
    pub fn with_connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// The security this dialler uses.
    pub fn security(&self) -> &Security {
        &self.security
    }

    fn endpoint(&self, addr: &str) -> Result<Endpoint, DialError> {
        if !addr.contains(':') || addr.contains('/') {
            return Err(DialError::Address(addr.into()));
        }
        // The scheme only frames HTTP/2 requests: TLS is done by the connector below.
        Ok(Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|_| DialError::Address(addr.into()))?
            .connect_timeout(self.connect_timeout)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(true))
    }

    fn connector(
        &self,
        addr: &str,
        expect: Expect,
    ) -> impl tower::Service<
        Uri,
        Response = TokioIo<Box<dyn Io>>,
        Error = std::io::Error,
        Future = impl Send,
    > + Send
    + Clone
    + 'static {
        let security = self.security.clone();
        let addr = addr.to_owned();
        tower::service_fn(move |_: Uri| {
            let (security, addr, expect) = (security.clone(), addr.clone(), expect.clone());
            async move { connect(&security, &addr, expect).await.map(TokioIo::new) }
        })
    }

    /// A channel to `addr` that connects on first use and reconnects after failures.
    pub fn lazy(&self, addr: &str, expect: Expect) -> Result<Channel, DialError> {
        Ok(self
            .endpoint(addr)?
            .connect_with_connector_lazy(self.connector(addr, expect)))
    }

    /// A channel to `addr`, connected now.
    pub async fn connect(&self, addr: &str, expect: Expect) -> Result<Channel, DialError> {
        self.endpoint(addr)?
            .connect_with_connector(self.connector(addr, expect))
            .await
            .map_err(|e| DialError::Connect {
                addr: addr.into(),
                reason: super::errors::explain_client(&e).unwrap_or_else(|| chain(&e)),
            })
    }
}

/// An error and its causes on one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        cur = s.source();
    }
    out
}

/// A connected byte stream (TLS, or TCP on the plaintext benchmarks build).
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

async fn connect(security: &Security, addr: &str, expect: Expect) -> std::io::Result<Box<dyn Io>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(30))
        .with_interval(Duration::from_secs(10));
    let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);
    match security {
        Security::Tls(creds) => {
            let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            // The name is sent as SNI only; the server is checked by its SPIFFE identity.
            let name = ServerName::try_from(host.to_owned())
                .unwrap_or_else(|_| ServerName::try_from("recall").expect("a valid name"));
            let tls = tokio_rustls::TlsConnector::from(creds.client(expect))
                .connect(name, tcp)
                .await?;
            Ok(Box::new(tls))
        }
        #[cfg(feature = "bench-plaintext")]
        Security::Plaintext => Ok(Box::new(tcp)),
    }
}
