//! The step-up calls of the operator API: approvals, pending requests, the policy and
//! one-time-code enrollment (see [`crate::node::stepup`] for the rules they follow).

use tonic::{Request, Response as TonicResponse, Status};

use super::{OperatorService, meta, otp_of, write_status};
use crate::node::access::Role;
use crate::node::stepup::{
    Approval, Change, Operation, OtpEnrollment, OtpSecret, PolicyChange, RequestId, Requirement,
    otp::SECRET_LEN,
};
use crate::node::writer::Write;
use crate::proto as pb;

impl OperatorService {
    /// Refuses an import once it passes the policy's threshold while imports need step-up: an
    /// import cannot carry a code or wait for an approval (its chunks commit as they arrive).
    pub(super) fn import_allowed(&self, items_so_far: usize) -> Result<(), Status> {
        let policy = self.sm.with_governance(|g| g.policy().into_owned());
        let need = policy.requirement(Operation::Import);
        if need == Requirement::None || items_so_far as u64 <= policy.import_threshold {
            return Ok(());
        }
        Err(Status::failed_precondition(format!(
            "imports of more than {} items need {need} step-up (step-up policy: import {need}), \
             which an import cannot carry: split the file into parts of at most {} lines, or \
             have an admin change the policy with `recall policy set import none` (itself \
             subject to the policy)",
            policy.import_threshold, policy.import_threshold
        )))
    }

    pub(super) async fn approve_request(
        &self,
        req: Request<pb::ApproveRequest>,
    ) -> Result<TonicResponse<pb::WriteReply>, Status> {
        let caller = self.allow(&req, Role::Viewer, "approving a request")?;
        self.rate.check(&caller.actor(), 1)?;
        let req = req.into_inner();
        let id =
            RequestId::parse(&req.id).map_err(|e| Status::invalid_argument(format!("id: {e}")))?;
        let command_hash: [u8; 32] = req.command_hash.as_slice().try_into().map_err(|_| {
            Status::invalid_argument(
                "command_hash: 32 bytes, the BLAKE3 of the change that ListPending shows",
            )
        })?;
        check_reason(&req.reason)?;
        let approval = Approval {
            meta: meta(&caller, String::new(), req.reason),
            id,
            command_hash,
        };
        let started = std::time::Instant::now();
        let r = self
            .writer
            .write_whole(Write::Approve(approval))
            .await
            .map_err(|e| write_status(e, crate::wire::Shape::Revoke))?;
        self.finish(r, None, started).await
    }

    pub(super) fn pending_requests(
        &self,
        req: Request<pb::ListPendingRequest>,
    ) -> Result<TonicResponse<pb::ListPendingReply>, Status> {
        self.allow(&req, Role::Viewer, "listing pending requests")?;
        let now = crate::node::clock::system()();
        let mut requests: Vec<pb::PendingRequest> = self.sm.with_governance(|g| {
            g.pending
                .values()
                .filter(|p| p.expires_at >= now)
                .map(|p| pb::PendingRequest {
                    id: p.id.to_string(),
                    version: p.version,
                    proposer: p.proposer().to_owned(),
                    command: p.change.summary(),
                    reason: p
                        .change
                        .meta()
                        .map(|m| m.reason.clone())
                        .unwrap_or_default(),
                    proposed_at_ms: p.change.meta().map_or(0, |m| m.at.as_millis()),
                    expires_at_ms: p.expires_at.as_millis(),
                    command_hash: p.command_hash.to_vec(),
                    approver_role: p.change.needs().unwrap_or(Role::Admin).to_string(),
                })
                .collect()
        });
        requests.sort_by_key(|r| r.version);
        Ok(TonicResponse::new(pb::ListPendingReply { requests }))
    }

    pub(super) async fn change_policy(
        &self,
        req: Request<pb::SetPolicyRequest>,
    ) -> Result<TonicResponse<pb::WriteReply>, Status> {
        let caller = self.allow(&req, Role::Admin, "changing the step-up policy")?;
        self.rate.check(&caller.actor(), 1)?;
        let otp = otp_of(&req);
        let req = req.into_inner();
        let operation = Operation::parse(&req.operation).ok_or_else(|| {
            Status::invalid_argument(format!(
                "operation: unknown operation {:?}; expected one of {}",
                req.operation,
                Operation::ALL.map(Operation::name).join(", ")
            ))
        })?;
        let requirement = Requirement::parse(&req.requirement).ok_or_else(|| {
            Status::invalid_argument(format!(
                "requirement: unknown requirement {:?}; expected none, otp or two_person",
                req.requirement
            ))
        })?;
        check_reason(&req.reason)?;
        let change = PolicyChange {
            meta: meta(&caller, String::new(), req.reason),
            operation,
            requirement,
        };
        self.gated(Change::Policy(change), otp, None).await
    }

    pub(super) fn policy(
        &self,
        req: Request<pb::GetPolicyRequest>,
    ) -> Result<TonicResponse<pb::PolicyReply>, Status> {
        self.allow(&req, Role::Viewer, "reading the step-up policy")?;
        let policy = self.sm.with_governance(|g| g.policy().into_owned());
        Ok(TonicResponse::new(pb::PolicyReply {
            rules: Operation::ALL
                .into_iter()
                .map(|o| pb::PolicyRule {
                    operation: o.name().into(),
                    requirement: policy.requirement(o).name().into(),
                })
                .collect(),
            import_threshold: policy.import_threshold,
            approval_window_ms: policy.approval_window_ms,
            summary: policy.describe(),
        }))
    }

    pub(super) async fn enroll(
        &self,
        req: Request<pb::EnrollOtpRequest>,
    ) -> Result<TonicResponse<pb::WriteReply>, Status> {
        let caller = self.allow(&req, Role::Viewer, "enrolling a one-time-code secret")?;
        self.rate.check(&caller.actor(), 1)?;
        let current_code = otp_of(&req);
        let req = req.into_inner();
        let secret: [u8; SECRET_LEN] = req.secret.as_slice().try_into().map_err(|_| {
            Status::invalid_argument(format!(
                "secret: {SECRET_LEN} random bytes (`recall operator enroll-otp` makes them)"
            ))
        })?;
        if secret.iter().all(|b| *b == secret[0]) {
            return Err(Status::invalid_argument(
                "secret: these bytes are not random; generate the secret with a CSPRNG",
            ));
        }
        let enrollment = OtpEnrollment {
            meta: meta(&caller, String::new(), "one-time-code enrollment".into()),
            secret: OtpSecret(secret),
            current_code,
        };
        let started = std::time::Instant::now();
        let r = self
            .writer
            .write_whole(Write::EnrollOtp(enrollment))
            .await
            .map_err(|e| write_status(e, crate::wire::Shape::Revoke))?;
        self.finish(r, None, started).await
    }
}

fn check_reason(reason: &str) -> Result<(), Status> {
    let max = recall_core::validate::MAX_REASON_LEN;
    if reason.len() > max {
        return Err(Status::invalid_argument(format!(
            "reason: at most {max} bytes"
        )));
    }
    Ok(())
}
