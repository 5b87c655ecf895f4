//! `recall.v1.Check` on a node's client port: the same check a sidecar answers, from the node's
//! applied exact state, so a lite-mode sidecar can confirm a Bloom filter hit. Subscribers and
//! operators with a role may ask (`access::require_checker`); the answer says whether the node
//! can vouch that its state is current (`stale`), and the caller decides what a stale answer is
//! worth. Every call is counted (`recall_check_calls_total`), so an operator sees how often the
//! lite fleet needs the cluster.

use std::sync::Arc;

use recall_core::{Status, TokenFacts};
use tonic::{Request, Response, Status as GrpcStatus};

use super::access::{self, Caller};
use super::contact::Contact;
use super::metrics::NodeMetrics;
use super::raft::{Raft, StateMachine};
use crate::proto as pb;
use crate::proto::check_server::Check;
use crate::subscriber::{Answer, Source, StalePolicy};
use crate::wire;

/// The largest `Check` or `CheckBatch` request a node takes.
pub const MAX_REQUEST_BYTES: usize = 4 << 20;

/// The check service of one node.
pub struct CheckService {
    pub(crate) sm: StateMachine,
    pub(crate) raft: Raft,
    pub(crate) contact: Arc<Contact>,
    /// How far the applied state may trail the known commit index and still be vouched for.
    pub(crate) max_lag: u64,
    pub(crate) metrics: Arc<NodeMetrics>,
}

impl CheckService {
    /// Refuses a caller that may not check, or a node that cannot answer.
    fn admit<T>(&self, req: &Request<T>, rpc: &'static str) -> Result<(), GrpcStatus> {
        let caller = Caller::of(crate::transport::peer(req)?);
        self.sm
            .with_roles(|b| access::require_checker(b, &caller))?;
        if let Some(why) = self.sm.alarm().borrow().clone() {
            return Err(GrpcStatus::unavailable(format!(
                "this node stopped answering: {why}; ask another node"
            )));
        }
        if !self.sm.seeded() {
            return Err(GrpcStatus::unavailable(
                "this node has not joined a cluster with a seed yet; retry, or ask another node",
            ));
        }
        self.metrics.check_calls.with_label_values(&[rpc]).inc();
        Ok(())
    }

    /// The replies for `facts`, all from one state.
    fn answer(&self, facts: &[TokenFacts<'_>]) -> Vec<pb::CheckReply> {
        let (verdicts, version) = self.sm.with_set(|set| {
            let fp = set.fingerprinter();
            let verdicts: Vec<_> = facts.iter().map(|f| fp.check_token(f, set)).collect();
            (verdicts, set.version())
        });
        let stale = self
            .contact
            .doubt(&self.raft, version, self.max_lag)
            .is_some();
        verdicts
            .into_iter()
            .zip(facts)
            .map(|(v, f)| {
                let status = v.status();
                let answer = Answer {
                    revoked: status != Status::Allowed,
                    status,
                    matches: v.matches,
                    version,
                    stale,
                    staleness_ms: Some(0),
                    policy: StalePolicy::FailOpen,
                    source: Source::Local,
                };
                wire::reply_to_wire(&answer, f)
            })
            .collect()
    }
}

#[tonic::async_trait]
impl Check for CheckService {
    async fn check(
        &self,
        request: Request<pb::CheckRequest>,
    ) -> Result<Response<pb::CheckReply>, GrpcStatus> {
        self.admit(&request, "check")?;
        let request = request.into_inner();
        let facts = wire::facts_from_wire("facts", request.facts.as_ref())?;
        let reply = self.answer(&[facts]).pop().expect("one reply per token");
        Ok(Response::new(reply))
    }

    async fn check_batch(
        &self,
        request: Request<pb::CheckBatchRequest>,
    ) -> Result<Response<pb::CheckBatchReply>, GrpcStatus> {
        self.admit(&request, "check_batch")?;
        let request = request.into_inner();
        let facts = wire::batch_from_wire(&request.facts)?;
        let replies = self.answer(&facts);
        Ok(Response::new(pb::CheckBatchReply { replies }))
    }
}
