//! `recall revoke`, `recall rule` and `recall lift`.

use recall_core::{Kind, ScopeKind};

use super::ClusterArgs;
use super::client::{with_otp, with_retries};
use super::convergence::print_convergence;
use super::time;
use crate::proto as pb;
use crate::wire;

/// Who and why, recorded in the audit history.
#[derive(Debug, Clone, clap::Args)]
pub struct Why {
    /// Why (recorded in the audit history).
    #[arg(long, default_value = "")]
    pub reason: String,
    /// On whose behalf you act, recorded in the audit history as a note (the actor of record is
    /// always your certificate's identity). Default: $USER.
    #[arg(long, env = "USER", default_value = "")]
    pub actor: String,
}

/// `--wait-converged[=TIMEOUT]`.
#[derive(Debug, Clone, clap::Args)]
pub struct Wait {
    /// Return only when every member has answered and every live subscriber has applied the
    /// write (or after TIMEOUT, default 10s), and print the measured time to consistency. A
    /// member that does not answer is named, and the write is then reported as not converged.
    #[arg(long, num_args = 0..=1, default_missing_value = "10s", value_parser = humantime::parse_duration, value_name = "TIMEOUT")]
    pub wait_converged: Option<std::time::Duration>,
    /// With --wait-converged: converged only once at least N live subscribers have applied the
    /// write, the fleet you know of (a subscriber moving between relays or nodes is known to
    /// no node for that moment, and would otherwise not be waited for).
    #[arg(
        long,
        value_name = "N",
        requires = "wait_converged",
        default_value_t = 0
    )]
    pub expect_subscribers: u32,
}

impl Wait {
    /// The request field.
    pub fn to_wire(&self) -> Option<pb::WaitConverged> {
        self.wait_converged.map(|d| pb::WaitConverged {
            timeout_ms: u32::try_from(d.as_millis()).unwrap_or(u32::MAX),
            min_subscribers: self.expect_subscribers,
        })
    }
}

/// `recall revoke`.
#[derive(Debug, clap::Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    why: Why,
    #[command(flatten)]
    wait: Wait,
    /// What the values are: token (jti), session (sid), api_key (SHA-256 hex), subject, client,
    /// key (kid).
    #[arg(long)]
    kind: Kind,
    /// The namespace: the issuer (or tenant).
    #[arg(long = "ns", alias = "issuer")]
    namespace: String,
    /// When what is revoked can no longer be valid anyway (a token's exp): now+1h, RFC 3339 or
    /// unix seconds. Default: never (until lifted).
    #[arg(long, value_parser = time::parse)]
    expires_at: Option<recall_core::Timestamp>,
    /// The values to revoke.
    #[arg(required = true)]
    values: Vec<String>,
}

/// `recall rule`.
#[derive(Debug, clap::Args)]
pub struct RuleArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    why: Why,
    #[command(flatten)]
    wait: Wait,
    /// The scope: issuer, tenant, subject, client or key.
    #[arg(long)]
    scope: ScopeKind,
    /// The issuer (or, for a tenant rule, the tenant).
    #[arg(long = "ns", alias = "issuer")]
    namespace: String,
    /// The subject, client or key id (none for issuer and tenant rules).
    #[arg(long, default_value = "")]
    value: String,
    /// Tokens issued before this time are revoked. Default: now.
    #[arg(long, value_parser = time::parse)]
    before: Option<recall_core::Timestamp>,
    /// When the rule can be dropped (when every token it covers has expired).
    #[arg(long, value_parser = time::parse)]
    expires_at: Option<recall_core::Timestamp>,
}

/// `recall lift`.
#[derive(Debug, clap::Args)]
pub struct LiftArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    why: Why,
    #[command(flatten)]
    wait: Wait,
    /// Lift revoked keys of this kind (give the values)...
    #[arg(long, conflicts_with = "scope")]
    kind: Option<Kind>,
    /// ...or the rule of this scope (give --value for subject, client and key rules).
    #[arg(long)]
    scope: Option<ScopeKind>,
    /// The namespace (issuer or tenant).
    #[arg(long = "ns", alias = "issuer")]
    namespace: String,
    /// The rule's value (subject, client or key id).
    #[arg(long, default_value = "")]
    value: String,
    /// The keys' values.
    values: Vec<String>,
}

fn print_write(what: &str, r: &pb::WriteReply) -> anyhow::Result<()> {
    println!(
        "{what}: {} new, {} already in effect, {} removed, {} not found; committed at version {}",
        r.added, r.already_present, r.removed, r.not_found, r.version
    );
    r.convergence.as_ref().map_or(Ok(()), print_convergence)
}

/// Runs `recall revoke`.
pub async fn revoke(a: RevokeArgs) -> anyhow::Result<()> {
    let items = a
        .values
        .iter()
        .map(|v| pb::Revocation {
            key: Some(wire::key_to_wire(&recall_core::RevocationKey::new(
                a.kind,
                &a.namespace,
                v,
            ))),
            expires_at_ms: a.expires_at.map(|t| t.as_millis()),
        })
        .collect();
    let req = pb::RevokeRequest {
        items,
        actor: a.why.actor,
        reason: a.why.reason,
        wait: a.wait.to_wire(),
    };
    let otp = a.cluster.otp.clone();
    let r = with_retries(&a.cluster, |mut c| {
        let req = with_otp(otp.as_deref(), req.clone());
        async move { c.revoke(req).await }
    })
    .await?;
    print_write("revoked", r.get_ref())
}

/// Runs `recall rule`.
pub async fn rule(a: RuleArgs) -> anyhow::Result<()> {
    let scope = recall_core::RuleScope::new(a.scope, &a.namespace, &a.value);
    let rule = pb::Rule {
        scope: Some(wire::scope_to_wire(&scope)),
        not_before_ms: a.before.unwrap_or_else(time::now).as_millis(),
        expires_at_ms: a.expires_at.map(|t| t.as_millis()),
    };
    let req = pb::AddRuleRequest {
        rule: Some(rule),
        actor: a.why.actor,
        reason: a.why.reason,
        wait: a.wait.to_wire(),
    };
    let otp = a.cluster.otp.clone();
    let r = with_retries(&a.cluster, |mut c| {
        let req = with_otp(otp.as_deref(), req.clone());
        async move { c.add_rule(req).await }
    })
    .await?;
    print_write("rule", r.get_ref())
}

/// Runs `recall lift`.
pub async fn lift(a: LiftArgs) -> anyhow::Result<()> {
    let (keys, rules) = match (a.kind, a.scope) {
        (Some(kind), None) => {
            if a.values.is_empty() {
                anyhow::bail!("give the values to lift after --kind");
            }
            let keys = a
                .values
                .iter()
                .map(|v| wire::key_to_wire(&recall_core::RevocationKey::new(kind, &a.namespace, v)))
                .collect();
            (keys, vec![])
        }
        (None, Some(scope)) => {
            let s = recall_core::RuleScope::new(scope, &a.namespace, &a.value);
            (vec![], vec![wire::scope_to_wire(&s)])
        }
        _ => anyhow::bail!(
            "give either --kind and values (lift revocations) or --scope (lift a rule)"
        ),
    };
    let req = pb::LiftRequest {
        keys,
        rules,
        actor: a.why.actor,
        reason: a.why.reason,
        wait: a.wait.to_wire(),
    };
    let otp = a.cluster.otp.clone();
    let r = with_retries(&a.cluster, |mut c| {
        let req = with_otp(otp.as_deref(), req.clone());
        async move { c.lift(req).await }
    })
    .await?;
    print_write("lifted", r.get_ref())
}
