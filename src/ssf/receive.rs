//! One delivery, whichever way it came: verified, checked against the deliveries already
//! handled, mapped to an action, written to the cluster, then remembered. The outcome tells
//! the transmitter what to do: nothing (accepted), fix something (refused, with the RFC 8935
//! code), or deliver again later (the cluster did not take the write).

use std::sync::Arc;

use prometheus::{IntCounterVec, IntGauge, Registry};
use recall_core::Timestamp;

use super::config::SsfConfig;
use super::event::{self, Action};
use super::seen::Seen;
use super::set::{Delivery, SetError, Transmitters, VerifiedSet};
use crate::cluster_client::{ClusterClient, WriteFailure, status_error};
use crate::node::clock::Clock;
use crate::proto as pb;
use crate::wire;

/// What became of a delivery.
#[derive(Debug)]
pub enum Outcome {
    /// Verified and acted on (or nothing was needed); the summary says what.
    Accepted {
        /// The SET's `jti`.
        jti: String,
        /// What was done, e.g. "revoked session https://idp.example/s-42 at version 7".
        summary: String,
    },
    /// Verified, and handled before: nothing written again.
    Duplicate {
        /// The SET's `jti`.
        jti: String,
    },
    /// Refused: the transmitter is told why and must not send it again as is.
    Refused(SetError),
    /// Verified, but not written (the cluster is unreachable, or refused our identity): the
    /// transmitter should deliver it again later.
    Retry(String),
}

impl Outcome {
    /// The label of the metric.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Accepted { .. } => "accepted",
            Outcome::Duplicate { .. } => "duplicate",
            Outcome::Refused(_) => "refused",
            Outcome::Retry(_) => "retry",
        }
    }
}

/// The receiver's counters.
pub struct SsfMetrics {
    registry: Registry,
    sets: IntCounterVec,
    events: IntCounterVec,
    refused: IntCounterVec,
    in_progress: IntGauge,
}

impl SsfMetrics {
    fn new() -> Self {
        let registry = crate::metrics::registry();
        let sets = crate::metrics::counters(
            "recall_ssf_sets_total",
            "Security Event Tokens received, by delivery and outcome",
            &["delivery", "outcome"],
        );
        let events = crate::metrics::counters(
            "recall_ssf_events_total",
            "Verified events acted on, by event and action",
            &["event", "action"],
        );
        let refused = crate::metrics::counters(
            "recall_ssf_refused_total",
            "Security Event Tokens refused, by RFC 8935 error code",
            &["err"],
        );
        for c in [&sets, &events, &refused] {
            crate::metrics::register(&registry, c.clone());
        }
        let in_progress = IntGauge::new(
            "recall_ssf_deliveries_in_progress",
            "Deliveries being handled now (at most 64; a push past that is answered 503)",
        )
        .expect("a valid gauge");
        crate::metrics::register(&registry, in_progress.clone());
        Self {
            registry,
            sets,
            events,
            refused,
            in_progress,
        }
    }

    /// The registry, for `/metrics`.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// How many SETs had `outcome` by `delivery`.
    pub fn sets(&self, delivery: &str, outcome: &str) -> u64 {
        self.sets.with_label_values(&[delivery, outcome]).get()
    }
}

/// Deliveries handled at once; past it a push is answered 503 at once (the transmitter retries
/// later), so a flood of SETs cannot queue unbounded work or writes.
pub const MAX_IN_FLIGHT: usize = 64;

/// The receiving end shared by the push endpoint and the pollers.
pub struct Receiver {
    in_flight: tokio::sync::Semaphore,
    transmitters: Transmitters,
    seen: Seen,
    cluster: ClusterClient,
    clock: Clock,
    metrics: SsfMetrics,
}

impl Receiver {
    /// Loads the transmitters' keys and opens the store of deliveries handled.
    pub async fn new(
        config: &SsfConfig,
        cluster: ClusterClient,
        clock: Clock,
    ) -> anyhow::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            in_flight: tokio::sync::Semaphore::new(MAX_IN_FLIGHT),
            transmitters: Transmitters::start(config).await?,
            seen: Seen::open(&config.data_dir)?,
            cluster,
            clock,
            metrics: SsfMetrics::new(),
        }))
    }

    /// The counters.
    pub fn metrics(&self) -> &SsfMetrics {
        &self.metrics
    }

    /// The transmitters.
    pub fn transmitters(&self) -> &Transmitters {
        &self.transmitters
    }

    fn now(&self) -> i64 {
        (self.clock)().as_millis().div_euclid(1000)
    }

    /// Handles one SET. A push finding [`MAX_IN_FLIGHT`] deliveries in progress is told to
    /// retry; a poller waits its turn.
    pub async fn deliver(&self, set: &str, delivery: Delivery<'_>) -> Outcome {
        let how = match delivery {
            Delivery::Push { .. } => "push",
            Delivery::Poll => "poll",
        };
        let permit = match delivery {
            Delivery::Push { .. } => self.in_flight.try_acquire().ok(),
            Delivery::Poll => self.in_flight.acquire().await.ok(),
        };
        let outcome = match permit {
            Some(_permit) => {
                self.metrics.in_progress.inc();
                let outcome = self.handle(set, delivery).await;
                self.metrics.in_progress.dec();
                outcome
            }
            None => Outcome::Retry(format!(
                "{MAX_IN_FLIGHT} deliveries are already in progress"
            )),
        };
        match &outcome {
            Outcome::Accepted { jti, summary } => {
                tracing::info!(delivery = how, jti = %jti, "SET accepted: {summary}")
            }
            Outcome::Duplicate { jti } => {
                tracing::info!(delivery = how, jti = %jti, "SET delivered again: already handled")
            }
            Outcome::Refused(e) => {
                self.metrics
                    .refused
                    .with_label_values(&[e.code.as_str()])
                    .inc();
                tracing::warn!(delivery = how, "SET refused: {e}")
            }
            Outcome::Retry(why) => {
                tracing::error!(
                    delivery = how,
                    "SET not written, to be delivered again: {why}"
                )
            }
        }
        self.metrics
            .sets
            .with_label_values(&[how, outcome.label()])
            .inc();
        outcome
    }

    async fn handle(&self, set: &str, delivery: Delivery<'_>) -> Outcome {
        let now = self.now();
        let (verified, t) = match self.transmitters.verify(set, delivery, now).await {
            Ok(v) => v,
            Err(e) => return Outcome::Refused(e),
        };
        match self.seen.contains(&verified.iss, &verified.jti).await {
            Ok(true) => return Outcome::Duplicate { jti: verified.jti },
            Ok(false) => {}
            Err(e) => return Outcome::Retry(format!("the store of deliveries failed: {e:#}")),
        }
        let action = match event::action(&verified, &t.config, now) {
            Ok(a) => a,
            Err(e) => return Outcome::Refused(e),
        };
        let name = event::short_name(&verified.event);
        let summary = match self.write(&verified, &action).await {
            Ok(summary) => summary,
            Err(Written::Refused(e)) => return Outcome::Refused(e),
            Err(Written::Retry(why)) => return Outcome::Retry(why),
        };
        let kind = match &action {
            Action::Revoke { .. } => "revoke_session",
            Action::Rule { .. } => "subject_rule",
            Action::Nothing { .. } => "none",
        };
        self.metrics.events.with_label_values(&[name, kind]).inc();
        let forget_at = verified.iat + (t.config.max_age_s + t.config.leeway_s) as i64 + 1;
        if let Err(e) = self
            .seen
            .insert(&verified.iss, &verified.jti, forget_at)
            .await
        {
            // The write is in; a redelivery only finds it in effect.
            tracing::warn!(jti = %verified.jti, "cannot record the delivery as handled: {e:#}");
        }
        Outcome::Accepted {
            jti: verified.jti,
            summary,
        }
    }

    /// Writes `action`; the audit history records the receiver's identity as the actor, the
    /// transmitter as whom it acted for, and the SET's `jti` and event as the reason.
    async fn write(&self, set: &VerifiedSet, action: &Action) -> Result<String, Written> {
        let on_behalf_of = clip(&format!("ssf:{}", set.iss), 256);
        let reason = clip(
            &format!(
                "SSF SET jti={} event={}",
                set.jti,
                event::short_name(&set.event)
            ),
            1024,
        );
        let result = match action {
            Action::Nothing { why } => return Ok(why.clone()),
            Action::Revoke { key, expires_at } => {
                let req = pb::RevokeRequest {
                    items: vec![pb::Revocation {
                        key: Some(wire::key_to_wire(key)),
                        expires_at_ms: Some(expires_at.as_millis()),
                    }],
                    actor: on_behalf_of,
                    reason,
                    wait: None,
                };
                self.cluster
                    .call(|mut c| {
                        let req = req.clone();
                        async move { c.revoke(req).await }
                    })
                    .await
                    .map(|r| {
                        format!(
                            "revoked session {:?} of {:?} at version {}",
                            key.value,
                            key.namespace,
                            r.get_ref().version
                        )
                    })
            }
            Action::Rule {
                scope,
                not_before,
                expires_at,
            } => {
                let req = pb::AddRuleRequest {
                    rule: Some(pb::Rule {
                        scope: Some(wire::scope_to_wire(scope)),
                        not_before_ms: not_before.as_millis(),
                        expires_at_ms: Some(expires_at.as_millis()),
                    }),
                    actor: on_behalf_of,
                    reason,
                    wait: None,
                };
                self.cluster
                    .call(|mut c| {
                        let req = req.clone();
                        async move { c.add_rule(req).await }
                    })
                    .await
                    .map(|r| {
                        format!(
                            "recalled the tokens of subject {:?} of {:?} issued before {} at \
                             version {}",
                            scope.value,
                            scope.namespace,
                            Timestamp::as_millis(*not_before) / 1000,
                            r.get_ref().version
                        )
                    })
            }
        };
        result.map_err(|f| match f {
            WriteFailure::Refused(s) if s.code() == tonic::Code::InvalidArgument => {
                Written::Refused(SetError::new(
                    super::set::ErrorCode::InvalidRequest,
                    format!(
                        "the cluster refused what the event names: {}",
                        status_error(s)
                    ),
                ))
            }
            WriteFailure::Refused(s) => Written::Retry(format!(
                "the cluster refused the receiver's write ({}); check the receiver identity's \
                 role (it needs `recaller`) and the step-up policy",
                status_error(s)
            )),
            WriteFailure::GaveUp(e) => Written::Retry(format!("{e:#}")),
        })
    }

    /// Forgets deliveries past their window.
    pub async fn prune(&self) -> anyhow::Result<usize> {
        self.seen.prune(self.now()).await
    }
}

enum Written {
    Refused(SetError),
    Retry(String),
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn clip(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}
