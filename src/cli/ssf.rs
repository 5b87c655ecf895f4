//! `recall ssf`: the OpenID Shared Signals receiver. Its config file into an [`SsfConfig`], an
//! operator identity of its own to write with, then it runs until Ctrl-C or SIGTERM.

use std::path::PathBuf;

use super::server::{init_tracing, shutdown_signal};
use crate::cluster_client::ClusterClient;
use crate::ssf::{SsfConfig, SsfReceiver};
use crate::transport::Dialer;

/// Flags of `recall ssf`. Precedence: flag, then environment, then the default.
#[derive(Debug, clap::Args)]
pub struct SsfArgs {
    /// The receiver's configuration (TOML): `listen`, `audience`, `data_dir` and one
    /// `[[transmitter]]` per identity provider (docs/ssf.md).
    #[arg(long, env = "RECALL_SSF_CONFIG")]
    config: PathBuf,
    /// Nodes of the cluster to write to (`host:port`, comma-separated).
    #[arg(
        long,
        env = "RECALL_CLUSTER",
        default_value = "127.0.0.1:7070",
        value_delimiter = ','
    )]
    cluster: Vec<String>,
    /// The operator identity the receiver writes as (it needs the `recaller` role): its
    /// certificate is PKI/operator-NAME.pem unless --cert names one.
    #[arg(
        long = "as",
        env = "RECALL_SSF_OPERATOR",
        default_value = "ssf",
        value_name = "NAME"
    )]
    operator: String,
    /// Log as JSON lines instead of readable text.
    #[arg(long, env = "RECALL_LOG_JSON")]
    log_json: bool,
    /// Certificates.
    #[command(flatten)]
    tls: super::TlsArgs,
}

/// Runs `recall ssf`.
pub async fn run(args: SsfArgs) -> anyhow::Result<()> {
    init_tracing(args.log_json);
    let config = SsfConfig::load(&args.config)?;
    let security = args.tls.security(&format!("operator-{}", args.operator))?;
    let cluster = ClusterClient {
        nodes: args.cluster,
        dialer: Dialer::new(security),
        retry_for: config.write_timeout(),
    };
    let receiver = SsfReceiver::start(config, cluster, crate::node::clock::system()).await?;
    if let Some(addr) = receiver.push_addr {
        println!("recall ssf: receiving pushed SETs at {addr} (POST /ssf/events)");
    }
    receiver.run_until(shutdown_signal()).await;
    Ok(())
}
