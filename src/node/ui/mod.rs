//! `/ui` on a node's HTTP listener: a live page of the wave landing, embedded in the binary (no
//! CDN, no external request). The page polls `/ui/state` (JSON) twice a second and draws the
//! cluster's version as this node sees it, each of its subscribers' applied version and lag, the
//! share of them holding the latest change, and the recent waves with their time to consistency.
//!
//! Everything shown comes from this node; the page never writes. Subscriber ids are rendered as
//! text only, and a strict Content-Security-Policy allows nothing but this listener's own files.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::metrics::Live;

const INDEX: &str = include_str!("index.html");
const APP: &str = include_str!("app.js");
const STYLE: &str = include_str!("style.css");

/// The headers every `/ui` file carries.
const SECURITY: [(header::HeaderName, &str); 4] = [
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
         img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::CACHE_CONTROL, "no-store"),
];

fn file(content_type: &'static str, body: &'static str) -> Response {
    let mut r = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    for (name, value) in SECURITY {
        r.headers_mut()
            .insert(name, header::HeaderValue::from_static(value));
    }
    r
}

/// `GET /ui`.
pub async fn index() -> Response {
    file("text/html; charset=utf-8", INDEX)
}

/// `GET /ui/app.js`.
pub async fn app() -> Response {
    file("text/javascript; charset=utf-8", APP)
}

/// `GET /ui/style.css`.
pub async fn style() -> Response {
    file("text/css; charset=utf-8", STYLE)
}

/// What the page draws.
#[derive(Debug, Serialize)]
pub struct UiState {
    /// This node's id.
    pub node: u64,
    /// The leader this node knows, if any.
    pub leader: Option<u64>,
    /// The Raft term.
    pub term: u64,
    /// The version applied here.
    pub applied_version: u64,
    /// The commit index this node knows.
    pub committed_version: u64,
    /// The version of the last change to the set.
    pub last_change_version: u64,
    /// Revoked credentials held.
    pub revocations: usize,
    /// Whether this node's history disagrees with a quorum's.
    pub history_alarm: Option<String>,
    /// The live subscribers of this node.
    pub subscribers: Vec<UiSubscriber>,
    /// Changes still landing at this node's subscribers.
    pub waves_pending: usize,
    /// The most recent waves that landed, oldest first.
    pub waves: Vec<UiWave>,
}

/// One subscriber as the page shows it.
#[derive(Debug, Serialize)]
pub struct UiSubscriber {
    /// Its id.
    pub id: String,
    /// `full` or `lite`.
    pub mode: String,
    /// The version it acked.
    pub applied: u64,
    /// Changes applied here that it has not acked.
    pub lag: u64,
    /// When it last acked (Unix ms, node clock).
    pub last_ack_ms: i64,
}

/// One landed wave.
#[derive(Debug, Serialize)]
pub struct UiWave {
    /// The version of the change.
    pub version: u64,
    /// When this node applied it (Unix ms, node clock).
    pub applied_at_ms: i64,
    /// Milliseconds until every live subscriber of this node acked it.
    pub landed_ms: f64,
    /// How many subscribers it landed at.
    pub subscribers: usize,
}

/// `GET /ui/state`.
pub async fn state(State(live): State<Live>) -> Json<UiState> {
    Json(read(&live))
}

/// What the page shows, read now.
pub fn read(live: &Live) -> UiState {
    let m = live.raft.metrics().borrow().clone();
    let now = live.sm.applied();
    let subscribers = live
        .subscribers
        .list()
        .into_iter()
        .map(|s| UiSubscriber {
            lag: now.last_change.saturating_sub(s.applied),
            id: s.id,
            mode: s.mode,
            applied: s.applied,
            last_ack_ms: s.last_ack.as_millis(),
        })
        .collect();
    let waves = live
        .subscribers
        .landed()
        .into_iter()
        .map(|w| UiWave {
            version: w.version,
            applied_at_ms: w.applied_at.as_millis(),
            landed_ms: w.seconds * 1000.0,
            subscribers: w.subscribers,
        })
        .collect();
    UiState {
        node: m.id,
        leader: m.current_leader,
        term: m.current_term,
        applied_version: now.version,
        committed_version: live.contact.committed().max(now.version),
        last_change_version: now.last_change,
        revocations: live.sm.with_set(|s| s.len()),
        history_alarm: live.sm.alarm().borrow().clone(),
        subscribers,
        waves_pending: live.subscribers.waves_waiting().0,
        waves,
    }
}
