//! How one applied entry changes the state beyond the set's own commands: the seed request,
//! operator changes under their step-up rules, and the record (with its command) each leaves in
//! the audit history.

use recall_core::FingerprintSeed;

use super::{Out, RECENT_HEADS, State};
use crate::node::access::Role;
use crate::node::audit::{AuditHead, AuditRecord};
use crate::node::history::Body;
use crate::node::raft::Response;
use crate::node::raft::snapshot::StateMachineError;
use crate::node::stepup::{Change, Operation, Refused, Requirement, StepUpPolicy};

impl State {
    /// Fixes the seed (see [`State::init`]); when this entry is the one that fixes it, binds the
    /// first admins and, for a cluster created with one, sets the step-up policy.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn bootstrap(
        &mut self,
        index: u64,
        seed: FingerprintSeed,
        admins: Vec<String>,
        at: recall_core::Timestamp,
        policy: Option<StepUpPolicy>,
        response: &mut Response,
        out: &mut Out,
    ) -> Result<(), StateMachineError> {
        if !self.init(index, seed, response)? {
            return Ok(());
        }
        let admins: Vec<String> = if self.roles.is_empty() {
            admins
                .into_iter()
                .filter(|a| crate::transport::Identity::parse(a).is_ok())
                .collect()
        } else {
            Vec::new()
        };
        for a in &admins {
            self.roles.insert(a.clone(), Role::Admin);
        }
        if policy.is_some() && self.gov.policy.is_none() {
            self.gov.policy.clone_from(&policy);
        }
        if !admins.is_empty() || policy.is_some() {
            let record = AuditRecord::of_bootstrap(
                &self.head.hash,
                index,
                at,
                seed,
                &admins,
                policy.as_ref(),
            );
            let body = Body::Bootstrap {
                seed,
                admins,
                policy,
            };
            self.record(record, body, out);
        }
        Ok(())
    }

    /// Applies an operator change if its step-up holds: `code` is the one-time code it came
    /// with, if any. A change that does not hold changes nothing but the version, and the
    /// response says why.
    pub(super) fn change(
        &mut self,
        index: u64,
        change: Change,
        code: Option<&str>,
        response: &mut Response,
        out: &mut Out,
    ) -> Result<(), StateMachineError> {
        let admitted = match code {
            None => self.gov.admit_direct(&change, &self.roles),
            Some(code) => self.gov.admit_otp(&change, code, &self.roles),
        }
        .and_then(|()| self.admissible(&change));
        if let Err(r) = admitted {
            self.advance(index)?;
            response.refused = Some(r.0);
            return Ok(());
        }
        let how = if code.is_some() {
            "with a one-time code"
        } else if crate::node::stepup::waived(&change, &self.roles)
            && self.gov.policy().requirement(Operation::Roles) == Requirement::TwoPerson
        {
            "two_person waived: the cluster's only admin grants a role"
        } else {
            ""
        };
        let record = AuditRecord::of_change(&self.head.hash, index, &change, how);
        let body = Body::of_change(&change);
        self.effect(index, change, (record, body), response, out)
    }

    /// What must still hold when a change is applied, whoever admitted it: the cluster keeps
    /// an admin.
    pub(super) fn admissible(&self, change: &Change) -> Result<(), Refused> {
        if let Change::Roles(r) = change {
            let admins = self.roles.values().filter(|x| **x == Role::Admin).count();
            if self.roles.get(&r.identity) == Some(&Role::Admin)
                && r.role != Some(Role::Admin)
                && admins <= 1
            {
                return Err(Refused(format!(
                    "{} is the cluster's only admin: grant admin to another operator first",
                    r.identity
                )));
            }
        }
        Ok(())
    }

    /// Applies an admitted change and extends the audit chain with its `record`.
    pub(super) fn effect(
        &mut self,
        index: u64,
        change: Change,
        (record, body): (AuditRecord, Body),
        response: &mut Response,
        out: &mut Out,
    ) -> Result<(), StateMachineError> {
        match change {
            Change::Command(cmd) => {
                let applied = self.set.apply(index, &cmd)?;
                if let Some(delta) = applied.delta {
                    self.window.push(delta);
                }
                response.added = applied.added;
                response.already_present = applied.already_present;
                response.removed = applied.removed;
                response.not_found = applied.not_found;
            }
            Change::Roles(change) => {
                self.advance(index)?;
                match change.role {
                    Some(r) => self.roles.insert(change.identity.clone(), r),
                    None => self.roles.remove(&change.identity),
                };
                response.added = 1;
            }
            Change::Policy(change) => {
                self.advance(index)?;
                self.gov.set_policy(&change);
                response.added = 1;
            }
            // Recorded here; the operator's node (directly) or the leader (after an approval)
            // carries it out through Raft.
            Change::Membership(_) => {
                self.advance(index)?;
                response.added = 1;
            }
        }
        self.record(record, body, out);
        Ok(())
    }

    /// Extends the audit chain with `record`, whose command is `body`.
    pub(super) fn record(&mut self, record: AuditRecord, body: Body, out: &mut Out) {
        self.head = AuditHead {
            version: record.version,
            hash: record.hash,
        };
        self.recent.push_back((record.version, record.hash));
        while self.recent.len() > RECENT_HEADS {
            self.recent.pop_front();
        }
        out.records.push((record, body));
    }
}
