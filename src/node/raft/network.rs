//! The client side of the internal Raft RPC: how a node reaches its peers. One lazily connected
//! gRPC channel per peer (tonic reconnects it), at the address [`PeerDialer`] gives (the
//! membership's, or this node's own override for that peer); transport failures surface to openraft as
//! `Unreachable` so it backs off instead of spinning. An AppendEntries over the peer's byte
//! budget is never sent: openraft is told how many entries fit (see [`append_budget`]).
//!
//! [`append_budget`]: super::append_budget
//! [`PeerDialer`]: crate::transport::PeerDialer

// openraft fixes the shape of `RPCError`; boxing it here would only add an allocation per RPC.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use tonic::transport::Channel;

use super::append_budget::{AppendBudget, AppendMetrics};
use super::codec::{OverBudget, decode, encode, encode_append};
use super::{Node, NodeId, TypeConfig};
use crate::proto::raft_internal_client::RaftInternalClient;
use crate::proto::{self as pb};

/// The largest gRPC message between nodes that this build produces, for the default entry size:
/// see [`message_limit`]. Clients use it; servers use the limit of their configuration.
pub const MAX_MESSAGE_BYTES: usize = 8 << 20;

/// The largest message the Raft service accepts for entries of about `chunk_bytes` sent in
/// AppendEntries of at most `append_bytes` (one entry larger than that goes alone): twice the
/// larger of the two (the encoding's overhead is far less), or a snapshot chunk (openraft's
/// default 3 MiB), whichever is larger, plus 1 MiB of framing.
pub fn message_limit(chunk_bytes: usize, append_bytes: usize) -> usize {
    let appends = chunk_bytes.max(append_bytes).saturating_mul(2);
    appends.max(3 << 20).saturating_add(1 << 20)
}

/// Makes a [`PeerClient`] per peer.
#[derive(Clone, Debug)]
pub struct GrpcNetwork {
    /// How the node dials its peers (its node certificate, and where it reaches each).
    pub dialer: crate::transport::PeerDialer,
    /// The largest message sent or received.
    pub max_message: usize,
    /// The byte budget of one AppendEntries (see [`AppendBudget`]).
    pub append_bytes: usize,
    /// What the clients count.
    pub appends: Arc<AppendMetrics>,
    /// How long replication to a peer that could not be reached waits before the next try
    /// (the heartbeat interval; see [`PeerClient::backoff`]).
    pub retry_after: Duration,
}

/// The connection to one peer.
pub struct PeerClient {
    target: NodeId,
    node: Node,
    /// Where it is dialled (the membership's address, or this node's override).
    addr: String,
    client: Result<RaftInternalClient<Channel>, String>,
    budget: AppendBudget,
    appends: Arc<AppendMetrics>,
    retry_after: Duration,
}

/// Cuts the peer's budget if the AppendEntries it watches is dropped unanswered at its timeout
/// (openraft drops the call when the timeout passes).
struct InFlight<'a> {
    budget: &'a mut AppendBudget,
    timed_out: &'a prometheus::IntCounter,
    started: Instant,
    timeout: Duration,
    answered: bool,
}

impl InFlight<'_> {
    /// The call was answered.
    fn answered(mut self) {
        self.answered = true;
        self.budget.answered(self.started.elapsed(), self.timeout);
    }

    /// Nothing was sent (the batch was over the budget), or the call failed for a reason that
    /// says nothing about its size: neither a timeout nor an answer.
    fn not_sent(mut self) {
        self.answered = true;
    }

    /// The call came back with `failed` (`None`: an answer). A failure at its deadline is a
    /// timeout whatever status carried it: the peer's `DeadlineExceeded`, or tonic's own
    /// deadline on this side, which comes back as `Cancelled` ("Timeout expired"). Any other
    /// failure says nothing about the batch's size and leaves the budget as it is.
    fn returned(self, failed: Option<tonic::Code>) {
        match failed {
            None => self.answered(),
            Some(code) if code == tonic::Code::DeadlineExceeded || self.past_deadline() => {
                self.deadline_passed()
            }
            Some(_) => self.not_sent(),
        }
    }

    /// Whether the call has run (about) its whole timeout.
    fn past_deadline(&self) -> bool {
        self.started.elapsed() >= self.timeout.mul_f32(0.9)
    }

    /// The call ran out of time: the deadline passed on the wire.
    fn deadline_passed(mut self) {
        self.answered = true;
        self.budget.timed_out();
        self.timed_out.inc();
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        // Dropped at its deadline by openraft (which may come while the batch is still being
        // encoded), or early only when replication stops (a new term): not the peer's fault.
        if !self.answered && self.past_deadline() {
            self.budget.timed_out();
            self.timed_out.inc();
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for GrpcNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient {
        let max = self.max_message;
        let dialer = self
            .dialer
            .clone()
            .with_connect_timeout(Duration::from_millis(500));
        let addr = dialer.addr(target, &node.addr).to_owned();
        let client = dialer
            .lazy(target, &node.addr)
            .map(|ch| {
                RaftInternalClient::new(ch)
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max)
            })
            .map_err(|e| format!("bad address {addr:?} for node {target}: {e}"));
        PeerClient {
            target,
            node: node.clone(),
            addr,
            client,
            budget: AppendBudget::new(self.append_bytes),
            appends: Arc::clone(&self.appends),
            retry_after: self.retry_after,
        }
    }
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, Node, RaftError<NodeId, E>>;

fn unreachable<E: std::error::Error>(msg: String) -> RPCError<NodeId, Node, E> {
    RPCError::Unreachable(Unreachable::new(&std::io::Error::new(
        std::io::ErrorKind::ConnectionRefused,
        msg,
    )))
}

fn request<T>(msg: T, option: &RPCOption) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.set_timeout(option.hard_ttl());
    req
}

impl PeerClient {
    fn client<E: std::error::Error>(
        &self,
    ) -> Result<RaftInternalClient<Channel>, RPCError<NodeId, Node, E>> {
        self.client.clone().map_err(unreachable)
    }

    /// Turns a gRPC status into the openraft error that makes it retry sensibly.
    fn status<E: std::error::Error>(&self, s: tonic::Status) -> RPCError<NodeId, Node, E> {
        match s.code() {
            tonic::Code::Unavailable | tonic::Code::Cancelled | tonic::Code::Unknown => {
                unreachable(format!(
                    "node {} at {}: {}",
                    self.target,
                    self.addr,
                    crate::transport::errors::describe(&s)
                ))
            }
            _ => RPCError::Network(NetworkError::new(&s)),
        }
    }

    /// Decodes a reply that is either openraft's answer or the error the peer returned.
    fn reply<T, E>(
        &self,
        what: &str,
        payload: Option<Vec<u8>>,
        error: Option<Vec<u8>>,
    ) -> Result<T, RPCError<NodeId, Node, RaftError<NodeId, E>>>
    where
        T: serde::de::DeserializeOwned,
        E: std::error::Error + serde::de::DeserializeOwned,
    {
        match (payload, error) {
            (Some(p), _) => decode(what, &p).map_err(|s| self.status(s)),
            (None, Some(e)) => {
                let err: RaftError<NodeId, E> = decode(what, &e).map_err(|s| self.status(s))?;
                Err(RPCError::RemoteError(RemoteError::new_with_node(
                    self.target,
                    self.node.clone(),
                    err,
                )))
            }
            (None, None) => Err(self.status(tonic::Status::internal(format!("empty {what}")))),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        let mut client = self.client()?;
        // The deadline covers the whole call, encoding included: on a loaded leader a large
        // batch can spend its heartbeat interval being encoded, and that too must shrink it.
        let budget = self.budget.bytes();
        let in_flight = InFlight {
            budget: &mut self.budget,
            timed_out: &self.appends.timed_out,
            started: Instant::now(),
            timeout: option.hard_ttl(),
            answered: false,
        };
        let payload = match encode_append(&rpc, budget) {
            Ok(payload) => payload,
            Err(OverBudget { fit }) => {
                in_flight.not_sent();
                tracing::debug!(
                    target = self.target,
                    budget,
                    entries = rpc.entries.len(),
                    fit,
                    "AppendEntries over the byte budget: openraft resends fewer entries"
                );
                self.appends.split.inc();
                return Err(PayloadTooLarge::new_entries_hint(fit as u64).into());
            }
        };
        if !rpc.entries.is_empty() {
            self.appends.bytes.observe(payload.len() as f64);
        }
        let msg = pb::AppendEntriesRequest { payload };
        let sent = client.append_entries(request(msg, &option)).await;
        in_flight.returned(sent.as_ref().err().map(|s| s.code()));
        let reply = match sent {
            // The peer refused the message as too large (a smaller limit than ours): resend
            // half as many entries rather than the same message again.
            Err(s) if s.code() == tonic::Code::ResourceExhausted && rpc.entries.len() > 1 => {
                self.appends.split.inc();
                let half = rpc.entries.len() as u64 / 2;
                return Err(PayloadTooLarge::new_entries_hint(half).into());
            }
            sent => sent.map_err(|s| self.status(s))?.into_inner(),
        };
        use pb::append_entries_reply::Outcome as R;
        match reply.outcome {
            Some(R::Payload(p)) => self.reply("append-entries reply", Some(p), None),
            Some(R::Error(e)) => self.reply("append-entries reply", None, Some(e)),
            None => self.reply("append-entries reply", None, None),
        }
    }

    async fn install_snapshot(
        &mut self,
        mut rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        let data = std::mem::take(&mut rpc.data);
        let msg = pb::InstallSnapshotRequest {
            payload: encode(&rpc),
            data,
        };
        let reply = self
            .client()?
            .install_snapshot(request(msg, &option))
            .await
            .map_err(|s| self.status(s))?
            .into_inner();
        use pb::install_snapshot_reply::Outcome as R;
        match reply.outcome {
            Some(R::Payload(p)) => self.reply("install-snapshot reply", Some(p), None),
            Some(R::Error(e)) => self.reply("install-snapshot reply", None, Some(e)),
            None => self.reply("install-snapshot reply", None, None),
        }
    }

    /// openraft waits this long after a peer was unreachable, and keeps waiting it after every
    /// failed call until one succeeds. Its default (500 ms, the election timeout here) would leave
    /// a restarted follower without a heartbeat for longer than it waits before an election, so
    /// it campaigns instead of catching up. One heartbeat interval keeps a retried peer hearing its
    /// leader at the pace it expects; the peer being down costs one refused connection per try.
    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(self.retry_after))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        let msg = pb::VoteRequest {
            payload: encode(&rpc),
        };
        let reply = self
            .client()?
            .vote(request(msg, &option))
            .await
            .map_err(|s| self.status(s))?
            .into_inner();
        use pb::vote_reply::Outcome as R;
        match reply.outcome {
            Some(R::Payload(p)) => self.reply("vote reply", Some(p), None),
            Some(R::Error(e)) => self.reply("vote reply", None, Some(e)),
            None => self.reply("vote reply", None, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard<'a>(
        budget: &'a mut AppendBudget,
        timed_out: &'a prometheus::IntCounter,
        ago: Duration,
    ) -> InFlight<'a> {
        InFlight {
            budget,
            timed_out,
            started: Instant::now() - ago,
            timeout: Duration::from_millis(100),
            answered: false,
        }
    }

    #[test]
    fn a_call_dropped_at_its_deadline_halves_the_budget_even_before_anything_was_sent() {
        let counter = prometheus::IntCounter::new("t", "t").unwrap();
        let mut budget = AppendBudget::new(1 << 20);
        // openraft drops the call at its deadline; the batch may still have been encoding.
        drop(guard(&mut budget, &counter, Duration::from_millis(100)));
        assert_eq!(budget.bytes(), 512 << 10);
        assert_eq!(counter.get(), 1);
        // A batch over the budget was never sent: not a timeout, however long the encoding took.
        guard(&mut budget, &counter, Duration::from_millis(100)).not_sent();
        assert_eq!(budget.bytes(), 512 << 10);
        // Dropped early (a new term stopped replication): not the peer's fault.
        drop(guard(&mut budget, &counter, Duration::from_millis(10)));
        assert_eq!(budget.bytes(), 512 << 10);
        assert_eq!(counter.get(), 1);
        guard(&mut budget, &counter, Duration::from_millis(10)).answered();
        assert_eq!(budget.bytes(), 640 << 10, "a quick answer grows it back");
    }

    #[test]
    fn a_call_failed_at_its_deadline_is_a_timeout_whichever_status_says_so() {
        let counter = prometheus::IntCounter::new("t", "t").unwrap();
        let mut budget = AppendBudget::new(1 << 20);
        let at_deadline = Duration::from_millis(100);
        // tonic's deadline on this side answers Cancelled ("Timeout expired").
        guard(&mut budget, &counter, at_deadline).returned(Some(tonic::Code::Cancelled));
        assert_eq!((budget.bytes(), counter.get()), (512 << 10, 1));
        // The peer's deadline answers DeadlineExceeded, however early it looks from here.
        guard(&mut budget, &counter, Duration::from_millis(10))
            .returned(Some(tonic::Code::DeadlineExceeded));
        assert_eq!((budget.bytes(), counter.get()), (256 << 10, 2));
        // A quick failure of another kind is no timeout, and a slow answer neither shrinks
        // nor grows it.
        guard(&mut budget, &counter, Duration::from_millis(10))
            .returned(Some(tonic::Code::Unavailable));
        guard(&mut budget, &counter, at_deadline).returned(None);
        assert_eq!((budget.bytes(), counter.get()), (256 << 10, 2));
    }
}
