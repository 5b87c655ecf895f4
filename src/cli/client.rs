//! Connecting the operator commands to a cluster, over mutual TLS as an operator identity.

use anyhow::bail;
use tonic::transport::Channel;

use super::ClusterArgs;
use crate::proto::operator_client::OperatorClient;
use crate::transport::{Dialer, Expect};

/// A client of the first node in `cluster` that accepts a connection.
pub async fn connect(cluster: &ClusterArgs) -> anyhow::Result<OperatorClient<Channel>> {
    let dialer = dialer(cluster)?;
    let mut errors = Vec::new();
    for addr in &cluster.cluster {
        match connect_with(&dialer, addr).await {
            Ok(c) => return Ok(c),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    bail!(
        "no node of the cluster answered ({}); is `recall server` running? (set --cluster or \
         RECALL_CLUSTER)",
        errors.join("; ")
    )
}

/// The dialler of an operator command: the operator's certificate.
pub fn dialer(cluster: &ClusterArgs) -> anyhow::Result<Dialer> {
    let security = cluster
        .tls
        .security(&format!("operator-{}", cluster.operator))?;
    Ok(Dialer::new(security))
}

/// A client of one node.
pub async fn connect_with(dialer: &Dialer, addr: &str) -> anyhow::Result<OperatorClient<Channel>> {
    let channel = dialer.connect(addr, Expect::AnyNode).await?;
    Ok(OperatorClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20))
}

/// The message of a failed call, without the gRPC framing; a TLS cause is named.
pub fn status_error(s: tonic::Status) -> anyhow::Error {
    if s.code() == tonic::Code::Unimplemented && s.message().is_empty() {
        return anyhow::anyhow!(
            "this port does not serve the operator API: is it a node's peer port? Operators use \
             the client port (--listen of `recall server`, default 7070)"
        );
    }
    anyhow::anyhow!(
        "{} ({:?})",
        crate::transport::errors::describe(&s),
        s.code()
    )
}
