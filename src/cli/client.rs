//! Connecting the operator commands to a cluster, over mutual TLS as an operator identity.

use tonic::transport::Channel;

use super::ClusterArgs;
use crate::cluster_client::ClusterClient;
pub use crate::cluster_client::{connect_with, status_error};
use crate::proto::operator_client::OperatorClient;
use crate::transport::Dialer;

/// The cluster client of an operator command.
pub fn cluster_client(cluster: &ClusterArgs) -> anyhow::Result<ClusterClient> {
    Ok(ClusterClient {
        nodes: cluster.cluster.clone(),
        dialer: dialer(cluster)?,
        retry_for: cluster.retry_for,
    })
}

/// A client of the first node in `cluster` that accepts a connection.
pub async fn connect(cluster: &ClusterArgs) -> anyhow::Result<OperatorClient<Channel>> {
    cluster_client(cluster)?.connect().await
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

/// Runs a write against the cluster's nodes in turn (see [`ClusterClient::with_retries`]).
pub async fn with_retries<T, F, Fut>(cluster: &ClusterArgs, call: F) -> anyhow::Result<T>
where
    F: FnMut(OperatorClient<Channel>) -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    cluster_client(cluster)?.with_retries(call).await
}
