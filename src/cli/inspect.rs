//! `recall status`, `recall audit verify|log` and `recall cluster add-learner|voters`.

use anyhow::bail;
use futures::StreamExt;

use super::ClusterArgs;
use super::client::{connect, connect_with, dialer, status_error};
use super::time;
use crate::proto as pb;

/// `recall status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Report convergence towards this version (default: the node's applied version).
    #[arg(long)]
    version: Option<u64>,
}

/// `recall audit ...`.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCmd {
    /// Recompute the hash chain and name the first broken link: on a node, or, with --file,
    /// offline on an export, against the keys in --trust (links, command hashes, signatures,
    /// quorums, and the set digest the commands replay to).
    Verify {
        /// An export file (`recall audit export`) to verify with no server.
        #[arg(long, requires = "trust")]
        file: Option<std::path::PathBuf>,
        /// The node keys you trust, one `NODE_ID HEX_KEY` per line (`recall audit keys`,
        /// checked against more than one node or the nodes' data directories).
        #[arg(long)]
        trust: Option<std::path::PathBuf>,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Write the history of a range of versions to a file: records, the commands they cover,
    /// and the checkpoints a quorum signed.
    Export {
        /// First version (default: the genesis, so a verifier can replay the commands).
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Last version (default: everything).
        #[arg(long)]
        to: Option<u64>,
        /// The file to write.
        #[arg(short = 'o', long = "output")]
        output: std::path::PathBuf,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Print the nodes' checkpoint keys as a trust file for `verify --file`.
    Keys {
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Who did what, when and why.
    Log {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Start at this version.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// At most this many records.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

/// `recall cluster ...`.
#[derive(Debug, clap::Subcommand)]
pub enum ClusterCmd {
    /// Add a node as a learner (it receives the log; it does not vote yet).
    AddLearner {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// The new node's id.
        id: u64,
        /// The new node's address (host:port).
        address: String,
    },
    /// Set the voters (learners named here are promoted; voters not named are removed).
    Voters {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// The voters' ids, comma-separated.
        #[arg(value_delimiter = ',', required = true)]
        ids: Vec<u64>,
    },
}

/// Runs `recall status`.
pub async fn status(a: StatusArgs) -> anyhow::Result<()> {
    let mut client = connect(&a.cluster).await?;
    let s = client
        .status(pb::StatusRequest {
            version: a.version,
            local_only: false,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    if a.json {
        let members: Vec<serde_json::Value> = s
            .members
            .iter()
            .map(|m| {
                serde_json::json!({"id": m.node_id, "address": m.address, "voter": m.role == pb::Role::Voter as i32,
                "reachable": m.reachable, "applied_version": m.applied_version})
            })
            .collect();
        let v = serde_json::json!({
            "node": s.node_id, "leader": s.leader_id, "term": s.term,
            "committed_version": s.committed_version, "applied_version": s.applied_version,
            "last_change_version": s.last_change_version, "digest": format!("{:016x}", s.digest),
            "entries": s.entries, "rules": s.rules, "members": members,
            "convergence": s.convergence.as_ref().map(super::convergence::json),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let leader = s
        .leader_id
        .map_or("none (election in progress?)".to_string(), |l| {
            l.to_string()
        });
    println!("node {}  leader {leader}  term {}", s.node_id, s.term);
    println!(
        "version {} (applied {}, last change {})  digest {:016x}",
        s.committed_version, s.applied_version, s.last_change_version, s.digest
    );
    println!("{} revoked entries, {} rules", s.entries, s.rules);
    for m in &s.members {
        let role = if m.role == pb::Role::Voter as i32 {
            "voter"
        } else {
            "learner"
        };
        let reach = if m.reachable { "" } else { "  UNREACHABLE" };
        println!(
            "  node {:<4} {:<22} {role:<8} applied {}{reach}",
            m.node_id, m.address, m.applied_version
        );
    }
    if let Some(c) = &s.convergence {
        super::convergence::print_status(c);
    }
    Ok(())
}

/// Runs `recall audit ...`.
pub async fn audit(cmd: AuditCmd) -> anyhow::Result<()> {
    match cmd {
        AuditCmd::Verify {
            file: Some(file),
            trust,
            ..
        } => return super::history::verify_offline(&file, trust.as_deref()),
        AuditCmd::Export {
            from,
            to,
            output,
            cluster,
        } => return super::history::export(&cluster, from, to, &output).await,
        AuditCmd::Keys { cluster } => return super::history::keys(&cluster).await,
        AuditCmd::Verify { cluster, .. } => {
            let r = connect(&cluster)
                .await?
                .audit_verify(pb::AuditVerifyRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            if !r.ok {
                bail!("{}", r.detail);
            }
            println!("ok: {}", r.detail);
        }
        AuditCmd::Log {
            cluster,
            from,
            limit,
        } => {
            let mut stream = connect(&cluster)
                .await?
                .audit_log(pb::AuditLogRequest {
                    from_version: Some(from),
                    limit,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            while let Some(r) = stream.next().await {
                let r = r.map_err(status_error)?;
                let hash: String = r.hash.iter().take(6).map(|b| format!("{b:02x}")).collect();
                let on_behalf = if r.on_behalf_of.is_empty() {
                    String::new()
                } else {
                    format!(" for {}", r.on_behalf_of)
                };
                println!(
                    "{:>8}  {}  {}{on_behalf}  {}  ({})  #{hash}",
                    r.version,
                    time::show(recall_core::Timestamp::from_millis(r.at_ms)),
                    r.actor,
                    r.command,
                    if r.reason.is_empty() {
                        "no reason given"
                    } else {
                        &r.reason
                    }
                );
            }
        }
    }
    Ok(())
}

/// Sends a membership change to the leader: tries each given node until one leads.
pub async fn cluster(cmd: ClusterCmd) -> anyhow::Result<()> {
    let (cluster, what) = match &cmd {
        ClusterCmd::AddLearner { cluster, .. } => (cluster, "add-learner"),
        ClusterCmd::Voters { cluster, .. } => (cluster, "voters"),
    };
    let mut last = None;
    let dialer = dialer(cluster)?;
    for addr in &cluster.cluster {
        let mut client = match connect_with(&dialer, addr).await {
            Ok(c) => c,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        let r = match &cmd {
            ClusterCmd::AddLearner { id, address, .. } => {
                client
                    .add_learner(pb::AddLearnerRequest {
                        node_id: *id,
                        address: address.clone(),
                    })
                    .await
            }
            ClusterCmd::Voters { ids, .. } => {
                client
                    .change_membership(pb::ChangeMembershipRequest {
                        voters: ids.clone(),
                        keep_removed_as_learners: false,
                    })
                    .await
            }
        };
        match r {
            Ok(r) => {
                let r = r.into_inner();
                println!("{what}: committed at version {}", r.version);
                for m in r.members {
                    let role = if m.role == pb::Role::Voter as i32 {
                        "voter"
                    } else {
                        "learner"
                    };
                    println!("  node {:<4} {:<22} {role}", m.node_id, m.address);
                }
                return Ok(());
            }
            Err(s) if s.code() == tonic::Code::FailedPrecondition => last = Some(status_error(s)),
            Err(s) => return Err(status_error(s)),
        }
    }
    match last {
        Some(e) => Err(e),
        None => bail!("no node answered; list the leader's address in --cluster"),
    }
}
