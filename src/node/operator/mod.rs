//! The operator API (`recall.v1.Operator`): revoke, rules, lift, import, status, membership and
//! the audit history. Converts the wire types at the door and hands commands to the write path.

use std::pin::Pin;

use futures::Stream;
use recall_core::{Command, Meta, Timestamp};
use tonic::{Request, Response as TonicResponse, Status, Streaming};

mod history;
mod import;
mod stepup;

use super::access::{self, Caller, Role, RoleChange};
use super::raft::{Node, Raft, Response, StateMachine};
use super::rate::{RateLimiter, WriteRate};
use super::stepup::{Change, MembershipChange, MembershipOp, Proposed, Requirement};
use super::writer::Write;
use super::writer::Writer;
use crate::proto as pb;
use crate::proto::operator_server::Operator;
use crate::wire::{self, WireError};

/// How long a write waits for convergence when the request gives no timeout.
const DEFAULT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The most audit records one `AuditLog` call returns.
const MAX_AUDIT_PAGE: usize = 10_000;

/// The operator service of one node.
pub struct OperatorService {
    raft: Raft,
    sm: StateMachine,
    writer: Writer,
    convergence: std::sync::Arc<super::convergence::Convergence>,
    contact: std::sync::Arc<super::contact::Contact>,
    rate: RateLimiter,
    trust_domain: String,
}

impl OperatorService {
    /// Serves the operator API over this node's Raft, state machine and write path.
    pub fn new(
        raft: Raft,
        sm: StateMachine,
        writer: Writer,
        convergence: std::sync::Arc<super::convergence::Convergence>,
        contact: std::sync::Arc<super::contact::Contact>,
        rate: WriteRate,
        trust_domain: String,
    ) -> Self {
        Self {
            raft,
            sm,
            writer,
            convergence,
            contact,
            rate: RateLimiter::new(rate),
            trust_domain,
        }
    }

    /// The caller of `req`, refused unless it holds `need`.
    fn allow<T>(
        &self,
        req: &Request<T>,
        need: Role,
        action: &'static str,
    ) -> Result<Caller, Status> {
        let caller = Caller::of(crate::transport::peer(req)?);
        self.sm
            .with_roles(|b| access::require(b, &caller, need, action))?;
        Ok(caller)
    }

    /// Commits `cmd`; with `wait`, then waits until every live subscriber has applied it.
    async fn commit(
        &self,
        cmd: Command,
        wait: Option<pb::WaitConverged>,
    ) -> Result<TonicResponse<pb::WriteReply>, Status> {
        let started = std::time::Instant::now();
        let shape = crate::wire::Shape::of(&cmd);
        let r = self
            .writer
            .write(cmd)
            .await
            .map_err(|e| write_status(e, shape))?;
        self.finish(r, wait, started).await
    }

    /// The reply to a committed write; with `wait`, once every live subscriber applied it.
    async fn finish(
        &self,
        r: Response,
        wait: Option<pb::WaitConverged>,
        started: std::time::Instant,
    ) -> Result<TonicResponse<pb::WriteReply>, Status> {
        let mut out = reply(r);
        if let Some(w) = wait {
            let timeout = match w.timeout_ms {
                0 => DEFAULT_WAIT,
                ms => std::time::Duration::from_millis(u64::from(ms)),
            };
            out.convergence = Some(
                super::convergence::wait(
                    &self.convergence,
                    out.version,
                    timeout,
                    started,
                    w.min_subscribers,
                )
                .await,
            );
        }
        Ok(TonicResponse::new(out))
    }

    /// Commits an operator change the way the step-up policy says: as it is, with the caller's
    /// one-time code, or as a pending request for a second operator (then the call fails with
    /// what the proposer must ask for).
    async fn gated(
        &self,
        change: Change,
        otp: Option<String>,
        wait: Option<pb::WaitConverged>,
    ) -> Result<TonicResponse<pb::WriteReply>, Status> {
        let started = std::time::Instant::now();
        let need = self
            .sm
            .with_stepup(|g, roles| g.requirement(&change, roles));
        let action = change.action();
        let write = match (need, otp) {
            (Requirement::None, _) => match change {
                Change::Command(cmd) => return self.commit(cmd, wait).await,
                // Whether a role or policy change needs a second operator depends on the role
                // bindings as the leader applies it (see `stepup::waived`), which this node may
                // not have caught up with: the entry applies it at once where it needs nothing,
                // and waits for approval otherwise.
                other => Write::Propose(other),
            },
            (Requirement::Otp, Some(code)) => Write::WithOtp { code, change },
            (Requirement::Otp, None) => {
                let op = change.operation().map_or("prune", |o| o.name());
                return Err(Status::failed_precondition(format!(
                    "{} needs a one-time code (step-up policy: {op} otp): re-run with --otp \
                     CODE from your authenticator (enroll one with `recall operator enroll-otp`)",
                    change.action()
                )));
            }
            // The leader refuses a request nobody could approve (`stepup::no_approver`).
            (Requirement::TwoPerson, _) => Write::Propose(change),
        };
        let shape = write_shape(&write);
        let r = self
            .writer
            .write_whole(write)
            .await
            .map_err(|e| write_status(e, shape))?;
        match &r.proposed {
            Some(p) => Err(needs_approval(action, p, r.version)),
            None => self.finish(r, wait, started).await,
        }
    }

    fn members(&self) -> Vec<pb::Member> {
        let m = self.raft.metrics().borrow().clone();
        let voters: Vec<u64> = m.membership_config.voter_ids().collect();
        let replication = m.replication.clone().unwrap_or_default();
        m.membership_config
            .nodes()
            .map(|(id, node)| {
                let applied = if *id == m.id {
                    m.last_applied.map(|l| l.index)
                } else {
                    replication.get(id).copied().flatten().map(|l| l.index)
                };
                pb::Member {
                    node_id: *id,
                    address: node.addr.clone(),
                    role: if voters.contains(id) {
                        pb::Role::Voter
                    } else {
                        pb::Role::Learner
                    } as i32,
                    reachable: *id == m.id || applied.is_some(),
                    applied_version: applied.unwrap_or(0),
                }
            })
            .collect()
    }

    /// The leader's address for a membership change sent to a follower.
    fn not_leader(&self) -> Status {
        let m = self.raft.metrics().borrow().clone();
        let leader = m.current_leader.and_then(|id| {
            m.membership_config
                .membership()
                .get_node(&id)
                .map(|n| format!("node {id} at {}", n.addr))
        });
        Status::failed_precondition(format!(
            "membership changes go to the leader; the leader is {}",
            leader.unwrap_or_else(|| "unknown (election in progress?)".into())
        ))
    }
}

/// The actor of record is the authenticated caller; what the client called `actor` is kept as
/// the "on behalf of" note. The leader stamps the time when it proposes.
fn meta(caller: &Caller, on_behalf_of: String, reason: String) -> Meta {
    Meta {
        at: Timestamp(0),
        actor: caller.actor(),
        on_behalf_of,
        reason,
    }
}

/// The status of a write that did not commit, with the path of an invalid field.
fn write_status(e: super::WriteError, shape: crate::wire::Shape) -> Status {
    match e {
        super::WriteError::Invalid(v) => {
            Status::invalid_argument(crate::wire::with_path(shape, &v))
        }
        other => Status::from(other),
    }
}

fn write_shape(w: &Write) -> crate::wire::Shape {
    match w {
        Write::Command(c)
        | Write::WithOtp {
            change: Change::Command(c),
            ..
        }
        | Write::Propose(Change::Command(c)) => crate::wire::Shape::of(c),
        _ => crate::wire::Shape::Revoke,
    }
}

/// What the proposer of a change that needs a second operator is told.
fn needs_approval(action: &str, p: &Proposed, version: u64) -> Status {
    let now = super::clock::system()();
    // Rounded up to the second: a fresh request shows the policy's whole window ("10m").
    let left_ms = u64::try_from(p.expires_at.as_millis() - now.as_millis()).unwrap_or(0);
    let left = humantime::format_duration(std::time::Duration::from_secs(left_ms.div_ceil(1000)));
    let mut s = Status::failed_precondition(format!(
        "{} needs a second operator's approval: ask them to run 'recall approve {}' within {left} \
         (request {} proposed at version {version}; `recall pending` lists it)",
        action, p.id, p.id
    ));
    if let Ok(v) = p.id.to_string().parse() {
        s.metadata_mut().insert("recall-request-id", v);
    }
    s
}

/// The caller's one-time code, from the `recall-otp` metadata entry.
fn otp_of<T>(req: &Request<T>) -> Option<String> {
    req.metadata()
        .get("recall-otp")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn reply(r: Response) -> pb::WriteReply {
    pb::WriteReply {
        version: r.version,
        added: r.added,
        already_present: r.already_present,
        removed: r.removed,
        not_found: r.not_found,
        convergence: None,
    }
}

fn membership_error<E: std::fmt::Display>(e: E) -> Status {
    Status::unavailable(format!("membership change failed: {e}"))
}

type AuditStream = Pin<Box<dyn Stream<Item = Result<pb::AuditRecord, Status>> + Send>>;

#[tonic::async_trait]
impl Operator for OperatorService {
    async fn revoke(
        &self,
        req: Request<pb::RevokeRequest>,
    ) -> Result<TonicResponse<pb::WriteReply>, Status> {
        let caller = self.allow(&req, Role::Revoker, "revoke")?;
        let otp = otp_of(&req);
        let req = req.into_inner();
        self.rate.check(&caller.actor(), req.items.len() as u64)?;
        let items = req
            .items
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                wire::revocation_from_wire("", r).map_err(|e| e.under(&format!("items[{i}]")))
            })
            .collect::<Result<Vec<_>, WireError>>()?;
        let cmd = Command::Revoke {
            meta: meta(&caller, req.actor, req.reason),
            items,
        };
        self.gated(Change::Command(cmd), otp, req.wait).await
    }

    async fn add_rule(
        &self,
        req: Request<pb::AddRuleRequest>,
    ) -> Result<TonicResponse<pb::WriteReply>, Status> {
        let caller = self.allow(&req, Role::Recaller, "adding a rule")?;
        let otp = otp_of(&req);
        let req = req.into_inner();
        self.rate.check(&caller.actor(), 1)?;
        let rule = wire::rule_from_wire("rule", req.rule)?;
        let cmd = Command::AddRule {
            meta: meta(&caller, req.actor, req.reason),
            rule,
        };
        self.gated(Change::Command(cmd), otp, req.wait).await
    }

    async fn lift(
        &self,
        req: Request<pb::LiftRequest>,
    ) -> Result<TonicResponse<pb::WriteReply>, Status> {
        let caller = self.allow(&req, Role::Recaller, "lift")?;
        let otp = otp_of(&req);
        let req = req.into_inner();
        self.rate
            .check(&caller.actor(), (req.keys.len() + req.rules.len()) as u64)?;
        let keys = req
            .keys
            .into_iter()
            .enumerate()
            .map(|(i, k)| {
                wire::key_from_wire("", Some(k)).map_err(|e| e.under(&format!("keys[{i}]")))
            })
            .collect::<Result<Vec<_>, WireError>>()?;
        let rules = req
            .rules
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                wire::scope_from_wire("", Some(s)).map_err(|e| e.under(&format!("rules[{i}]")))
            })
            .collect::<Result<Vec<_>, WireError>>()?;
        let cmd = Command::Lift {
            meta: meta(&caller, req.actor, req.reason),
            keys,
            rules,
        };
        self.gated(Change::Command(cmd), otp, req.wait).await
    }

    async fn import(
        &self,
        req: Request<Streaming<pb::ImportChunk>>,
    ) -> Result<TonicResponse<pb::WriteReply>, Status> {
        self.import_stream(req).await
    }

    async fn status(
        &self,
        req: Request<pb::StatusRequest>,
    ) -> Result<TonicResponse<pb::StatusReply>, Status> {
        self.allow(&req, Role::Viewer, "status")?;
        let req = req.into_inner();
        let m = self.raft.metrics().borrow().clone();
        let applied = self.sm.applied();
        let target = req.version.unwrap_or(applied.version);
        let gathered = if req.local_only {
            super::convergence::Gathered::local(self.convergence.local())
        } else {
            self.convergence.cluster().await
        };
        let convergence =
            super::convergence::report(target, &gathered, std::time::Instant::now(), 0);
        let (entries, rules) = self
            .sm
            .with_set(|s| (s.len() as u64, s.rule_count() as u64));
        Ok(TonicResponse::new(pb::StatusReply {
            node_id: m.id,
            leader_id: m.current_leader,
            term: m.current_term,
            committed_version: self.contact.committed().max(applied.version),
            applied_version: applied.version,
            last_change_version: applied.last_change,
            digest: applied.digest.0,
            entries,
            rules,
            members: self.members(),
            convergence: Some(convergence),
            ..self.history_status()
        }))
    }

    async fn add_learner(
        &self,
        req: Request<pb::AddLearnerRequest>,
    ) -> Result<TonicResponse<pb::MembershipReply>, Status> {
        let caller = self.allow(&req, Role::Admin, "adding a learner")?;
        let otp = otp_of(&req);
        let req = req.into_inner();
        if req.node_id == 0 || req.address.is_empty() {
            return Err(Status::invalid_argument(
                "node_id must be at least 1 and address host:port",
            ));
        }
        if self.raft.current_leader().await != Some(self.raft.metrics().borrow().id) {
            return Err(self.not_leader());
        }
        let change = MembershipChange {
            meta: meta(&caller, String::new(), String::new()),
            op: MembershipOp::AddLearner {
                node: req.node_id,
                address: req.address.clone(),
            },
        };
        self.gated(Change::Membership(change), otp, None).await?;
        let r = self
            .raft
            .add_learner(req.node_id, Node { addr: req.address }, true)
            .await
            .map_err(membership_error)?;
        Ok(TonicResponse::new(pb::MembershipReply {
            version: r.log_id.index,
            members: self.members(),
        }))
    }

    async fn change_membership(
        &self,
        req: Request<pb::ChangeMembershipRequest>,
    ) -> Result<TonicResponse<pb::MembershipReply>, Status> {
        let caller = self.allow(&req, Role::Admin, "changing membership")?;
        let otp = otp_of(&req);
        let req = req.into_inner();
        if req.voters.is_empty() {
            return Err(Status::invalid_argument(
                "voters must name at least one node",
            ));
        }
        if self.raft.current_leader().await != Some(self.raft.metrics().borrow().id) {
            return Err(self.not_leader());
        }
        let voters: std::collections::BTreeSet<u64> = req.voters.into_iter().collect();
        let change = MembershipChange {
            meta: meta(&caller, String::new(), String::new()),
            op: MembershipOp::Voters {
                voters: voters.clone(),
                keep_removed_as_learners: req.keep_removed_as_learners,
            },
        };
        // Recorded with its actor first (or proposed, when it needs a second admin).
        self.gated(Change::Membership(change), otp, None).await?;
        let r = self
            .raft
            .change_membership(voters, req.keep_removed_as_learners)
            .await
            .map_err(membership_error)?;
        Ok(TonicResponse::new(pb::MembershipReply {
            version: r.log_id.index,
            members: self.members(),
        }))
    }

    type AuditLogStream = AuditStream;

    async fn audit_log(
        &self,
        req: Request<pb::AuditLogRequest>,
    ) -> Result<TonicResponse<AuditStream>, Status> {
        self.allow(&req, Role::Viewer, "reading the audit history")?;
        let req = req.into_inner();
        let limit = match req.limit as usize {
            0 => MAX_AUDIT_PAGE,
            n => n.min(MAX_AUDIT_PAGE),
        };
        let records = self
            .sm
            .audit_log(req.from_version.unwrap_or(0), limit)
            .await
            .map_err(|e| Status::internal(format!("cannot read the audit history: {e}")))?;
        let out = records.into_iter().map(|r| {
            Ok(pb::AuditRecord {
                version: r.version,
                at_ms: r.at.as_millis(),
                actor: r.actor,
                on_behalf_of: r.on_behalf_of,
                reason: r.reason,
                command: r.summary,
                hash: r.hash.to_vec(),
                prev_hash: r.prev.to_vec(),
            })
        });
        Ok(TonicResponse::new(Box::pin(futures::stream::iter(
            out.collect::<Vec<_>>(),
        ))))
    }

    async fn audit_verify(
        &self,
        req: Request<pb::AuditVerifyRequest>,
    ) -> Result<TonicResponse<pb::AuditVerifyReply>, Status> {
        self.allow(&req, Role::Viewer, "verifying the audit history")?;
        let result = self
            .sm
            .audit_verify()
            .await
            .map_err(|e| Status::internal(format!("cannot read the audit history: {e}")))?;
        Ok(TonicResponse::new(match result {
            Ok(v) => pb::AuditVerifyReply {
                ok: true,
                records_checked: v.records,
                first_broken_version: None,
                detail: format!(
                    "{} records verified up to version {}",
                    v.records, v.last_version
                ),
            },
            Err(b) => pb::AuditVerifyReply {
                ok: false,
                records_checked: 0,
                first_broken_version: Some(b.version),
                detail: b.to_string(),
            },
        }))
    }

    async fn set_role(
        &self,
        req: Request<pb::SetRoleRequest>,
    ) -> Result<TonicResponse<pb::WriteReply>, Status> {
        let caller = self.allow(&req, Role::Admin, "changing a role binding")?;
        self.rate.check(&caller.actor(), 1)?;
        let otp = otp_of(&req);
        let req = req.into_inner();
        let change = self
            .sm
            .with_roles(|b| {
                RoleChange::checked(
                    b,
                    &self.trust_domain,
                    meta(&caller, String::new(), req.reason),
                    &req.identity,
                    &req.role,
                )
            })
            .map_err(|e| match e {
                access::RoleChangeError::LastAdmin(_) => Status::failed_precondition(e.to_string()),
                access::RoleChangeError::Invalid(_) => Status::invalid_argument(e.to_string()),
            })?;
        self.gated(Change::Roles(change), otp, None).await
    }

    type AuditExportStream = history::ExportStream;

    async fn audit_export(
        &self,
        req: Request<pb::AuditExportRequest>,
    ) -> Result<TonicResponse<Self::AuditExportStream>, Status> {
        self.export(req).await
    }

    async fn audit_keys(
        &self,
        req: Request<pb::AuditKeysRequest>,
    ) -> Result<TonicResponse<pb::AuditKeysReply>, Status> {
        self.keys(req)
    }

    async fn approve(
        &self,
        req: Request<pb::ApproveRequest>,
    ) -> Result<TonicResponse<pb::WriteReply>, Status> {
        self.approve_request(req).await
    }

    async fn list_pending(
        &self,
        req: Request<pb::ListPendingRequest>,
    ) -> Result<TonicResponse<pb::ListPendingReply>, Status> {
        self.pending_requests(req)
    }

    async fn set_policy(
        &self,
        req: Request<pb::SetPolicyRequest>,
    ) -> Result<TonicResponse<pb::WriteReply>, Status> {
        self.change_policy(req).await
    }

    async fn get_policy(
        &self,
        req: Request<pb::GetPolicyRequest>,
    ) -> Result<TonicResponse<pb::PolicyReply>, Status> {
        self.policy(req)
    }

    async fn enroll_otp(
        &self,
        req: Request<pb::EnrollOtpRequest>,
    ) -> Result<TonicResponse<pb::WriteReply>, Status> {
        self.enroll(req).await
    }

    async fn list_roles(
        &self,
        req: Request<pb::ListRolesRequest>,
    ) -> Result<TonicResponse<pb::ListRolesReply>, Status> {
        self.allow(&req, Role::Viewer, "listing roles")?;
        let bindings = self
            .sm
            .roles()
            .into_iter()
            .map(|(identity, role)| pb::RoleBinding {
                identity,
                role: role.name().into(),
            })
            .collect();
        Ok(TonicResponse::new(pb::ListRolesReply { bindings }))
    }
}
