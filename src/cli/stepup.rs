//! `recall approve`, `recall pending`, `recall policy` and `recall operator`: the step-up side
//! of the operator commands.

use std::path::PathBuf;

use anyhow::Context;

use super::ClusterArgs;
use super::client::{connect, status_error, with_otp, with_retries};
use crate::node::stepup::OtpSecret;
use crate::proto as pb;

/// `recall approve`.
#[derive(Debug, clap::Args)]
pub struct ApproveArgs {
    /// The request id `recall pending` shows (16 hex digits).
    id: String,
    /// Why, for the audit history.
    #[arg(long, default_value = "")]
    reason: String,
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// `recall pending`.
#[derive(Debug, clap::Args)]
pub struct PendingArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// `recall policy ...`.
#[derive(Debug, clap::Subcommand)]
pub enum PolicyCmd {
    /// Show what each operation needs beyond the role.
    Show {
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Set what one operation needs (a policy change is itself the `policy` operation).
    Set {
        /// revoke, rule, wide_rule, lift, import, roles or policy.
        operation: String,
        /// none, otp or two_person.
        requirement: String,
        /// Why, for the audit history.
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
}

/// `recall operator ...`.
#[derive(Debug, clap::Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum OperatorCmd {
    /// Enroll a one-time-code secret for yourself (replacing one needs --otp with a current
    /// code of the old secret). Prints the otpauth:// URI for your authenticator app.
    EnrollOtp {
        /// Also write the secret (base32) to this file, created with mode 0600, for scripts
        /// that compute codes with `recall operator otp-code`.
        #[arg(long)]
        secret_file: Option<PathBuf>,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Print the current one-time code of a secret file written by `enroll-otp`.
    OtpCode {
        /// The secret file.
        #[arg(long)]
        secret_file: PathBuf,
    },
}

/// Runs `recall approve`: shows what is approved, then approves exactly that.
pub async fn approve(a: ApproveArgs) -> anyhow::Result<()> {
    let id = crate::node::stepup::RequestId::parse(&a.id).map_err(anyhow::Error::msg)?;
    let pending = connect(&a.cluster)
        .await?
        .list_pending(pb::ListPendingRequest {})
        .await
        .map_err(status_error)?
        .into_inner();
    let Some(p) = pending
        .requests
        .into_iter()
        .find(|p| p.id == id.to_string())
    else {
        anyhow::bail!(
            "there is no pending request {id}: it was approved already, expired, or never \
             proposed (`recall pending` lists them)"
        );
    };
    println!(
        "approving request {}: {} (proposed by {}{})",
        p.id,
        p.command,
        p.proposer,
        match p.reason.as_str() {
            "" => String::new(),
            r => format!(", reason: {r}"),
        }
    );
    let req = pb::ApproveRequest {
        id: p.id.clone(),
        command_hash: p.command_hash,
        reason: a.reason,
    };
    let r = with_retries(&a.cluster, |mut c| {
        let req = req.clone();
        async move { c.approve(req).await }
    })
    .await?
    .into_inner();
    println!(
        "approved: {} new, {} already in effect, {} removed, {} not found; committed at version {}",
        r.added, r.already_present, r.removed, r.not_found, r.version
    );
    Ok(())
}

/// Runs `recall pending`.
pub async fn pending(a: PendingArgs) -> anyhow::Result<()> {
    let r = connect(&a.cluster)
        .await?
        .list_pending(pb::ListPendingRequest {})
        .await
        .map_err(status_error)?
        .into_inner();
    if r.requests.is_empty() {
        println!("no pending requests");
        return Ok(());
    }
    let now = super::time::now().as_millis();
    for p in r.requests {
        let left = std::time::Duration::from_secs(
            u64::try_from((p.expires_at_ms - now) / 1000).unwrap_or(0),
        );
        println!(
            "{}  {}  proposed by {} at version {}; a {} may approve within {}{}",
            p.id,
            p.command,
            p.proposer,
            p.version,
            p.approver_role,
            humantime::format_duration(left),
            match p.reason.as_str() {
                "" => String::new(),
                r => format!("; reason: {r}"),
            }
        );
    }
    Ok(())
}

/// Runs `recall policy ...`.
pub async fn policy(cmd: PolicyCmd) -> anyhow::Result<()> {
    match cmd {
        PolicyCmd::Show { cluster } => {
            let r = connect(&cluster)
                .await?
                .get_policy(pb::GetPolicyRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            for rule in r.rules {
                println!("{:<10} {}", rule.operation, rule.requirement);
            }
            println!(
                "imports above {} items are `import`; pending requests wait {}",
                r.import_threshold,
                humantime::format_duration(std::time::Duration::from_millis(r.approval_window_ms))
            );
            Ok(())
        }
        PolicyCmd::Set {
            operation,
            requirement,
            reason,
            cluster,
        } => {
            let req = pb::SetPolicyRequest {
                operation: operation.clone(),
                requirement: requirement.clone(),
                reason,
            };
            let r = connect(&cluster)
                .await?
                .set_policy(with_otp(cluster.otp.as_deref(), req))
                .await
                .map_err(status_error)?
                .into_inner();
            println!(
                "{operation} now needs {requirement} (committed at version {})",
                r.version
            );
            Ok(())
        }
    }
}

/// Runs `recall operator ...`.
pub async fn operator(cmd: OperatorCmd) -> anyhow::Result<()> {
    match cmd {
        OperatorCmd::EnrollOtp {
            secret_file,
            cluster,
        } => {
            let secret = OtpSecret::generate();
            if let Some(path) = &secret_file {
                write_private(path, &secret.base32())?;
            }
            let req = pb::EnrollOtpRequest {
                secret: secret.0.to_vec(),
            };
            let r = connect(&cluster)
                .await?
                .enroll_otp(with_otp(cluster.otp.as_deref(), req))
                .await
                .map_err(status_error)?
                .into_inner();
            let account = format!("operator {}", cluster.operator);
            println!(
                "enrolled a one-time-code secret for {account} (version {}). Add it to your \
                 authenticator app now; it is not shown again:\n  {}\n  secret: {}",
                r.version,
                secret.uri(&account),
                secret.base32()
            );
            Ok(())
        }
        OperatorCmd::OtpCode { secret_file } => {
            let text = std::fs::read_to_string(&secret_file)
                .with_context(|| format!("reading {}", secret_file.display()))?;
            let secret = OtpSecret::from_base32(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", secret_file.display()))?;
            println!("{}", secret.code_at(super::time::now()));
            Ok(())
        }
    }
}

/// Writes `text` to a new file only its owner can read.
fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {} (it must not exist yet)", path.display()))?;
    writeln!(f, "{text}").with_context(|| format!("writing {}", path.display()))
}
