//! The gRPC face of a sidecar: `recall.v1.Check`, single and batch, and Envoy's ext_authz
//! ([`super::ext_authz`]) on the same listener. Facts are converted in [`crate::wire`]; a batch
//! is answered from one published state, so every local reply has the same version (a lite-mode
//! hit a node confirmed carries the node's, never older).

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

use crate::proto as pb;
use crate::proto::check_server::{Check, CheckServer};
use crate::subscriber::Subscriber;
use crate::wire;
use envoy_types::ext_authz::v3::pb::AuthorizationServer;

/// The largest request or reply: a full batch of facts with long values fits.
const MAX_MESSAGE_BYTES: usize = 64 << 20;
/// The largest ext_authz request: Envoy sends the request's headers (and a body only if told to).
const MAX_EXT_AUTHZ_BYTES: usize = 1 << 20;

/// The `Check` service over an embedded subscriber.
pub struct CheckService {
    subscriber: Arc<Subscriber>,
    metrics: Arc<super::metrics::SidecarMetrics>,
}

impl CheckService {
    /// Answers from `subscriber`, counting answers in `metrics`.
    pub fn new(subscriber: Arc<Subscriber>, metrics: Arc<super::metrics::SidecarMetrics>) -> Self {
        Self {
            subscriber,
            metrics,
        }
    }
}

#[tonic::async_trait]
impl Check for CheckService {
    async fn check(
        &self,
        request: Request<pb::CheckRequest>,
    ) -> Result<Response<pb::CheckReply>, Status> {
        let request = request.into_inner();
        let facts = wire::facts_from_wire("facts", request.facts.as_ref())?;
        let answer = self.subscriber.check_confirmed(&facts).await;
        self.metrics.claims(&answer);
        Ok(Response::new(wire::reply_to_wire(&answer, &facts)))
    }

    async fn check_batch(
        &self,
        request: Request<pb::CheckBatchRequest>,
    ) -> Result<Response<pb::CheckBatchReply>, Status> {
        let request = request.into_inner();
        let facts = wire::batch_from_wire(&request.facts)?;
        let sub = &self.subscriber;
        let checked = sub.reader().check_tokens(&facts);
        // One deadline for every lite-mode hit of the batch, so a batch waits on an unreachable
        // cluster no longer than a single check does.
        let deadline = sub.confirm_deadline();
        let mut replies = Vec::with_capacity(facts.len());
        for (c, f) in checked.into_iter().zip(&facts) {
            let answer = sub.confirmed(f, c, deadline).await;
            self.metrics.claims(&answer);
            replies.push(wire::reply_to_wire(&answer, f));
        }
        Ok(Response::new(pb::CheckBatchReply { replies }))
    }
}

/// Serves `Check` on `listener` until `shutdown` resolves.
pub async fn serve(
    bearer: Arc<super::bearer::Bearer>,
    listener: TcpListener,
    tls: Option<crate::transport::Security>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let service = CheckServer::new(CheckService::new(
        bearer.subscriber.clone(),
        bearer.metrics.clone(),
    ))
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let ext_authz = AuthorizationServer::new(super::ext_authz::ExtAuthz::new(bearer))
        .max_decoding_message_size(MAX_EXT_AUTHZ_BYTES);
    let router = crate::transport::grpc_server()
        .add_service(service)
        .add_service(ext_authz);
    crate::transport::serve_local_grpc(router, listener, tls, shutdown)
        .await
        .context("the gRPC server failed")
}
