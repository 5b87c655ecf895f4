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

/// `msg` as a request carrying the operator's one-time code (`--otp`), if one was given.
pub fn with_otp<T>(otp: Option<&str>, msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Some(v) = otp.and_then(|c| c.trim().parse().ok()) {
        req.metadata_mut().insert("recall-otp", v);
    }
    req
}

/// A client of one node.
pub async fn connect_with(dialer: &Dialer, addr: &str) -> anyhow::Result<OperatorClient<Channel>> {
    let channel = dialer.connect(addr, Expect::AnyNode).await?;
    Ok(OperatorClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20))
}

/// Whether a failed write may be sent again, to the next node: the node was unreachable, is
/// shutting down, lost its leader, or the call's outcome is unknown. Writes are idempotent, so
/// a retry of one that did commit only counts its items as already present.
fn retryable(s: &tonic::Status) -> bool {
    use tonic::Code::*;
    matches!(
        s.code(),
        Unavailable | Unknown | Cancelled | Aborted | DeadlineExceeded | ResourceExhausted
    ) && !(s.code() == ResourceExhausted && s.metadata().get("retry-after-ms").is_none())
}

/// Runs a write against the cluster's nodes in turn: on a transport failure or a leader change
/// it moves to the next node, with backoff (or the node's `retry-after-ms`), until
/// `--retry-for` has passed. The error that remains says what happened on each try.
pub async fn with_retries<T, F, Fut>(cluster: &ClusterArgs, mut call: F) -> anyhow::Result<T>
where
    F: FnMut(OperatorClient<Channel>) -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let dialer = dialer(cluster)?;
    let deadline = std::time::Instant::now() + cluster.retry_for;
    let mut backoff = std::time::Duration::from_millis(100);
    let mut tries: Vec<String> = Vec::new();
    for addr in cluster.cluster.iter().cycle() {
        let (why, wait): (String, Option<std::time::Duration>) =
            match connect_with(&dialer, addr).await {
                Ok(client) => match call(client).await {
                    Ok(v) => return Ok(v),
                    Err(s) if retryable(&s) => {
                        let wait = s
                            .metadata()
                            .get("retry-after-ms")
                            .and_then(|v| v.to_str().ok()?.parse().ok())
                            .map(std::time::Duration::from_millis);
                        (format!("{addr}: {}", status_error(s)), wait)
                    }
                    Err(s) => return Err(status_error(s)),
                },
                Err(e) => (format!("{addr}: {e:#}"), None),
            };
        tries.push(why);
        let pause = wait.unwrap_or(backoff);
        if std::time::Instant::now() + pause >= deadline {
            break;
        }
        tokio::time::sleep(pause).await;
        backoff = (backoff * 2).min(std::time::Duration::from_secs(2));
    }
    bail!(
        "the write did not go through within {:?} ({} tries: {}); writes are idempotent, so \
         running the command again is safe",
        cluster.retry_for,
        tries.len(),
        tries.join("; ")
    )
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
