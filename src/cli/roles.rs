//! `recall roles`: bind operator identities to roles (admins only), and list the bindings.

use super::ClusterArgs;
use super::client::{connect, status_error, with_otp};
use crate::proto as pb;

/// Role bindings.
#[derive(Debug, clap::Subcommand)]
pub enum RolesCmd {
    /// Bind an operator to a role: viewer < revoker < recaller < admin.
    Grant {
        /// An operator name (`alice`) or SPIFFE ID (`spiffe://DOMAIN/operator/alice`).
        identity: String,
        /// viewer, revoker, recaller or admin.
        role: String,
        /// Why, for the audit history.
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Remove an operator's binding.
    Remove {
        /// An operator name or SPIFFE ID.
        identity: String,
        /// Why, for the audit history.
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// List the bindings.
    List {
        #[command(flatten)]
        cluster: ClusterArgs,
    },
}

/// Runs `recall roles ...`.
pub async fn run(cmd: RolesCmd) -> anyhow::Result<()> {
    let (cluster, identity, role, reason) = match cmd {
        RolesCmd::List { cluster } => {
            let r = connect(&cluster)
                .await?
                .list_roles(pb::ListRolesRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            for b in r.bindings {
                println!("{:<10} {}", b.role, b.identity);
            }
            return Ok(());
        }
        RolesCmd::Grant {
            identity,
            role,
            reason,
            cluster,
        } => (cluster, identity, role, reason),
        RolesCmd::Remove {
            identity,
            reason,
            cluster,
        } => (cluster, identity, String::new(), reason),
    };
    let req = pb::SetRoleRequest {
        identity: identity.clone(),
        role: role.clone(),
        reason,
    };
    let r = connect(&cluster)
        .await?
        .set_role(with_otp(cluster.otp.as_deref(), req))
        .await
        .map_err(status_error)?
        .into_inner();
    match role.as_str() {
        "" => println!("removed the role of {identity} at version {}", r.version),
        role => println!("bound {identity} to {role} at version {}", r.version),
    }
    Ok(())
}
