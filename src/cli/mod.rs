//! The `recall` command line: `recall server` runs a node, `recall sidecar` a sidecar, `recall
//! mirror` the Redis mirror, `recall ssf` the Shared Signals receiver; every other
//! command is an operator client of a running cluster. clap and environment parsing live here and
//! nowhere else.

mod checkpoints;
mod client;
mod convergence;
mod dev;
mod history;
mod import;
mod inspect;
mod mirror;
mod pki;
mod relay;
mod roles;
mod server;
mod sidecar;
mod sightings;
mod ssf;
mod stepup;
mod time;
mod tls;
mod token;
mod write;

pub use tls::TlsArgs;

use clap::{Parser, Subcommand};

/// recall: revoke credentials once, refuse them everywhere within milliseconds.
#[derive(Debug, Parser)]
#[command(name = "recall", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

/// Where the operator commands reach the cluster.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// Any nodes of the cluster (`host:port`, comma-separated); the first that answers is used.
    #[arg(
        long,
        env = "RECALL_CLUSTER",
        default_value = "127.0.0.1:7070",
        value_delimiter = ','
    )]
    pub cluster: Vec<String>,
    /// The operator identity to act as: its certificate is PKI/operator-NAME.pem unless --cert
    /// names one.
    #[arg(
        long = "as",
        env = "RECALL_OPERATOR",
        default_value = "admin",
        value_name = "NAME"
    )]
    pub operator: String,
    /// How long a write keeps trying the cluster's nodes in turn (transport failures, leader
    /// changes), e.g. 30s.
    #[arg(long, env = "RECALL_RETRY_FOR", default_value = "30s", value_parser = humantime::parse_duration)]
    pub retry_for: std::time::Duration,
    /// A current one-time code from your authenticator, for operations whose step-up policy
    /// says `otp` (and to replace an enrolled secret). Each code works once.
    #[arg(long, env = "RECALL_OTP", value_name = "CODE")]
    pub otp: Option<String>,
    /// Certificates.
    #[command(flatten)]
    pub tls: TlsArgs,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Try recall locally: a single-node authority and a sidecar, data in ./recall-data.
    Dev(dev::DevArgs),
    /// Run an authority node (with no flags: a single-node cluster with data in ./recall-data).
    Server(server::ServerArgs),
    /// Run a sidecar: follow the cluster and answer "is this token revoked?" over local HTTP/gRPC.
    Sidecar(sidecar::SidecarArgs),
    /// Run a relay: follow the stream from the cluster (or another relay) and serve it to
    /// sidecars, reporting their acks upward, so one cluster fans out to a large fleet.
    Relay(relay::RelayArgs),
    /// Keep the revocation set in Redis for readers that only speak Redis (a key per
    /// revocation, rules in a hash, a PUBLISH per change).
    Mirror(mirror::MirrorArgs),
    /// Receive OpenID Shared Signals (CAEP session-revoked, credential-change) from identity
    /// providers, by push (RFC 8935) or poll (RFC 8936), and revoke what they name.
    Ssf(ssf::SsfArgs),
    /// Revoke keys (tokens, sessions, API keys, subjects, clients, signing keys).
    Revoke(write::RevokeArgs),
    /// Recall by time: revoke every token in a scope issued before a time.
    Rule(write::RuleArgs),
    /// Lift revocations or rules (a new event; history is never edited).
    Lift(write::LiftArgs),
    /// Revoke every key listed in a CSV or JSON-lines file.
    Import(import::ImportArgs),
    /// Show the cluster: leader, versions, digest, members.
    Status(inspect::StatusArgs),
    /// Which revoked credentials are still being presented, at which service, and when last.
    Sightings(sightings::SightingsArgs),
    /// The hash-chained audit history.
    #[command(subcommand)]
    Audit(inspect::AuditCmd),
    /// Cluster membership.
    #[command(subcommand)]
    Cluster(inspect::ClusterCmd),
    /// Operator roles: who may view, revoke, recall and administer.
    #[command(subcommand)]
    Roles(roles::RolesCmd),
    /// Approve another operator's pending request (step-up `two_person`).
    Approve(stepup::ApproveArgs),
    /// List the requests waiting for a second operator.
    Pending(stepup::PendingArgs),
    /// The step-up policy: what each operation needs beyond the role.
    #[command(subcommand)]
    Policy(stepup::PolicyCmd),
    /// Your own operator settings: one-time codes.
    #[command(subcommand)]
    Operator(stepup::OperatorCmd),
    /// Certificates: a development CA and identities.
    #[command(subcommand)]
    Pki(pki::PkiCmd),
    /// Tokens of the development issuer, to try the sidecar's bearer-token checks.
    #[command(subcommand)]
    Token(token::TokenCmd),
}

impl Cli {
    /// Runs the command.
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Cmd::Dev(a) => dev::run(a).await,
            Cmd::Server(a) => server::run(a).await,
            Cmd::Sidecar(a) => sidecar::run(a).await,
            Cmd::Relay(a) => relay::run(a).await,
            Cmd::Mirror(a) => mirror::run(a).await,
            Cmd::Ssf(a) => ssf::run(a).await,
            Cmd::Revoke(a) => write::revoke(a).await,
            Cmd::Rule(a) => write::rule(a).await,
            Cmd::Lift(a) => write::lift(a).await,
            Cmd::Import(a) => import::run(a).await,
            Cmd::Status(a) => inspect::status(a).await,
            Cmd::Sightings(a) => sightings::run(a).await,
            Cmd::Audit(c) => inspect::audit(c).await,
            Cmd::Cluster(c) => inspect::cluster(c).await,
            Cmd::Roles(c) => roles::run(c).await,
            Cmd::Approve(a) => stepup::approve(a).await,
            Cmd::Pending(a) => stepup::pending(a).await,
            Cmd::Policy(c) => stepup::policy(c).await,
            Cmd::Operator(c) => stepup::operator(c).await,
            Cmd::Pki(c) => pki::run(c),
            Cmd::Token(c) => token::run(c),
        }
    }
}
