//! The subscribe stream (`recall.v1.Subscription`), served by every node from its own applied
//! state. One session per stream follows the contract in `proto/recall/v1/subscribe.proto`:
//! resume with deltas when the node still holds them, else a chunked snapshot; then every delta
//! in order, heartbeats, and acks of the applied version. A subscriber that falls behind the
//! retained window is resynced with a snapshot; nothing is ever skipped.
//!
//! - [`registry`]: the live subscribers and their acked versions (convergence);
//! - [`session`]: one stream, the driver of the protocol's session machine
//!   (`recall_stream::Session`: which acks count, deltas or a snapshot, heartbeats);
//! - [`snapshots`]: snapshots built once per version and shared by every session;
//! - [`waves`]: how long each change took to land at every subscriber.

pub mod metrics;
pub mod origin;
pub mod registry;
pub mod session;
pub mod snapshots;
pub mod waves;
pub mod witness;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use futures::{Stream, StreamExt};
use prost::Message;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

pub use origin::{NodeOrigin, Origin};
pub use registry::{Registry, SubscriberInfo};

use crate::proto as pb;
use crate::proto::subscription_server::Subscription;

/// How a node serves subscriber streams.
#[derive(Clone, Copy, Debug)]
pub struct StreamConfig {
    /// Messages queued per subscriber before the node waits for it.
    pub queue: usize,
    /// Encoded bytes queued to one subscriber beyond which the node queues it nothing more
    /// (no deltas, no heartbeats) until it reads: it then resumes from the delta window, or is
    /// resynced ("too_slow") when the window has moved past it. What a slow subscriber costs
    /// the node is bounded by this, not by the size of the changes.
    pub queue_bytes: usize,
    /// The largest message, in bytes (deltas and snapshots are split to fit).
    pub chunk_bytes: usize,
    /// How often an idle stream carries a heartbeat.
    pub heartbeat: Duration,
    /// How long a node behind a subscriber's version waits to catch up before refusing it.
    pub catch_up_wait: Duration,
    /// The most subscribers one node serves.
    pub max_subscribers: usize,
    /// How long a new stream may take to send its Hello.
    pub hello_timeout: Duration,
    /// How long a message may wait for room in a subscriber's queue before the stream ends.
    pub send_timeout: Duration,
    /// How many versions the node's applied state may trail the commit index it knows before
    /// its heartbeats stop vouching for it (`stale_reason` "behind_commit").
    pub max_lag: u64,
    /// The most subscribers behind relays the node counts, all relays together.
    pub max_relayed: usize,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            queue: 64,
            queue_bytes: 4 << 20,
            chunk_bytes: 1 << 20,
            heartbeat: Duration::from_millis(500),
            catch_up_wait: Duration::from_secs(2),
            max_subscribers: 10_000,
            hello_timeout: Duration::from_secs(5),
            send_timeout: Duration::from_secs(30),
            max_lag: 1_000,
            max_relayed: 1_000_000,
        }
    }
}

/// The subscription service of one node (or relay), serving streams from `origin`.
#[derive(Clone)]
pub struct SubscribeService<O = NodeOrigin> {
    /// Where the state comes from.
    pub origin: O,
    /// The subscribers served, and their acks.
    pub registry: Arc<Registry>,
    /// How streams are served.
    pub config: StreamConfig,
    /// Turns true when the server stops: every session ends, so shutdown never waits on
    /// streams.
    pub stopped: tokio::sync::watch::Receiver<bool>,
    /// Snapshots sent, stream ends, queued bytes.
    pub metrics: Arc<metrics::StreamMetrics>,
}

/// A message queued to a subscriber; its bytes count in `recall_stream_queue_bytes` until the
/// transport takes it (or the stream is dropped with it still queued).
pub struct Queued {
    msg: Result<pb::SubscribeResponse, Status>,
    _bytes: QueueBytes,
}

struct QueueBytes {
    gauge: prometheus::IntGauge,
    /// The bytes queued to this message's subscriber.
    session: Arc<Backlog>,
    n: i64,
}

impl Drop for QueueBytes {
    fn drop(&mut self) {
        self.gauge.sub(self.n);
        self.session.bytes.fetch_sub(self.n, Ordering::Relaxed);
        self.session.taken.notify_waiters();
    }
}

/// The encoded bytes queued to one subscriber and not yet taken by the transport.
#[derive(Default)]
pub(crate) struct Backlog {
    bytes: AtomicI64,
    /// Woken whenever the transport takes a message.
    taken: tokio::sync::Notify,
}

impl Backlog {
    /// Whether more than `limit` bytes are queued.
    pub(crate) fn over(&self, limit: usize) -> bool {
        self.bytes.load(Ordering::Relaxed) > limit as i64
    }

    /// Resolves once no more than `limit` bytes are queued.
    pub(crate) async fn within(&self, limit: usize) {
        loop {
            let taken = self.taken.notified();
            if !self.over(limit) {
                return;
            }
            taken.await;
        }
    }
}

impl<O: Origin> SubscribeService<O> {
    /// `msg`, counted in the queued bytes (the node's and `session`'s) until the transport
    /// takes it.
    pub(crate) fn queued(
        &self,
        msg: Result<pb::SubscribeResponse, Status>,
        session: &Arc<Backlog>,
    ) -> Queued {
        let n = msg.as_ref().map_or(0, |m| m.encoded_len()) as i64;
        let gauge = self.metrics.queue_bytes.clone();
        gauge.add(n);
        session.bytes.fetch_add(n, Ordering::Relaxed);
        Queued {
            msg,
            _bytes: QueueBytes {
                gauge,
                session: session.clone(),
                n,
            },
        }
    }
}

/// The refusal of a node whose history disagrees with the cluster's.
pub(crate) fn alarmed(why: &str) -> Status {
    Status::unavailable(format!(
        "this node stopped serving streams: {why}; connect to another node (an operator \
         restores this node's data from a healthy one)"
    ))
}

type Out = Pin<Box<dyn Stream<Item = Result<pb::SubscribeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl<O: Origin> Subscription for SubscribeService<O> {
    type SubscribeStream = Out;

    async fn subscribe(
        &self,
        req: Request<Streaming<pb::SubscribeRequest>>,
    ) -> Result<Response<Out>, Status> {
        let peer = crate::transport::peer(&req)?.clone();
        let mut incoming = req.into_inner();
        let first = tokio::time::timeout(self.config.hello_timeout, incoming.message())
            .await
            .map_err(|_| {
                Status::deadline_exceeded(format!(
                    "no Hello within {:?} of opening the stream",
                    self.config.hello_timeout
                ))
            })?;
        let hello = match first?.map(crate::wire::stream::up_from_wire) {
            Some(Ok(recall_stream::Up::Hello(h))) => h,
            Some(Ok(_)) => {
                return Err(Status::invalid_argument(
                    "the first message must be a Hello",
                ));
            }
            Some(Err(e)) => return Err(e.into()),
            None => {
                return Err(Status::invalid_argument(
                    "the stream ended before its Hello",
                ));
            }
        };
        if let Some(identity) = &peer.identity
            && identity.stream_id() != Some(hello.subscriber_id.as_str())
        {
            tracing::warn!(peer = %peer.addr, %identity, claimed = %hello.subscriber_id,
                "refused a stream for another subscriber id");
            return Err(Status::permission_denied(format!(
                "hello.subscriber_id {:?} is not the subscriber your certificate names ({identity}); \
                 a subscriber subscribes as itself, spiffe://DOMAIN/subscriber/ID (a relay: \
                 spiffe://DOMAIN/relay/ID)",
                hello.subscriber_id
            )));
        }
        if let Some(refused) = self.origin.refuse(&hello) {
            return Err(refused);
        }
        let (tx, rx) = tokio::sync::mpsc::channel(self.config.queue.max(2));
        let relay = peer.identity.as_ref().is_some_and(|i| i.is_relay());
        tokio::spawn(session::run(self.clone(), hello, relay, tx, incoming));
        Ok(Response::new(Box::pin(
            ReceiverStream::new(rx).map(|q: Queued| q.msg),
        )))
    }
}
