//! Serving HTTP: every HTTP listener recall has (the sidecar's check and forward-auth API, a
//! node's `--http-listen`, the SSF push endpoint) runs its connections through [`serve`], so
//! none of them waits on a client without a deadline.
//!
//! - A request's header must arrive whole within [`HttpTimeouts::header_read`]: counted from
//!   the connection's start and, on HTTP/1.1, from the end of the previous response (so an idle
//!   HTTP/1.1 keep-alive connection is closed after that long too). A client that trickles its
//!   header bytes (slowloris) holds its socket that long and no longer.
//! - A request's body must arrive whole within [`HttpTimeouts::body_read`] of its header, else
//!   the handler reading it sees an error (and answers 400): a client that trickles a body
//!   holds its request no longer than that.
//! - A connection with no request in progress is closed after [`HttpTimeouts::idle`] (before its
//!   first request, after `header_read`): this bounds HTTP/2 and a client that never finishes
//!   saying which protocol it speaks.
//! - A connection asked to close (idle, or the server stopping) that has not within
//!   [`HttpTimeouts::close_grace`] is dropped, so a client that stops reading its response
//!   cannot hold it, nor a shutdown.
//!
//! The TLS handshake deadlines and the connection limits stay where connections are accepted
//! ([`super::incoming`], `crate::ssf::tls`); this module never accepts a socket itself.

use std::fmt::Debug;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::serve::Listener;
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, watch};
use tower::ServiceExt;

/// How long a client has to send a request's whole header (see [`HttpTimeouts::header_read`]).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request's body may take to arrive (see [`HttpTimeouts::body_read`]).
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a connection with no request in progress stays open (see [`HttpTimeouts::idle`]).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a closing connection may take (see [`HttpTimeouts::close_grace`]).
pub const CLOSE_GRACE: Duration = Duration::from_secs(10);
/// The largest HTTP/2 header list accepted, in bytes (HTTP/1.1 keeps hyper's buffer bound).
const MAX_HEADER_LIST_BYTES: u32 = 64 << 10;

/// The deadlines of an HTTP listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpTimeouts {
    /// How long a client has to send a request's whole header, from the connection's start and
    /// (HTTP/1.1) from the end of the previous response.
    pub header_read: Duration,
    /// How long a request's body may take to arrive, from the end of its header.
    pub body_read: Duration,
    /// How long a connection with no request in progress stays open once it has served one.
    pub idle: Duration,
    /// How long a connection asked to close may finish what it is doing before it is dropped.
    pub close_grace: Duration,
}

impl Default for HttpTimeouts {
    fn default() -> Self {
        Self {
            header_read: HEADER_READ_TIMEOUT,
            body_read: BODY_READ_TIMEOUT,
            idle: IDLE_TIMEOUT,
            close_grace: CLOSE_GRACE,
        }
    }
}

impl HttpTimeouts {
    /// Refuses a deadline of zero (every connection would be closed at once), naming it.
    pub fn validate(&self) -> Result<(), String> {
        for (name, d) in [
            ("header_read", self.header_read),
            ("body_read", self.body_read),
            ("idle", self.idle),
            ("close_grace", self.close_grace),
        ] {
            if d.is_zero() {
                return Err(format!("the HTTP {name} timeout must be positive"));
            }
        }
        Ok(())
    }
}

/// Serves `app` on every connection `listener` hands over, under `timeouts`, until `shutdown`
/// resolves; then stops accepting, asks each connection to close (requests in flight finish,
/// within the close grace) and returns once all are gone.
pub async fn serve<L>(
    mut listener: L,
    app: Router,
    timeouts: HttpTimeouts,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: Listener,
    L::Addr: Debug + 'static,
{
    let builder = Arc::new(builder(&timeouts));
    // Dropping `stop` tells every connection to close; each holds a `done` receiver until it
    // has, so `finished.closed()` resolves when the last one is gone.
    let (stop, stopping) = watch::channel(());
    let (finished, done) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let (io, addr) = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (app, builder, stopping, done) =
            (app.clone(), builder.clone(), stopping.clone(), done.clone());
        tokio::spawn(async move {
            connection(io, addr, app, builder, timeouts, stopping).await;
            // The connection (and the app it holds) is gone before the server hears it is done.
            drop(done);
        });
    }
    drop(listener);
    drop(stop);
    drop(done);
    finished.closed().await;
    Ok(())
}

fn builder(timeouts: &HttpTimeouts) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_LIST_BYTES);
    builder
}

/// Serves one connection until it ends, it idles past its bound, or the server stops.
async fn connection<I, A>(
    io: I,
    addr: A,
    app: Router,
    builder: Arc<Builder<TokioExecutor>>,
    timeouts: HttpTimeouts,
    mut stopping: watch::Receiver<()>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    A: Debug + Send + 'static,
{
    let activity = Arc::new(Activity::default());
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let busy = activity.begin();
            let app = app.clone();
            let req = req.map(|body| Deadline::new(body, timeouts.body_read));
            async move {
                let response = app.oneshot(req).await;
                drop(busy);
                response
            }
        })
    };
    let mut conn = pin!(builder.serve_connection(TokioIo::new(io), service));
    let mut idle = pin!(activity.idle(timeouts.header_read, timeouts.idle));
    let grace = tokio::time::sleep(Duration::ZERO);
    let mut grace = pin!(grace);
    let mut closing = false;
    loop {
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(peer = ?addr, "HTTP connection ended: {e}");
                }
                break;
            }
            _ = stopping.changed(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
                grace.as_mut().reset(tokio::time::Instant::now() + timeouts.close_grace);
            }
            _ = &mut idle, if !closing => {
                tracing::debug!(peer = ?addr, "HTTP connection idle past its bound; closing");
                closing = true;
                conn.as_mut().graceful_shutdown();
                grace.as_mut().reset(tokio::time::Instant::now() + timeouts.close_grace);
            }
            _ = &mut grace, if closing => {
                tracing::debug!(peer = ?addr, "HTTP connection did not close in time; dropped");
                break;
            }
        }
    }
}

/// The requests in progress on one connection.
#[derive(Default)]
struct Activity {
    in_flight: AtomicUsize,
    served: AtomicBool,
    changed: Notify,
}

impl Activity {
    /// Counts a request as in progress until the returned guard is dropped.
    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.served.store(true, Ordering::SeqCst);
        self.changed.notify_waiters();
        Busy(self.clone())
    }

    /// Resolves once no request has been in progress for `then` (for `first` before the first
    /// request).
    async fn idle(&self, first: Duration, then: Duration) {
        loop {
            // Made before the count is read, so a change in between still wakes it.
            let changed = self.changed.notified();
            if self.in_flight.load(Ordering::SeqCst) > 0 {
                changed.await;
                continue;
            }
            let limit = if self.served.load(Ordering::SeqCst) {
                then
            } else {
                first
            };
            tokio::select! {
                _ = tokio::time::sleep(limit) => return,
                _ = changed => {}
            }
        }
    }
}

/// A request in progress (see [`Activity::begin`]).
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

/// A request body that fails once its deadline passes before it has all arrived.
struct Deadline {
    body: Incoming,
    limit: Duration,
    expired: Pin<Box<tokio::time::Sleep>>,
}

impl Deadline {
    fn new(body: Incoming, limit: Duration) -> Self {
        Self {
            body,
            limit,
            expired: Box::pin(tokio::time::sleep(limit)),
        }
    }
}

impl Body for Deadline {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if this.expired.as_mut().poll(cx).is_ready() {
            let limit = this.limit;
            return Poll::Ready(Some(Err(format!(
                "the request body did not arrive within {limit:?}"
            )
            .into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
