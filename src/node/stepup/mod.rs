//! Step-up: the operations that can hurt demand more than a valid login.
//!
//! A [`StepUpPolicy`] in the replicated state names, per operation, what it needs beyond the
//! role: nothing, a one-time code ([`otp`]), or a second operator ([`Requirement::TwoPerson`]):
//! the change waits as a [`Pending`] request until a different operator holding the needed role
//! approves it, bound to the exact hash of the change, before it expires. Every rule here is
//! checked when an entry is *applied*, against the time the leader stamped into it, so every
//! replica reaches the same verdict and no path around the operator API (a forwarded write, a
//! race with a policy change) can skip it; the operator API checks the same rules first only to
//! say what to do.

pub mod otp;
pub mod policy;

use std::borrow::Cow;
use std::collections::BTreeMap;

use recall_core::{Command, Meta, Timestamp};
use serde::{Deserialize, Serialize};

use crate::node::access::{Bindings, Role, RoleChange};
use crate::node::audit;
pub use otp::{OtpEnrollment, OtpSecret, OtpState};
pub use policy::{Operation, PolicyChange, Requirement, StepUpPolicy};

/// An operator change that a policy can gate.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Change {
    /// Revoke, AddRule or Lift (never a prune).
    Command(Command),
    /// A role binding.
    Roles(RoleChange),
    /// A step-up policy change.
    Policy(PolicyChange),
    /// A membership change (carried out by the leader once applied through an approval).
    Membership(MembershipChange),
}

/// A membership change an admin asked for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MembershipChange {
    /// Who, when, why.
    pub meta: Meta,
    /// What changes.
    pub op: MembershipOp,
}

/// What a membership change does.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MembershipOp {
    /// Adds a non-voting learner.
    AddLearner {
        /// Its id.
        node: u64,
        /// Its peer address.
        address: String,
    },
    /// Sets the voters.
    Voters {
        /// The new voters.
        voters: std::collections::BTreeSet<u64>,
        /// Whether removed voters stay as learners.
        keep_removed_as_learners: bool,
    },
}

impl MembershipChange {
    /// A one-line summary for the audit history.
    pub fn summary(&self) -> String {
        match &self.op {
            MembershipOp::AddLearner { node, address } => {
                format!("membership: add node {node} at {address} as a learner")
            }
            MembershipOp::Voters { voters, .. } => format!(
                "membership: make the voters {}",
                voters
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

impl Change {
    /// Who, when, why.
    pub fn meta(&self) -> Option<&Meta> {
        match self {
            Change::Command(c) => c.meta(),
            Change::Roles(r) => Some(&r.meta),
            Change::Policy(p) => Some(&p.meta),
            Change::Membership(m) => Some(&m.meta),
        }
    }

    /// Sets the time to the proposing leader's clock.
    pub fn stamp(&mut self, now: Timestamp) {
        match self {
            Change::Command(
                Command::Revoke { meta, .. }
                | Command::AddRule { meta, .. }
                | Command::Lift { meta, .. },
            ) => meta.at = now,
            Change::Command(Command::Prune { .. }) => {}
            Change::Roles(r) => r.meta.at = now,
            Change::Policy(p) => p.meta.at = now,
            Change::Membership(m) => m.meta.at = now,
        }
    }

    /// The operator who asked for it.
    pub fn actor(&self) -> &str {
        self.meta().map_or("", |m| m.actor.as_str())
    }

    /// What the policy calls it (`None` for a prune, which is never gated).
    pub fn operation(&self) -> Option<Operation> {
        match self {
            Change::Command(c) => Operation::of_command(c),
            Change::Roles(_) => Some(Operation::Roles),
            Change::Policy(_) => Some(Operation::Policy),
            Change::Membership(_) => Some(Operation::Membership),
        }
    }

    /// The role it needs, from its proposer and from its approver.
    pub fn needs(&self) -> Option<Role> {
        self.operation().map(policy::role_of)
    }

    /// What to call it in a message.
    pub fn action(&self) -> &'static str {
        match self.operation() {
            Some(Operation::Revoke) => "revoke",
            Some(Operation::Rule) => "a rule",
            Some(Operation::WideRule) => "an issuer-, tenant- or key-wide rule",
            Some(Operation::Lift) => "lift",
            Some(Operation::Import) => "a large import",
            Some(Operation::Membership) => "a membership change",
            Some(Operation::Roles) => "a role change",
            Some(Operation::Policy) => "a step-up policy change",
            None => "a prune",
        }
    }

    /// A one-line summary for the audit history and `recall pending`.
    pub fn summary(&self) -> String {
        match self {
            Change::Command(c) => c.summary(),
            Change::Roles(r) => r.summary(),
            Change::Policy(p) => p.summary(),
            Change::Membership(m) => m.summary(),
        }
    }

    /// The BLAKE3 of the change's canonical (postcard) encoding: what an approval or a code is
    /// bound to, and what its audit record holds.
    pub fn hash(&self) -> [u8; 32] {
        match self {
            Change::Command(c) => audit::command_hash(c),
            Change::Roles(r) => audit::hash_of(r),
            Change::Policy(p) => audit::hash_of(p),
            Change::Membership(m) => audit::hash_of(m),
        }
    }
}

/// The id of a pending request: the first 8 bytes of the BLAKE3 of its proposal, shown as 16
/// hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestId(pub u64);

impl RequestId {
    fn of(version: u64, change: &Change) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"recall step-up request v1");
        h.update(&version.to_le_bytes());
        h.update(&change.hash());
        let b = h.finalize();
        Self(u64::from_be_bytes(
            b.as_bytes()[..8].try_into().expect("8 bytes"),
        ))
    }

    /// Parses the 16 hex digits `recall pending` shows.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.len() != 16 {
            return Err(format!(
                "a request id has 16 hex digits (as `recall pending` shows); got {s:?}"
            ));
        }
        u64::from_str_radix(s, 16)
            .map(Self)
            .map_err(|_| format!("a request id has 16 hex digits; got {s:?}"))
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A change waiting for a second operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// Its id.
    pub id: RequestId,
    /// The version it was proposed at.
    pub version: u64,
    /// When it stops waiting.
    pub expires_at: Timestamp,
    /// The hash an approval must name ([`Change::hash`]).
    pub command_hash: [u8; 32],
    /// The change, as proposed (its meta names the proposer).
    pub change: Change,
}

impl Pending {
    /// The operator who proposed it.
    pub fn proposer(&self) -> &str {
        self.change.actor()
    }
}

/// A second operator's approval of a pending request.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Approval {
    /// Who approves, when, why.
    pub meta: Meta,
    /// The request approved.
    pub id: RequestId,
    /// The hash of the change the approver was shown: it must be the request's.
    pub command_hash: [u8; 32],
}

/// What a newly proposed request is, for the proposer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposed {
    /// Its id.
    pub id: RequestId,
    /// When it stops waiting.
    pub expires_at: Timestamp,
    /// The hash an approval must name.
    pub command_hash: [u8; 32],
}

/// Why an entry changed nothing: a step-up rule did not hold when it was applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{0}")]
pub struct Refused(pub String);

/// The replicated step-up state: the policy, the pending requests and the enrolled secrets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Governance {
    /// The policy; `None` in a cluster whose state predates step-up, which gets
    /// [`StepUpPolicy::production`].
    pub policy: Option<StepUpPolicy>,
    /// Requests waiting for approval, by id.
    pub pending: BTreeMap<RequestId, Pending>,
    /// One-time-code secrets, by operator identity.
    pub otp: BTreeMap<String, OtpState>,
    /// Membership changes approved and not yet carried out by the leader, by the version of
    /// their approval.
    pub approved_membership: BTreeMap<u64, MembershipChange>,
}

impl Governance {
    /// The policy in force.
    pub fn policy(&self) -> Cow<'_, StepUpPolicy> {
        match &self.policy {
            Some(p) => Cow::Borrowed(p),
            None => Cow::Owned(StepUpPolicy::production()),
        }
    }

    /// What `change` needs beyond its role, given the role `bindings` (see [`waived`]).
    pub fn requirement(&self, change: &Change, bindings: &Bindings) -> Requirement {
        let need = change
            .operation()
            .map_or(Requirement::None, |op| self.policy().requirement(op));
        if need == Requirement::TwoPerson && waived(change, bindings) {
            return Requirement::None;
        }
        need
    }

    /// Admits a change applied as it is, with no step-up.
    pub fn admit_direct(&self, change: &Change, bindings: &Bindings) -> Result<(), Refused> {
        match self.requirement(change, bindings) {
            Requirement::None => Ok(()),
            need => Err(refusal(change, need)),
        }
    }

    /// Admits a change that came with a one-time code, consuming the code's step.
    pub fn admit_otp(
        &mut self,
        change: &Change,
        code: &str,
        bindings: &Bindings,
    ) -> Result<(), Refused> {
        if self.requirement(change, bindings) == Requirement::TwoPerson {
            return Err(refusal(change, Requirement::TwoPerson));
        }
        let actor = change.actor();
        let at = change.meta().map_or(Timestamp(0), |m| m.at);
        self.consume_code(actor, code, at)
    }

    fn consume_code(&mut self, actor: &str, code: &str, at: Timestamp) -> Result<(), Refused> {
        let Some(state) = self.otp.get_mut(actor) else {
            return Err(Refused(format!(
                "{actor} has no one-time-code secret enrolled: enroll one with `recall operator \
                 enroll-otp`"
            )));
        };
        match state.secret.check(code, at) {
            None => Err(Refused(
                "the one-time code is wrong or not current: use the code your authenticator \
                 shows now (the node's clock is the reference)"
                    .into(),
            )),
            Some(step) if step <= state.last_step => Err(Refused(
                "this one-time code was already used: each code works once; wait for the next \
                 one (at most 30 s)"
                    .into(),
            )),
            Some(step) => {
                state.last_step = step;
                Ok(())
            }
        }
    }

    /// Records `change`, proposed at `version`, as a pending request.
    pub fn propose(&mut self, version: u64, change: Change) -> Result<Proposed, Refused> {
        let at = change.meta().map_or(Timestamp(0), |m| m.at);
        self.expire(at);
        let id = RequestId::of(version, &change);
        if self.pending.contains_key(&id) {
            return Err(Refused(format!(
                "a pending request with id {id} already exists; propose again"
            )));
        }
        let window = i64::try_from(self.policy().approval_window_ms).unwrap_or(i64::MAX);
        let expires_at = Timestamp(at.as_millis().saturating_add(window));
        let command_hash = change.hash();
        self.pending.insert(
            id,
            Pending {
                id,
                version,
                expires_at,
                command_hash,
                change,
            },
        );
        Ok(Proposed {
            id,
            expires_at,
            command_hash,
        })
    }

    /// Checks `approval` against its request and, when it holds, removes the request (an
    /// approval is single-use) and returns it for applying.
    pub fn approve(&mut self, approval: &Approval, roles: &Bindings) -> Result<Pending, Refused> {
        let at = approval.meta.at;
        if let Some(p) = self.pending.get(&approval.id)
            && at > p.expires_at
        {
            let p = self.pending.remove(&approval.id).expect("just found");
            return Err(Refused(format!(
                "request {} expired at {} before it was approved: propose it again",
                p.id, p.expires_at
            )));
        }
        self.expire(at);
        let Some(p) = self.pending.get(&approval.id) else {
            return Err(Refused(format!(
                "there is no pending request {}: it was approved already, expired, or never \
                 proposed (`recall pending` lists them)",
                approval.id
            )));
        };
        if p.command_hash != approval.command_hash {
            return Err(Refused(format!(
                "the approval names a different command than request {}: approve only what \
                 `recall pending` shows",
                p.id
            )));
        }
        let approver = approval.meta.actor.as_str();
        if approver == p.proposer() {
            return Err(Refused(format!(
                "{approver} proposed request {} and cannot approve it: a different operator must",
                p.id
            )));
        }
        let need = p.change.needs().unwrap_or(Role::Admin);
        let has = roles.get(approver).copied();
        if has.is_none_or(|r| r < need) {
            return Err(Refused(format!(
                "approving request {} needs the {need} role; {approver} has {}",
                p.id,
                has.map_or("none".to_string(), |r| r.to_string())
            )));
        }
        Ok(self.pending.remove(&approval.id).expect("just found"))
    }

    /// Enrolls (or replaces, with a current code of the old secret) an operator's secret.
    pub fn enroll(&mut self, e: &OtpEnrollment) -> Result<(), Refused> {
        let actor = e.meta.actor.as_str();
        if self.otp.contains_key(actor) {
            let Some(code) = &e.current_code else {
                return Err(Refused(format!(
                    "{actor} already has a one-time-code secret: replacing it needs a current \
                     code from it (--otp CODE)"
                )));
            };
            self.consume_code(actor, code, e.meta.at)?;
        }
        self.otp.insert(
            actor.to_owned(),
            OtpState {
                secret: e.secret.clone(),
                last_step: 0,
            },
        );
        Ok(())
    }

    /// Applies a policy change (already admitted).
    pub fn set_policy(&mut self, change: &PolicyChange) {
        let mut policy = self.policy().into_owned();
        match change.requirement {
            Requirement::None => policy.rules.remove(&change.operation),
            r => policy.rules.insert(change.operation, r),
        };
        self.policy = Some(policy);
    }

    /// Drops the requests that expired before `now`.
    fn expire(&mut self, now: Timestamp) {
        self.pending.retain(|_, p| p.expires_at >= now);
    }
}

/// The one exception to `two_person`: the cluster's only admin granting a role. Without it a
/// cluster created with one admin could never gain a second person to approve anything; with
/// it, that admin can bring in exactly the people who will then hold them to two-person rules.
/// The audit record of such a grant says the rule was waived and why.
pub fn waived(change: &Change, bindings: &Bindings) -> bool {
    let Change::Roles(r) = change else {
        return false;
    };
    let admins: Vec<&String> = bindings
        .iter()
        .filter(|(_, role)| **role == Role::Admin)
        .map(|(who, _)| who)
        .collect();
    r.role.is_some() && admins.len() == 1 && admins[0] == &r.meta.actor
}

/// Whether anyone but `proposer` holds `need` or a higher role: someone who could approve.
pub fn has_approver(bindings: &Bindings, proposer: &str, need: Role) -> bool {
    bindings
        .iter()
        .any(|(who, role)| who != proposer && *role >= need)
}

/// Why `change` cannot even be proposed: it needs a second operator's approval and nobody but
/// its proposer holds the role to give it. Checked by the leader, whose bindings include every
/// role change it has acknowledged (a follower may not have applied a grant yet).
pub fn no_approver(gov: &Governance, bindings: &Bindings, change: &Change) -> Option<String> {
    if gov.requirement(change, bindings) != Requirement::TwoPerson {
        return None;
    }
    let role = change.needs().unwrap_or(Role::Admin);
    (!has_approver(bindings, change.actor(), role)).then(|| {
        format!(
            "{} needs a second operator's approval, but no other operator holds the {role} role \
             or a higher one: an admin grants one first (`recall roles grant NAME {role}`)",
            change.action()
        )
    })
}

/// The refusal of a change applied without the step-up it needs.
fn refusal(change: &Change, need: Requirement) -> Refused {
    let op = change.operation().map_or("prune", Operation::name);
    Refused(match need {
        Requirement::TwoPerson => format!(
            "{} needs a second operator's approval (step-up policy: {op} two_person)",
            change.action()
        ),
        Requirement::Otp => format!(
            "{} needs a one-time code (step-up policy: {op} otp): re-run with --otp CODE from \
             your authenticator (enrolled with `recall operator enroll-otp`)",
            change.action()
        ),
        Requirement::None => String::new(),
    })
}
