//! Poll delivery (RFC 8936): for each transmitter with a `poll_url`, a poller `POST`s
//! `{"ack", "setErrs", "maxEvents", "returnImmediately": true}` and handles the SETs it gets
//! back. A SET handled (or refused) is acknowledged (or reported in `setErrs`) in the next
//! poll; one the cluster did not take is neither, so the transmitter hands it out again. After
//! an answer with `moreAvailable` the next poll follows at once; otherwise after
//! `poll_interval_s` (sooner while acknowledgements are waiting).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header;
use serde::Deserialize;
use serde_json::{Value, json};

use super::config::{DEFAULT_MAX_SET_BYTES, TransmitterConfig, read_token};
use super::receive::{Outcome, Receiver};
use super::set::Delivery;

/// How long one poll may take.
const POLL_TIMEOUT: Duration = Duration::from_secs(30);

type Client = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// A poll's answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PollReply {
    #[serde(default)]
    sets: BTreeMap<String, Value>,
    #[serde(default)]
    more_available: bool,
}

/// The poller of one transmitter.
pub struct Poller {
    url: String,
    token: Option<String>,
    client: Client,
    interval: Duration,
    max_events: u32,
    receiver: Arc<Receiver>,
    acks: Vec<String>,
    errs: serde_json::Map<String, Value>,
}

impl Poller {
    /// The poller of `t`, or `None` when it only pushes.
    pub fn new(t: &TransmitterConfig, receiver: Arc<Receiver>) -> anyhow::Result<Option<Self>> {
        let Some(url) = &t.poll_url else {
            return Ok(None);
        };
        let token = match &t.poll_token_file {
            Some(p) => Some(read_token(
                &format!("transmitter {:?}: poll_token_file", t.issuer),
                p,
            )?),
            None => None,
        };
        let client = crate::token::jwks::https_client(t.ca.as_deref())
            .with_context(|| format!("transmitter {:?}: poll_url", t.issuer))?;
        Ok(Some(Self {
            url: url.clone(),
            token,
            client,
            interval: Duration::from_secs(t.poll_interval_s),
            max_events: t.poll_max_events,
            receiver,
            acks: vec![],
            errs: serde_json::Map::new(),
        }))
    }

    /// Polls until the task is dropped.
    pub async fn run(mut self) {
        let mut backoff = Duration::from_millis(500);
        loop {
            let pause = match self.poll_once().await {
                Ok(more) => {
                    backoff = Duration::from_millis(500);
                    if more || !self.acks.is_empty() || !self.errs.is_empty() {
                        Duration::ZERO
                    } else {
                        self.interval
                    }
                }
                Err(e) => {
                    tracing::warn!(url = %self.url, "SSF poll failed: {e:#}; retrying in {backoff:?}");
                    let b = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    b
                }
            };
            tokio::time::sleep(pause).await;
        }
    }

    /// One poll; returns whether the transmitter has more. Acknowledgements are dropped only
    /// once the transmitter answered the request carrying them.
    pub async fn poll_once(&mut self) -> anyhow::Result<bool> {
        let body = json!({
            "ack": self.acks,
            "setErrs": self.errs,
            "maxEvents": self.max_events,
            "returnImmediately": true,
        });
        let mut req = hyper::Request::post(&self.url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!("recall/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(t) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req.body(Full::new(Bytes::from(body.to_string())))?;
        let limit = self.max_events as usize * (DEFAULT_MAX_SET_BYTES * 2) + 64 * 1024;
        let work = async {
            let resp = self.client.request(req).await?;
            let status = resp.status();
            let body = http_body_util::Limited::new(resp.into_body(), limit)
                .collect()
                .await
                .map_err(|e| anyhow::anyhow!("reading the answer: {e} (limit {limit} bytes)"))?
                .to_bytes();
            if !status.is_success() {
                let shown = String::from_utf8_lossy(&body[..body.len().min(512)]).to_string();
                anyhow::bail!("the transmitter answered {status}: {shown}");
            }
            anyhow::Ok(body)
        };
        let body = tokio::time::timeout(POLL_TIMEOUT, work)
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {POLL_TIMEOUT:?}"))??;
        let reply: PollReply = serde_json::from_slice(&body)
            .context("the answer is not an RFC 8936 poll response ({\"sets\": {...}})")?;
        self.acks.clear();
        self.errs.clear();
        if reply.sets.len() > self.max_events as usize {
            tracing::warn!(
                url = %self.url,
                "the transmitter sent {} SETs for maxEvents {}",
                reply.sets.len(),
                self.max_events
            );
        }
        for (jti, set) in reply.sets {
            let Value::String(set) = set else {
                self.errs.insert(
                    jti,
                    json!({"err": "invalid_request", "description": "not a SET string"}),
                );
                continue;
            };
            match self.receiver.deliver(set.trim(), Delivery::Poll).await {
                Outcome::Accepted { .. } | Outcome::Duplicate { .. } => self.acks.push(jti),
                Outcome::Refused(e) => {
                    self.errs.insert(
                        jti,
                        json!({"err": e.code.as_str(), "description": e.description}),
                    );
                }
                Outcome::Retry(_) => {}
            }
        }
        Ok(reply.more_available)
    }
}
