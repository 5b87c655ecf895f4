//! Connecting the operator commands to a cluster.

use std::time::Duration;

use anyhow::{Context, bail};
use tonic::transport::Channel;

use crate::proto::operator_client::OperatorClient;

/// A client of the first node in `cluster` that accepts a connection.
pub async fn connect(cluster: &[String]) -> anyhow::Result<OperatorClient<Channel>> {
    let mut errors = Vec::new();
    for addr in cluster {
        match connect_one(addr).await {
            Ok(c) => return Ok(c),
            Err(e) => errors.push(format!("{addr}: {e:#}")),
        }
    }
    bail!(
        "no node of the cluster answered ({}); is `recall server` running? (set --cluster or \
         RECALL_CLUSTER)",
        errors.join("; ")
    )
}

/// A client of one node.
pub async fn connect_one(addr: &str) -> anyhow::Result<OperatorClient<Channel>> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .with_context(|| format!("bad address {addr:?}: expected host:port"))?
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .context("cannot connect")?;
    Ok(OperatorClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20))
}

/// The message of a failed call, without the gRPC framing.
pub fn status_error(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{} ({:?})", s.message(), s.code())
}
