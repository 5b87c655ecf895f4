//! `recall.v1.Sightings` on a node's client port: subscribers report, operators list.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::Store;
use crate::node::access::{self, Caller, Role};
use crate::node::clock::Clock;
use crate::node::metrics::NodeMetrics;
use crate::node::peers::Peers;
use crate::node::raft::StateMachine;
use crate::proto as pb;
use crate::proto::sightings_server::Sightings;
use crate::transport::Principal;

/// The sightings service of one node.
pub struct SightingsService {
    pub(crate) store: Arc<Store>,
    pub(crate) sm: StateMachine,
    pub(crate) peers: Arc<Peers>,
    pub(crate) clock: Clock,
    pub(crate) metrics: Arc<NodeMetrics>,
    /// One report is recorded at a time (each on a blocking thread); the others wait their turn
    /// without holding a thread.
    pub(crate) recording: Arc<tokio::sync::Semaphore>,
}

/// The subscriber id of the caller, refused unless it is a subscriber.
fn reporter<T>(req: &Request<T>) -> Result<String, Status> {
    let peer = crate::transport::peer(req)?;
    match peer.identity.as_ref().map(|id| &id.principal) {
        Some(Principal::Subscriber(id)) => Ok(id.clone()),
        // Only the plaintext benchmark build has callers without identity.
        None => Ok("unauthenticated".into()),
        Some(_) => Err(Status::permission_denied(format!(
            "Report is for subscribers (spiffe://DOMAIN/subscriber/ID); {} is not one: \
             sightings are reported by sidecars and embedded subscribers",
            Caller::of(peer).actor()
        ))),
    }
}

#[tonic::async_trait]
impl Sightings for SightingsService {
    async fn report(
        &self,
        request: Request<pb::ReportSightingsRequest>,
    ) -> Result<Response<pb::ReportSightingsReply>, Status> {
        let subscriber = reporter(&request)?;
        let req = request.into_inner();
        if let Err(e) = super::validate(&req, (self.clock)().as_millis()) {
            self.metrics
                .sighting_reports
                .with_label_values(&["refused"])
                .inc();
            tracing::warn!(%subscriber, error = %e.message(), "refused a sightings report");
            return Err(e);
        }
        // Recording takes the table's lock for the report's length: on a blocking thread, so
        // a node shown revoked credentials in bulk keeps its Raft and streams moving.
        let store = Arc::clone(&self.store);
        let turn = Arc::clone(&self.recording)
            .acquire_owned()
            .await
            .map_err(|_| Status::unavailable("the node is shutting down"))?;
        let (accepted, held) = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let accepted = store.record(&subscriber, req);
            (accepted, store.held())
        })
        .await
        .map_err(|e| Status::internal(format!("recording the sightings failed: {e}")))?;
        self.metrics
            .sighting_reports
            .with_label_values(&["accepted"])
            .inc();
        self.metrics.sightings_held.set(held as i64);
        Ok(Response::new(pb::ReportSightingsReply { accepted }))
    }

    async fn list(
        &self,
        request: Request<pb::ListSightingsRequest>,
    ) -> Result<Response<pb::ListSightingsReply>, Status> {
        let caller = Caller::of(crate::transport::peer(&request)?);
        self.sm
            .with_roles(|b| access::require(b, &caller, Role::Viewer, "List sightings"))?;
        let req = request.into_inner();
        let limit = super::limit(&req)?;
        let ask = pb::ListSightingsRequest {
            since_ms: req.since_ms,
            limit,
        };
        let mut parts = vec![self.store.list(req.since_ms, limit)];
        let answers = self
            .peers
            .ask_all(|mut c| async move { Ok(c.node_sightings(ask).await?.into_inner()) })
            .await;
        parts.extend(answers.answered.into_iter().map(|(_, r)| r));
        Ok(Response::new(super::merge(parts, answers.silent, limit)))
    }
}
