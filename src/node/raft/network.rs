//! The client side of the internal Raft RPC: how a node reaches its peers. One lazily connected
//! gRPC channel per peer (tonic reconnects it); transport failures surface to openraft as
//! `Unreachable` so it backs off instead of spinning.

// openraft fixes the shape of `RPCError`; boxing it here would only add an allocation per RPC.
#![allow(clippy::result_large_err)]

use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use tonic::transport::{Channel, Endpoint};

use super::codec::{decode, encode};
use super::{Node, NodeId, TypeConfig};
use crate::proto::raft_internal_client::RaftInternalClient;
use crate::proto::{self as pb};

/// The largest gRPC message between nodes (a batch of log entries or a snapshot chunk).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// Makes a [`PeerClient`] per peer.
#[derive(Clone, Debug, Default)]
pub struct GrpcNetwork {
    /// How long to wait for a TCP connection to a peer.
    pub connect_timeout: Option<Duration>,
}

/// The connection to one peer.
pub struct PeerClient {
    target: NodeId,
    node: Node,
    client: Result<RaftInternalClient<Channel>, String>,
}

/// Builds a lazily connecting client for `addr` (`host:port`).
pub fn channel(addr: &str, connect_timeout: Duration) -> Result<Channel, tonic::transport::Error> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .connect_lazy())
}

impl RaftNetworkFactory<TypeConfig> for GrpcNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient {
        let timeout = self.connect_timeout.unwrap_or(Duration::from_millis(500));
        let client = channel(&node.addr, timeout)
            .map(|ch| {
                RaftInternalClient::new(ch)
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES)
            })
            .map_err(|e| format!("bad address {:?} for node {target}: {e}", node.addr));
        PeerClient {
            target,
            node: node.clone(),
            client,
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
                    self.node.addr,
                    s.message()
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
        let msg = pb::AppendEntriesRequest {
            payload: encode(&rpc),
        };
        let reply = self
            .client()?
            .append_entries(request(msg, &option))
            .await
            .map_err(|s| self.status(s))?
            .into_inner();
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
