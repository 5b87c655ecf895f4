//! `recall dev`: the embedded default in one process, a single-node authority and a sidecar
//! following it, with data under `./recall-data`, and how to use them. On first start it makes a
//! development PKI in `./recall-data/pki`, where every other command finds it by default.

use std::path::PathBuf;

use anyhow::Context;

use crate::node::stepup::StepUpPolicy;
use crate::node::{Listeners, NodeConfig, RunningNode, clock};
use crate::sidecar::{RunningSidecar, SidecarConfig};
use crate::subscriber::SubscriberConfig;
use crate::token::dev_issuer::DevIssuer;
use crate::transport::pki::{self, DevPki};
use crate::transport::{Security, TlsFiles};

/// Flags of `recall dev`.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Where the authority and the sidecar keep their data.
    #[arg(long, env = "RECALL_DATA_DIR", default_value = "recall-data")]
    data_dir: PathBuf,
    /// The authority's client port (operator API and subscribe stream).
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: String,
    /// The authority's peer port (Raft; a single node has no peers, but the port is served).
    #[arg(long, default_value = "127.0.0.1:7071")]
    peer_listen: String,
    /// The authority's HTTP listener (`/metrics`).
    #[arg(long, default_value = "127.0.0.1:7072")]
    node_http: String,
    /// The sidecar's HTTP check address.
    #[arg(long, default_value = "127.0.0.1:7080")]
    http: String,
    /// The sidecar's gRPC check address.
    #[arg(long, default_value = "127.0.0.1:7081")]
    grpc: String,
}

/// Runs `recall dev` until Ctrl-C.
pub async fn run(a: DevArgs) -> anyhow::Result<()> {
    super::server::init_tracing(false);
    let pki_dir = a.data_dir.join("pki");
    if pki::ensure(&pki_dir, &DevPki::default())? {
        println!(
            "made a development PKI in {} (CA, nodes 1-3, operator admin, subscriber dev-sidecar)",
            pki_dir.display()
        );
    }
    let domain = crate::transport::DEV_TRUST_DOMAIN;
    let node_security = Security::tls(TlsFiles::in_dir(&pki_dir, "node-1"), domain)?;
    let sidecar_security =
        Security::tls(TlsFiles::in_dir(&pki_dir, "subscriber-dev-sidecar"), domain)?;
    let bind = |addr: String| async move {
        tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))
    };
    let listeners = Listeners {
        client: bind(a.listen.clone()).await?,
        peer: bind(a.peer_listen.clone()).await?,
        http: Some(bind(a.node_http.clone()).await?),
    };
    let config = NodeConfig {
        advertise: a.peer_listen.clone(),
        data_dir: a.data_dir.join("authority"),
        // One developer, one operator identity: roles alone decide. A production server starts
        // with `StepUpPolicy::production()`.
        step_up: StepUpPolicy::none(),
        ..NodeConfig::default()
    };
    let node = RunningNode::start(config, listeners, node_security, clock::system()).await?;

    let mut sub = SubscriberConfig::new(vec![a.listen.clone()], "dev-sidecar", sidecar_security);
    sub.data_dir = Some(a.data_dir.join("sidecar"));
    let issuer = DevIssuer::in_dir(&a.data_dir.join("dev-issuer"));
    if issuer.ensure()? {
        println!(
            "made a development issuer in {} (ES256 key, JWKS, issuers.toml)",
            a.data_dir.join("dev-issuer").display()
        );
    }
    let mut sidecar_config = SidecarConfig::new(sub);
    sidecar_config.issuers = vec![issuer.policy()];
    sidecar_config.http_listen = a.http.clone();
    sidecar_config.grpc_listen = Some(a.grpc.clone());
    let http = tokio::net::TcpListener::bind(&a.http)
        .await
        .with_context(|| format!("cannot listen on {}", a.http))?;
    let grpc = tokio::net::TcpListener::bind(&a.grpc)
        .await
        .with_context(|| format!("cannot listen on {}", a.grpc))?;
    let sidecar = RunningSidecar::start(sidecar_config, http, Some(grpc)).await?;
    sidecar
        .subscriber()
        .wait_synced(std::time::Duration::from_secs(30))
        .await
        .context("the sidecar did not sync with the authority")?;

    let policy = node.sm.with_governance(|g| g.policy().describe());
    println!(
        "step-up policy: {policy}. This is for development: `recall server` starts a cluster \
         with the production policy ({}), see `recall policy show`.",
        StepUpPolicy::production().describe()
    );
    let c = &a.listen;
    println!(
        "\nrecall is running: authority on {c} (mutual TLS; certificates in {dir}/pki, where the \
         CLI finds them as operator admin), sidecar on http://{h} and grpc {g} (data in \
         {dir}/sidecar).\n\n\
         revoke a token:     {r} revoke --cluster {c} --kind token --ns https://login.example jti-123 --wait-converged\n\
         check it:           curl 'http://{h}/v1/check?iss=https://login.example&jti=jti-123'\n\
         a whole token:      T=$({r} token mint --sub alice --jti jti-123); curl -i -H \"Authorization: Bearer $T\" http://{h}/v1/auth\n\
         log a user out:     {r} rule --cluster {c} --scope subject --ns https://login.example --value alice\n\
         see the cluster:    {r} status --cluster {c}\n\
         grant a role:       {r} roles grant alice revoker --cluster {c}\n\
         audit history:      {r} audit log --cluster {c}\n         metrics:            curl http://{m}/metrics (authority), curl http://{h}/metrics (sidecar)\n\
         watch waves land:   http://{m}/ui\n\n\
         Ctrl-C stops both.",
        r = invocation(),
        dir = a.data_dir.display(),
        h = a.http,
        g = a.grpc,
        m = a.node_http,
    );
    super::server::shutdown_signal().await;
    sidecar.shutdown().await?;
    node.shutdown().await
}

/// How to run this binary from the current directory: `recall` when that is what the `PATH`
/// finds, else its path (`target/release/recall` after `cargo run --release -- dev`), so every
/// command printed works as printed.
fn invocation() -> String {
    let Ok(exe) = std::env::current_exe().and_then(|e| e.canonicalize()) else {
        return "recall".into();
    };
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            dir.join("recall")
                .canonicalize()
                .is_ok_and(|found| found == exe)
        })
    });
    if on_path {
        return "recall".into();
    }
    let here = std::env::current_dir().and_then(|d| d.canonicalize());
    match here
        .ok()
        .and_then(|d| exe.strip_prefix(&d).ok().map(|p| p.to_owned()))
    {
        Some(rel) => format!("./{}", rel.display()),
        None => exe.display().to_string(),
    }
}
