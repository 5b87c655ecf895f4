//! Sightings on a node: what its subscribers reported of revoked credentials still being
//! presented, held in memory within a bound (the least recently seen go first), and the
//! cluster-wide list an operator asks any node for, merged from every member.
//!
//! Sightings are telemetry, not replicated state: a node's are lost when it restarts, and a member
//! that does not answer is named in the list as silent (its subscribers' sightings are missing).
//!
//! - [`validate`]: what a report must be (every field, by name; nothing of a bad one is kept);
//! - [`store`]: the bounded table of one node, and members' lists merged into one;
//! - [`service`]: the gRPC service on the client port.

pub mod service;
pub mod store;

pub use store::{Store, merge};

use recall_core::{Kind, ScopeKind};
use tonic::Status;

use crate::proto as pb;
use crate::subscriber::sightings::{MAX_KIND, MAX_PER_REPORT, MAX_SERVICE, MAX_VALUE};

/// The most sightings a node holds (each at most about 1 KiB).
pub const MAX_HELD: usize = 50_000;
/// The most sightings one list returns.
pub const MAX_LIST: u32 = 5000;
/// How many a list returns when the request does not say.
pub const DEFAULT_LIST: u32 = 1000;
/// The largest report a node decodes (4096 sightings of the longest fields fit).
pub const MAX_REPORT_BYTES: usize = 4 << 20;
/// How far ahead of the node's clock a reported time may be (hosts' clocks differ; a time past
/// this is a broken clock, and would pin its row against eviction).
const MAX_AHEAD_MS: i64 = 24 * 3600 * 1000;

/// Refuses a report that is not one, naming the first bad field (`sightings[3].service`) and what
/// to do; `now_ms` is the node's clock.
pub fn validate(req: &pb::ReportSightingsRequest, now_ms: i64) -> Result<(), Status> {
    if req.sightings.len() > MAX_PER_REPORT {
        return Err(Status::invalid_argument(format!(
            "sightings: {} in one report, at most {MAX_PER_REPORT}; send them in several",
            req.sightings.len()
        )));
    }
    for (i, s) in req.sightings.iter().enumerate() {
        check_one(s, now_ms)
            .map_err(|e| Status::invalid_argument(format!("sightings[{i}].{e}")))?;
    }
    Ok(())
}

/// What is wrong with one sighting, as `field: why`.
fn check_one(s: &pb::Sighting, now_ms: i64) -> Result<(), String> {
    text("kind", &s.kind, MAX_KIND)?;
    text("namespace", &s.namespace, MAX_VALUE)?;
    text("service", &s.service, MAX_SERVICE)?;
    if s.value.len() > MAX_VALUE || s.value.chars().any(char::is_control) {
        return Err(format!(
            "value: at most {MAX_VALUE} bytes without control characters"
        ));
    }
    let needs_value = if s.rule {
        let scope = ScopeKind::ALL
            .into_iter()
            .find(|k| k.name() == s.kind)
            .ok_or_else(|| {
                format!(
                    "kind: {:?} is not a rule scope (issuer, tenant, subject, client, key)",
                    s.kind
                )
            })?;
        scope.has_value()
    } else {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s.kind)
            .ok_or_else(|| {
                format!(
                    "kind: {:?} is not an entry kind (token, session, api_key, subject, client, \
                     key)",
                    s.kind
                )
            })?;
        true
    };
    match (needs_value, s.value.is_empty()) {
        (true, true) => return Err(format!("value: a {} names a value", s.kind)),
        (false, false) => {
            return Err(format!(
                "value: a {} rule covers the whole namespace and names no value",
                s.kind
            ));
        }
        _ => {}
    }
    if s.count == 0 {
        return Err("count: at least 1 (a sighting is a denial counted)".into());
    }
    if s.first_seen_ms <= 0 || s.first_seen_ms > s.last_seen_ms {
        return Err(format!(
            "first_seen_ms: {} must be positive and at most last_seen_ms ({})",
            s.first_seen_ms, s.last_seen_ms
        ));
    }
    if s.last_seen_ms > now_ms.saturating_add(MAX_AHEAD_MS) {
        return Err(format!(
            "last_seen_ms: {} is more than a day ahead of this node's clock ({now_ms}); fix the \
             reporting host's clock",
            s.last_seen_ms
        ));
    }
    Ok(())
}

/// Refuses an empty, oversized or control-character string.
fn text(field: &str, s: &str, max: usize) -> Result<(), String> {
    if s.is_empty() || s.len() > max || s.chars().any(char::is_control) {
        return Err(format!(
            "{field}: 1 to {max} bytes without control characters (got {} bytes)",
            s.len()
        ));
    }
    Ok(())
}

/// The limit a list request asks for, refused past [`MAX_LIST`].
pub fn limit(req: &pb::ListSightingsRequest) -> Result<u32, Status> {
    match req.limit {
        0 => Ok(DEFAULT_LIST),
        n if n <= MAX_LIST => Ok(n),
        n => Err(Status::invalid_argument(format!(
            "limit: {n} is more than {MAX_LIST}; ask for fewer, or narrow with since_ms"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(value: &str, service: &str, count: u64, first: i64, last: i64) -> pb::Sighting {
        pb::Sighting {
            rule: false,
            kind: "token".into(),
            namespace: "https://idp".into(),
            value: value.into(),
            service: service.into(),
            count,
            first_seen_ms: first,
            last_seen_ms: last,
            subscriber_id: String::new(),
        }
    }

    fn report(s: Vec<pb::Sighting>) -> pb::ReportSightingsRequest {
        pb::ReportSightingsRequest {
            sightings: s,
            dropped: 0,
        }
    }

    #[test]
    fn a_bad_sighting_is_refused_by_field() {
        let now = 1_000_000;
        let bad = |f: &dyn Fn(&mut pb::Sighting)| {
            let mut s = seen("t1", "api", 1, 10, 20);
            f(&mut s);
            validate(&report(vec![seen("ok", "api", 1, 1, 1), s]), now)
                .expect_err("refused")
                .message()
                .to_owned()
        };
        assert!(bad(&|s| s.service.clear()).starts_with("sightings[1].service:"));
        assert!(bad(&|s| s.service = "x".repeat(129)).starts_with("sightings[1].service:"));
        assert!(bad(&|s| s.value = "a\u{1b}[2J".into()).starts_with("sightings[1].value:"));
        assert!(bad(&|s| s.kind = "jwt".into()).starts_with("sightings[1].kind:"));
        assert!(bad(&|s| s.count = 0).starts_with("sightings[1].count:"));
        assert!(bad(&|s| s.first_seen_ms = 30).starts_with("sightings[1].first_seen_ms:"));
        assert!(
            bad(&|s| s.last_seen_ms = now + MAX_AHEAD_MS + 1)
                .starts_with("sightings[1].last_seen_ms:")
        );
        assert!(
            bad(&|s| {
                s.rule = true;
                s.kind = "issuer".into();
            })
            .starts_with("sightings[1].value:")
        );
        let rule = pb::Sighting {
            rule: true,
            kind: "issuer".into(),
            value: String::new(),
            ..seen("", "api", 1, 1, 1)
        };
        validate(&report(vec![rule]), now).expect("an issuer rule names no value");
        let many = report(vec![seen("t", "api", 1, 1, 1); MAX_PER_REPORT + 1]);
        assert!(
            validate(&many, now)
                .unwrap_err()
                .message()
                .starts_with("sightings: 4097")
        );
        assert!(
            limit(&pb::ListSightingsRequest {
                since_ms: 0,
                limit: MAX_LIST + 1
            })
            .is_err()
        );
        assert_eq!(
            limit(&pb::ListSightingsRequest::default()).unwrap(),
            DEFAULT_LIST
        );
    }
}
