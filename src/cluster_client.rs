//! An operator client of the cluster, for every process that writes: the CLI's commands and the
//! SSF receiver. Writes go to the cluster's nodes in turn: on a transport failure or a leader
//! change the next node is tried, with backoff (or the node's `retry-after-ms`), within a
//! deadline; the error that remains says what happened on each try.

use std::time::{Duration, Instant};

use anyhow::bail;
use tonic::transport::Channel;

use crate::proto::operator_client::OperatorClient;
use crate::transport::{Dialer, Expect};

/// Where and as whom writes reach the cluster.
#[derive(Clone)]
pub struct ClusterClient {
    /// Any nodes of the cluster (`host:port`).
    pub nodes: Vec<String>,
    /// The operator identity's credentials.
    pub dialer: Dialer,
    /// How long a write keeps trying the nodes in turn.
    pub retry_for: Duration,
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

impl ClusterClient {
    /// A client of the first node that accepts a connection.
    pub async fn connect(&self) -> anyhow::Result<OperatorClient<Channel>> {
        let mut errors = Vec::new();
        for addr in &self.nodes {
            match connect_with(&self.dialer, addr).await {
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

    /// Runs `call` against the nodes in turn until it succeeds, fails for good, or
    /// `retry_for` has passed.
    pub async fn with_retries<T, F, Fut>(&self, call: F) -> anyhow::Result<T>
    where
        F: FnMut(OperatorClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        self.call(call).await.map_err(|f| match f {
            WriteFailure::Refused(s) => status_error(s),
            WriteFailure::GaveUp(e) => e,
        })
    }

    /// As [`ClusterClient::with_retries`], telling a refusal (the cluster answered no) from
    /// giving up (no node took the write within `retry_for`).
    pub async fn call<T, F, Fut>(&self, mut call: F) -> Result<T, WriteFailure>
    where
        F: FnMut(OperatorClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        if self.nodes.is_empty() {
            return Err(WriteFailure::GaveUp(anyhow::anyhow!(
                "no cluster node is configured (set --cluster or RECALL_CLUSTER)"
            )));
        }
        let deadline = Instant::now() + self.retry_for;
        let mut backoff = Duration::from_millis(100);
        let mut tries: Vec<String> = Vec::new();
        for addr in self.nodes.iter().cycle() {
            let (why, wait): (String, Option<Duration>) =
                match connect_with(&self.dialer, addr).await {
                    Ok(client) => match call(client).await {
                        Ok(v) => return Ok(v),
                        Err(s) if retryable(&s) => {
                            let wait = s
                                .metadata()
                                .get("retry-after-ms")
                                .and_then(|v| v.to_str().ok()?.parse().ok())
                                .map(Duration::from_millis);
                            (format!("{addr}: {}", status_error(s)), wait)
                        }
                        Err(s) => return Err(WriteFailure::Refused(s)),
                    },
                    Err(e) => (format!("{addr}: {e:#}"), None),
                };
            tries.push(why);
            let pause = wait.unwrap_or(backoff);
            if Instant::now() + pause >= deadline {
                break;
            }
            tokio::time::sleep(pause).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
        Err(WriteFailure::GaveUp(anyhow::anyhow!(
            "the write did not go through within {:?} ({} tries: {}); writes are idempotent, so \
             running the command again is safe",
            self.retry_for,
            tries.len(),
            tries.join("; ")
        )))
    }
}

/// How a write failed.
#[derive(Debug)]
pub enum WriteFailure {
    /// A node answered with an error that another try would not change.
    Refused(tonic::Status),
    /// No node took the write within the deadline (the error says what each try met).
    GaveUp(anyhow::Error),
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
