//! Accepting connections on a listener: per-address connection limits, TCP_NODELAY and TCP
//! keepalive, then on a TLS listener a deadline for the handshake and the peer's identity read
//! once per connection. The plaintext local APIs (meant for loopback) go through the same
//! accept loop ([`plain`]), so they have the same limits.
//! A client that speaks plaintext, or whose verified certificate names no recall identity, is
//! answered with an error that says so (gRPC UNAUTHENTICATED, or HTTP 400 for a browser or
//! curl) instead of a bare reset.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use super::identity::Identity;
use super::{Security, refuse};

/// The limits of one listener.
#[derive(Clone, Copy, Debug)]
pub struct ListenerLimits {
    /// The most open connections from one IP address; more are closed at once.
    pub max_connections_per_ip: usize,
    /// The most connections in all.
    pub max_connections: usize,
    /// How long a client has to complete its TLS handshake.
    pub handshake_timeout: Duration,
    /// TCP keepalive idle time (dead peers are found by HTTP/2 pings first).
    pub tcp_keepalive: Duration,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self {
            max_connections_per_ip: 2048,
            max_connections: 16_384,
            handshake_timeout: Duration::from_secs(5),
            tcp_keepalive: Duration::from_secs(30),
        }
    }
}

/// Who is on the other end of an accepted connection; every request carries it (tonic puts it in
/// the request's extensions).
#[derive(Clone, Debug)]
pub struct Peer {
    /// The remote address.
    pub addr: SocketAddr,
    /// The verified identity; `None` only on the plaintext transport benchmarks build.
    pub identity: Option<Identity>,
}

/// Counts open connections per IP address.
#[derive(Default)]
struct Counts {
    per_ip: HashMap<IpAddr, usize>,
    total: usize,
}

/// Releases a connection's place in the counts when it closes.
struct Slot {
    counts: Arc<Mutex<Counts>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().expect("connection counts lock");
        c.total -= 1;
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

enum Io {
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    Plain(TcpStream),
}

/// An accepted, authenticated connection.
pub struct Conn {
    io: Io,
    peer: Peer,
    _slot: Slot,
}

impl Connected for Conn {
    type ConnectInfo = Peer;
    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match &mut $self.get_mut().io {
            Io::Tls($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
            Io::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
        }
    };
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write_vectored(cx, bufs))
    }
    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Tls(s) => s.is_write_vectored(),
            Io::Plain(s) => s.is_write_vectored(),
        }
    }
}

/// What a listener serves: gRPC (ALPN h2) or HTTP (h2 and HTTP/1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// A tonic server.
    Grpc,
    /// An axum server.
    Http,
}

/// Accepts connections on `listener` until the returned stream is dropped. The TLS handshakes
/// run concurrently, each under the handshake deadline, so a client that stalls holds only its
/// own connection.
pub fn incoming(
    listener: TcpListener,
    security: Security,
    protocol: Protocol,
    limits: ListenerLimits,
) -> ReceiverStream<io::Result<Conn>> {
    accept_loop(listener, Some(security), protocol, limits)
}

/// Accepts plaintext connections on `listener` (a local API on loopback) under `limits`, until
/// the returned stream is dropped. Their peers carry no identity.
pub fn plain(listener: TcpListener, limits: ListenerLimits) -> ReceiverStream<io::Result<Conn>> {
    accept_loop(listener, None, Protocol::Http, limits)
}

fn accept_loop(
    listener: TcpListener,
    security: Option<Security>,
    protocol: Protocol,
    limits: ListenerLimits,
) -> ReceiverStream<io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(64);
    let counts = Arc::new(Mutex::new(Counts::default()));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = tx.closed() => return,
                a = listener.accept() => a,
            };
            let (tcp, addr) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(slot) = take_slot(&counts, addr.ip(), &limits) else {
                tracing::debug!(peer = %addr, "connection limit reached; closing");
                continue;
            };
            tune(&tcp, &limits);
            let (tx, security) = (tx.clone(), security.clone());
            tokio::spawn(async move {
                let handshake = tokio::time::timeout(limits.handshake_timeout, async {
                    match &security {
                        Some(security) => accept(tcp, addr, security, protocol).await,
                        None => Some((Io::Plain(tcp), None)),
                    }
                });
                match handshake.await {
                    Ok(Some((io, identity))) => {
                        let conn = Conn {
                            io,
                            peer: Peer { addr, identity },
                            _slot: slot,
                        };
                        let _ = tx.send(Ok(conn)).await;
                    }
                    Ok(None) => {}
                    Err(_) => {
                        tracing::info!(peer = %addr, "TLS handshake not completed in time; closed")
                    }
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

fn take_slot(counts: &Arc<Mutex<Counts>>, ip: IpAddr, limits: &ListenerLimits) -> Option<Slot> {
    let mut c = counts.lock().expect("connection counts lock");
    let n = c.per_ip.get(&ip).copied().unwrap_or(0);
    if n >= limits.max_connections_per_ip || c.total >= limits.max_connections {
        return None;
    }
    c.per_ip.insert(ip, n + 1);
    c.total += 1;
    Some(Slot {
        counts: counts.clone(),
        ip,
    })
}

fn tune(tcp: &TcpStream, limits: &ListenerLimits) {
    let _ = tcp.set_nodelay(true);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(limits.tcp_keepalive)
        .with_interval(limits.tcp_keepalive / 3);
    let _ = socket2::SockRef::from(tcp).set_tcp_keepalive(&keepalive);
}

/// The first byte of every TLS connection (a handshake record).
const TLS_HANDSHAKE: u8 = 0x16;

async fn accept(
    tcp: TcpStream,
    addr: SocketAddr,
    security: &Security,
    protocol: Protocol,
) -> Option<(Io, Option<Identity>)> {
    // Infallible unless the plaintext benchmark build adds its variant.
    #[allow(clippy::infallible_destructuring_match)]
    let creds = match security {
        Security::Tls(c) => c,
        #[cfg(feature = "bench-plaintext")]
        Security::Plaintext => return Some((Io::Plain(tcp), None)),
    };
    let mut first = [0u8; 1];
    match tcp.peek(&mut first).await {
        Ok(1) if first[0] == TLS_HANDSHAKE => {}
        Ok(1) => {
            tracing::info!(peer = %addr, "plaintext connection refused: this port requires mutual TLS");
            refuse::serve(tcp, refuse::PLAINTEXT.to_owned()).await;
            return None;
        }
        _ => return None,
    }
    let config = match protocol {
        Protocol::Grpc => creds.grpc_server(),
        Protocol::Http => creds.http_server(),
    };
    let tls = match tokio_rustls::TlsAcceptor::from(config).accept(tcp).await {
        Ok(t) => t,
        Err(e) => {
            tracing::info!(peer = %addr, "TLS refused: {}", super::errors::explain_server(&e));
            return None;
        }
    };
    let cert = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
    let identity = match cert.map(|c| Identity::from_certificate(c)) {
        Some(Ok(id)) if id.trust_domain == creds.trust_domain() => id,
        Some(Ok(id)) => {
            let msg = format!(
                "your certificate names {id}, outside this cluster's trust domain {}",
                creds.trust_domain()
            );
            tracing::info!(peer = %addr, "{msg}");
            refuse::serve(tls, msg).await;
            return None;
        }
        Some(Err(e)) => {
            let msg = format!("your {e}; recall needs a SPIFFE identity in a URI SAN");
            tracing::info!(peer = %addr, "{msg}");
            refuse::serve(tls, msg).await;
            return None;
        }
        None => return None,
    };
    Some((Io::Tls(Box::new(tls)), Some(identity)))
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use tokio::io::AsyncReadExt;

    use super::*;

    /// Waits (with a deadline) until the server side closes `tcp`.
    async fn closed_by_server(tcp: &mut TcpStream) -> bool {
        let mut buf = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    #[tokio::test]
    async fn a_plaintext_listener_closes_connections_past_its_limit_and_frees_the_place_on_close() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = ListenerLimits {
            max_connections_per_ip: 2,
            max_connections: 2,
            ..ListenerLimits::default()
        };
        let mut accepted = plain(listener, limits);
        let _a = TcpStream::connect(addr).await.unwrap();
        let _b = TcpStream::connect(addr).await.unwrap();
        let first = accepted.next().await.unwrap().unwrap();
        let _second = accepted.next().await.unwrap().unwrap();
        assert!(first.connect_info().identity.is_none());
        let mut third = TcpStream::connect(addr).await.unwrap();
        assert!(
            closed_by_server(&mut third).await,
            "a third connection is closed at once"
        );
        drop(first);
        let _fourth = TcpStream::connect(addr).await.unwrap();
        let next = tokio::time::timeout(Duration::from_secs(10), accepted.next()).await;
        assert!(
            matches!(next, Ok(Some(Ok(_)))),
            "a closed connection frees its place"
        );
    }
}
