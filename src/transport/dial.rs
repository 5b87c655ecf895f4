//! Dialling: every gRPC channel recall opens (node to node, CLI to node, subscriber to node) is
//! built here, over TCP with TCP_NODELAY and keepalive, then TLS with this party's certificate,
//! checking that the server is who the caller expects.

use std::time::Duration;

use std::pin::Pin;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint, Uri};

use super::{Expect, Security};

/// How a party dials.
#[derive(Clone, Debug)]
pub struct Dialer {
    security: Security,
    connect_timeout: Duration,
    window: Option<u32>,
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
            window: None,
        }
    }

    /// The same, with HTTP/2 flow-control windows (stream and connection) of `bytes`: a small
    /// window keeps a slow reader's backlog at the sender.
    pub fn with_window(mut self, bytes: u32) -> Self {
        self.window = Some(bytes);
        self
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
            .initial_stream_window_size(self.window)
            .initial_connection_window_size(self.window)
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

/// How long a dial waits for the server's first bytes after the TLS handshake.
const FIRST_BYTES: Duration = Duration::from_secs(2);

/// A stream whose first bytes were already read: they are served again first.
struct Rewind<S> {
    prefix: Vec<u8>,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let me = self.get_mut();
        if !me.prefix.is_empty() {
            let n = me.prefix.len().min(buf.remaining());
            buf.put_slice(&me.prefix[..n]);
            me.prefix.drain(..n);
            return std::task::Poll::Ready(Ok(()));
        }
        Pin::new(&mut me.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A connected byte stream (TLS, or TCP on the plaintext benchmarks build).
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

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
            let mut tls = tokio_rustls::TlsConnector::from(creds.client(expect))
                .connect(name, tcp)
                .await?;
            // In TLS 1.3 the server judges our certificate after our handshake is done: wait for
            // its first bytes (an HTTP/2 server sends its SETTINGS at once) so that a refusal
            // arrives as its alert, not as a broken pipe on our first request.
            let mut first = vec![0u8; 4096];
            let got = tokio::time::timeout(FIRST_BYTES, tls.read(&mut first)).await;
            match got {
                Ok(Ok(0)) => Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "the node closed the connection after the TLS handshake (it refused our \
                     certificate; its log says why)",
                )),
                Ok(Ok(n)) => {
                    first.truncate(n);
                    Ok(Box::new(Rewind {
                        prefix: first,
                        inner: tls,
                    }))
                }
                Ok(Err(e)) => Err(e),
                Err(_) => Ok(Box::new(tls)),
            }
        }
        #[cfg(feature = "bench-plaintext")]
        Security::Plaintext => Ok(Box::new(tcp)),
    }
}
