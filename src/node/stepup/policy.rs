//! The step-up policy: per operation, what an operator needs beyond the role. It lives in the
//! replicated state, so every node enforces the same policy, and every change of it is itself
//! an operation the policy governs (and an audit record).

use std::collections::BTreeMap;

use recall_core::{Command, Meta, ScopeKind};
use serde::{Deserialize, Serialize};

use crate::node::access::Role;

/// What an operation needs beyond the caller's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Requirement {
    /// Nothing: the role is enough.
    None,
    /// A current one-time code (RFC 6238 TOTP) from the operator's enrolled authenticator,
    /// consumed by the command it came with.
    Otp,
    /// A second operator's approval: the command waits as a pending request until a different
    /// operator with the needed role approves it (`recall approve ID`) before it expires.
    TwoPerson,
}

impl Requirement {
    /// Every requirement, weakest first.
    pub const ALL: [Requirement; 3] = [Requirement::None, Requirement::Otp, Requirement::TwoPerson];

    /// The name operators type.
    pub fn name(self) -> &'static str {
        match self {
            Requirement::None => "none",
            Requirement::Otp => "otp",
            Requirement::TwoPerson => "two_person",
        }
    }

    /// Parses a requirement name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == s)
    }
}

impl std::fmt::Display for Requirement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The operations a policy names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Operation {
    /// Revoking entries (tokens, sessions, keys, subjects...).
    Revoke,
    /// A not-before rule on one subject or one client.
    Rule,
    /// A not-before rule on a whole issuer, tenant or signing key.
    WideRule,
    /// Lifting revocations or rules.
    Lift,
    /// An import of more items than the policy's `import_threshold`.
    Import,
    /// Adding a learner or changing the voters.
    Membership,
    /// Binding or removing an operator's role.
    Roles,
    /// Changing this policy.
    Policy,
}

impl Operation {
    /// Every operation.
    pub const ALL: [Operation; 8] = [
        Operation::Revoke,
        Operation::Rule,
        Operation::WideRule,
        Operation::Lift,
        Operation::Import,
        Operation::Membership,
        Operation::Roles,
        Operation::Policy,
    ];

    /// The name operators type.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Revoke => "revoke",
            Operation::Rule => "rule",
            Operation::WideRule => "wide_rule",
            Operation::Lift => "lift",
            Operation::Import => "import",
            Operation::Membership => "membership",
            Operation::Roles => "roles",
            Operation::Policy => "policy",
        }
    }

    /// Parses an operation name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.name() == s)
    }

    /// What a command is, for the policy (a prune is the system's own and never gated).
    pub fn of_command(cmd: &Command) -> Option<Self> {
        match cmd {
            Command::Revoke { .. } => Some(Operation::Revoke),
            Command::AddRule { rule, .. } => Some(match rule.scope.kind {
                ScopeKind::Issuer | ScopeKind::Tenant | ScopeKind::Key => Operation::WideRule,
                ScopeKind::Subject | ScopeKind::Client => Operation::Rule,
            }),
            Command::Lift { .. } => Some(Operation::Lift),
            Command::Prune { .. } => None,
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Per operation, what it needs beyond the role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepUpPolicy {
    /// The requirement of each operation; an operation not named needs nothing.
    pub rules: BTreeMap<Operation, Requirement>,
    /// Imports of more items than this fall under [`Operation::Import`].
    pub import_threshold: u64,
    /// How long a pending request waits for its approval, in milliseconds.
    pub approval_window_ms: u64,
}

/// How long a pending request waits for approval unless the policy says otherwise.
pub const DEFAULT_APPROVAL_WINDOW_MS: u64 = 10 * 60 * 1000;

/// Imports above this many items are [`Operation::Import`] unless the policy says otherwise.
pub const DEFAULT_IMPORT_THRESHOLD: u64 = 10_000;

impl StepUpPolicy {
    /// The policy of a production cluster, and of a cluster whose state predates step-up:
    /// `two_person` for lifts, issuer-, tenant- and key-wide rules, imports above the threshold,
    /// membership, role bindings and policy changes; revoking entries and narrow rules need only
    /// the role.
    pub fn production() -> Self {
        let two = [
            Operation::Lift,
            Operation::WideRule,
            Operation::Import,
            Operation::Membership,
            Operation::Roles,
            Operation::Policy,
        ];
        Self {
            rules: two.map(|o| (o, Requirement::TwoPerson)).into(),
            import_threshold: DEFAULT_IMPORT_THRESHOLD,
            approval_window_ms: DEFAULT_APPROVAL_WINDOW_MS,
        }
    }

    /// A policy that asks for nothing beyond roles (development, benchmarks).
    pub fn none() -> Self {
        Self {
            rules: BTreeMap::new(),
            import_threshold: DEFAULT_IMPORT_THRESHOLD,
            approval_window_ms: DEFAULT_APPROVAL_WINDOW_MS,
        }
    }

    /// A named preset: `production` or `none`.
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "production" => Some(Self::production()),
            "none" => Some(Self::none()),
            _ => None,
        }
    }

    /// What `op` needs.
    pub fn requirement(&self, op: Operation) -> Requirement {
        self.rules.get(&op).copied().unwrap_or(Requirement::None)
    }

    /// One line for logs and `recall dev`: what each gated operation needs.
    pub fn describe(&self) -> String {
        let gated: Vec<String> = Operation::ALL
            .into_iter()
            .filter(|o| self.requirement(*o) != Requirement::None)
            .map(|o| format!("{o}: {}", self.requirement(o)))
            .collect();
        if gated.is_empty() {
            return "none for every operation (roles alone decide)".into();
        }
        format!(
            "{} (imports above {} items; approvals wait {})",
            gated.join(", "),
            self.import_threshold,
            humantime::format_duration(std::time::Duration::from_millis(self.approval_window_ms))
        )
    }
}

/// A change of one operation's requirement, proposed by an admin.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PolicyChange {
    /// Who, when, why.
    pub meta: Meta,
    /// The operation.
    pub operation: Operation,
    /// What it needs from now on.
    pub requirement: Requirement,
}

impl PolicyChange {
    /// A one-line summary for the audit history.
    pub fn summary(&self) -> String {
        format!(
            "step-up for {}: {}",
            self.operation.name(),
            self.requirement.name()
        )
    }
}

/// The role an operation needs (an approver needs it too).
pub fn role_of(op: Operation) -> Role {
    match op {
        Operation::Revoke => Role::Revoker,
        Operation::Rule | Operation::WideRule | Operation::Lift | Operation::Import => {
            Role::Recaller
        }
        Operation::Membership | Operation::Roles | Operation::Policy => Role::Admin,
    }
}
