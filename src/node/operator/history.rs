//! The history calls of the operator API: the export, the checkpoint keys, and what `Status`
//! says about the history (see [`crate::node::history`]).

use std::pin::Pin;

use futures::Stream;
use tonic::{Request, Response as TonicResponse, Status};

use super::OperatorService;
use crate::node::access::Role;
use crate::proto as pb;

/// The stream of export lines.
pub type ExportStream = Pin<Box<dyn Stream<Item = Result<pb::AuditExportLine, Status>> + Send>>;

impl OperatorService {
    pub(super) async fn export(
        &self,
        req: Request<pb::AuditExportRequest>,
    ) -> Result<TonicResponse<ExportStream>, Status> {
        self.allow(&req, Role::Viewer, "exporting the audit history")?;
        let req = req.into_inner();
        let from = req.from_version.unwrap_or(0);
        let to = req.to_version.unwrap_or(u64::MAX);
        if from > to {
            return Err(Status::invalid_argument(
                "from_version must not be after to_version",
            ));
        }
        let lines = self
            .sm
            .audit_export(from, to)
            .await
            .map_err(|e| Status::internal(format!("cannot read the audit history: {e}")))?;
        let out = lines.into_iter().map(|l| {
            serde_json::to_string(&l)
                .map(|line| pb::AuditExportLine { line })
                .map_err(|e| Status::internal(format!("cannot encode the export: {e}")))
        });
        Ok(TonicResponse::new(Box::pin(futures::stream::iter(
            out.collect::<Vec<_>>(),
        ))))
    }

    pub(super) fn keys(
        &self,
        req: Request<pb::AuditKeysRequest>,
    ) -> Result<TonicResponse<pb::AuditKeysReply>, Status> {
        self.allow(&req, Role::Viewer, "reading the checkpoint keys")?;
        let lines = self.sm.with_witnesses(|w| {
            w.keys
                .iter()
                .map(|(n, k)| format!("{n} {}", hex::encode(k)))
                .collect()
        });
        Ok(TonicResponse::new(pb::AuditKeysReply { lines }))
    }

    /// The history fields of `Status`.
    pub(super) fn history_status(&self) -> pb::StatusReply {
        let (head, _) = self.sm.checkpoint_state();
        let alarm = self.sm.alarm().borrow().clone().unwrap_or_default();
        self.sm.with_witnesses(|w| pb::StatusReply {
            history_version: head.version,
            history_head: head.hash.to_vec(),
            witnessed_version: w.witnessed.as_ref().map_or(0, |c| c.version),
            witnessed_head: w
                .witnessed
                .as_ref()
                .map_or_else(Vec::new, |c| c.head.to_vec()),
            witnessed_by: w
                .witnessed
                .as_ref()
                .map_or_else(Vec::new, |c| c.signatures.iter().map(|s| s.node).collect()),
            history_alarm: alarm,
            disagreements: w
                .disagreements
                .values()
                .map(|d| {
                    format!(
                        "node {} signed head {} at version {}, which a quorum did not",
                        d.node,
                        &hex::encode(d.head)[..16],
                        d.version
                    )
                })
                .collect(),
            ..Default::default()
        })
    }
}
