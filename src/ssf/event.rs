//! What a verified event asks of recall (CAEP 1.0 over SSF 1.0), decided without I/O:
//! - `session-revoked` naming a session (a `complex` subject with `session`) revokes that
//!   session's `sid`; naming only a user (`iss_sub`, `opaque`, or `complex` with `user`) adds
//!   the subject's not-before rule at the event's time: every token it was issued before then
//!   is recalled;
//! - `credential-change` with `change_type` `revoke` or `delete` adds the subject's not-before
//!   rule (tokens issued on the old credential are recalled); `create` and `update` need
//!   nothing;
//! - every other event (the SSF `verification` event included) is acknowledged and logged.
//!
//! A subject named by an e-mail address or a phone number is acknowledged but not acted on:
//! nothing says which token `sub` it is (configure the transmitter to send `iss_sub`). A
//! subject under a token issuer the transmitter may not act on is refused (`access_denied`).
//! Entries and rules are kept for the issuer's longest token lifetime after the event.

use recall_core::{Kind, RevocationKey, RuleScope, ScopeKind, Timestamp};
use serde_json::{Map, Value};

use super::config::TransmitterConfig;
use super::set::{ErrorCode, SetError, VerifiedSet};
use crate::token::claims;

/// CAEP's session revoked event.
pub const SESSION_REVOKED: &str =
    "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
/// CAEP's credential change event.
pub const CREDENTIAL_CHANGE: &str =
    "https://schemas.openid.net/secevent/caep/event-type/credential-change";
/// SSF's stream verification event.
pub const VERIFICATION: &str = "https://schemas.openid.net/secevent/ssf/event-type/verification";

/// The longest subject or session identifier acted on, in bytes.
const MAX_ID_BYTES: usize = 1024;

/// What to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Revoke one session.
    Revoke {
        /// The session's key (`sid` under its token issuer).
        key: RevocationKey,
        /// When it can be pruned.
        expires_at: Timestamp,
    },
    /// Add (or advance) a subject's not-before rule.
    Rule {
        /// The subject's scope.
        scope: RuleScope,
        /// Tokens issued before this are recalled.
        not_before: Timestamp,
        /// When it can be pruned.
        expires_at: Timestamp,
    },
    /// Nothing to write; acknowledged and logged.
    Nothing {
        /// Why.
        why: String,
    },
}

/// The short name of an event type, for logs, metrics and the audit history.
pub fn short_name(event: &str) -> &str {
    match event {
        SESSION_REVOKED => "session-revoked",
        CREDENTIAL_CHANGE => "credential-change",
        VERIFICATION => "verification",
        _ => "other",
    }
}

fn invalid(description: impl Into<String>) -> SetError {
    SetError::new(ErrorCode::InvalidRequest, description)
}

/// Who an event is about, as far as tokens can tell.
enum Subject {
    /// A session, under a token issuer.
    Session { namespace: String, sid: String },
    /// A token subject, under a token issuer.
    User { namespace: String, sub: String },
    /// A format that names no token claim.
    Unmapped { format: String },
}

/// The action `set` asks for at `now` (unix seconds), from transmitter `t`.
pub fn action(set: &VerifiedSet, t: &TransmitterConfig, now: i64) -> Result<Action, SetError> {
    let what = short_name(&set.event);
    let wants = match set.event.as_str() {
        SESSION_REVOKED => true,
        CREDENTIAL_CHANGE => match claims::string(&set.payload, "change_type")? {
            Some("revoke" | "delete") => true,
            Some("create" | "update") => false,
            Some(other) => {
                let shown: String = other.chars().take(32).collect();
                return Err(invalid(format!(
                    "credential-change has change_type {shown:?}; CAEP defines create, revoke, \
                     update and delete"
                )));
            }
            None => return Err(invalid("credential-change has no `change_type`")),
        },
        _ => {
            return Ok(Action::Nothing {
                why: format!("{what} event {:?}: nothing to revoke", set.event),
            });
        }
    };
    if !wants {
        return Ok(Action::Nothing {
            why: "credential-change creating or updating a credential revokes nothing".into(),
        });
    }
    let at = event_time(set, t, now)?;
    let expires_at = at.plus_millis(t.token_max_lifetime_s as i64 * 1000);
    let subject = set
        .subject
        .as_ref()
        .ok_or_else(|| invalid(format!("the {what} event names no subject (`sub_id`)")))?;
    Ok(
        match subject_of(subject, t, set.event == SESSION_REVOKED)? {
            Subject::Session { namespace, sid } => Action::Revoke {
                key: RevocationKey::new(Kind::Session, namespace, sid),
                expires_at,
            },
            Subject::User { namespace, sub } => Action::Rule {
                scope: RuleScope::new(ScopeKind::Subject, namespace, sub),
                not_before: at,
                expires_at,
            },
            Subject::Unmapped { format } => Action::Nothing {
                why: format!(
                    "{what} names its subject by {format:?}, which names no token claim; \
                     configure the transmitter to send `iss_sub` (or `complex` with a session)"
                ),
            },
        },
    )
}

/// The event's `event_timestamp`, else the SET's `iat`; never in the future beyond the leeway
/// (a rule in the future would refuse tokens not yet issued).
fn event_time(set: &VerifiedSet, t: &TransmitterConfig, now: i64) -> Result<Timestamp, SetError> {
    let at = claims::seconds(&set.payload, "event_timestamp")?.unwrap_or(set.iat);
    if at > now + t.leeway_s as i64 {
        return Err(invalid(format!(
            "the event_timestamp is {}s in the future",
            at - now
        )));
    }
    Ok(Timestamp::from_secs(at.min(now)))
}

fn string_member<'m>(m: &'m Map<String, Value>, name: &str, of: &str) -> Result<&'m str, SetError> {
    match m.get(name) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_ID_BYTES => Ok(s),
        Some(Value::String(_)) => Err(invalid(format!(
            "the {of} subject's `{name}` must hold 1 to {MAX_ID_BYTES} bytes"
        ))),
        _ => Err(invalid(format!("the {of} subject has no `{name}` string"))),
    }
}

/// The token issuer a subject is under: the one it names, if the transmitter may act on it,
/// else the transmitter's first.
fn namespace(t: &TransmitterConfig, named: Option<&str>) -> Result<String, SetError> {
    let allowed = t.namespaces();
    match named {
        None => Ok(allowed[0].clone()),
        Some(iss) if allowed.iter().any(|a| a == iss) => Ok(iss.to_string()),
        Some(iss) => {
            let shown: String = iss.chars().take(128).collect();
            Err(SetError::new(
                ErrorCode::AccessDenied,
                format!(
                    "transmitter {:?} may not act on tokens of {shown:?} (its namespaces: {})",
                    t.issuer,
                    allowed.join(", ")
                ),
            ))
        }
    }
}

fn subject_of(
    s: &Map<String, Value>,
    t: &TransmitterConfig,
    session_event: bool,
) -> Result<Subject, SetError> {
    let format = string_member(s, "format", "event's")?;
    match format {
        "iss_sub" => Ok(Subject::User {
            namespace: namespace(t, Some(string_member(s, "iss", "iss_sub")?))?,
            sub: string_member(s, "sub", "iss_sub")?.to_string(),
        }),
        "opaque" => Ok(Subject::User {
            namespace: namespace(t, None)?,
            sub: string_member(s, "id", "opaque")?.to_string(),
        }),
        "complex" => {
            let member = |name: &str| match s.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Object(m)) => Ok(Some(m)),
                Some(_) => Err(invalid(format!(
                    "the complex subject's `{name}` is not an object"
                ))),
            };
            let user = match member("user")? {
                Some(u) => Some(subject_of(u, t, false)?),
                None => None,
            };
            if session_event && let Some(session) = member("session")? {
                let sid = match string_member(session, "format", "session")? {
                    "opaque" => string_member(session, "id", "session")?,
                    other => {
                        return Ok(Subject::Unmapped {
                            format: format!("session/{other}"),
                        });
                    }
                };
                let namespace = match &user {
                    Some(Subject::User { namespace, .. }) => namespace.clone(),
                    _ => namespace(t, None)?,
                };
                return Ok(Subject::Session {
                    namespace,
                    sid: sid.to_string(),
                });
            }
            user.ok_or_else(|| invalid("the complex subject names neither a user nor a session"))
        }
        other => Ok(Subject::Unmapped {
            format: other.chars().take(32).collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    fn transmitter() -> TransmitterConfig {
        let mut t = TransmitterConfig::new("https://idp.example", "jwks.json");
        t.namespaces = vec!["https://idp.example".into(), "https://other.example".into()];
        t
    }

    fn set(event: &str, payload: Value, subject: Value) -> VerifiedSet {
        VerifiedSet {
            iss: "https://idp.example".into(),
            jti: "set-1".into(),
            iat: NOW - 5,
            event: event.into(),
            payload: payload.as_object().unwrap().clone(),
            subject: subject.as_object().cloned(),
        }
    }

    #[test]
    fn a_revoked_session_revokes_its_sid_under_the_users_issuer() {
        let s = set(
            SESSION_REVOKED,
            json!({"event_timestamp": NOW - 10}),
            json!({"format": "complex",
                   "session": {"format": "opaque", "id": "s-42"},
                   "user": {"format": "iss_sub", "iss": "https://other.example", "sub": "alice"}}),
        );
        assert_eq!(
            action(&s, &transmitter(), NOW).unwrap(),
            Action::Revoke {
                key: RevocationKey::new(Kind::Session, "https://other.example", "s-42"),
                expires_at: Timestamp::from_secs(NOW - 10 + 86_400),
            }
        );
    }

    #[test]
    fn a_revoked_session_without_a_session_id_recalls_the_subjects_tokens() {
        let s = set(
            SESSION_REVOKED,
            json!({}),
            json!({"format": "iss_sub", "iss": "https://idp.example", "sub": "alice"}),
        );
        assert_eq!(
            action(&s, &transmitter(), NOW).unwrap(),
            Action::Rule {
                scope: RuleScope::new(ScopeKind::Subject, "https://idp.example", "alice"),
                not_before: Timestamp::from_secs(NOW - 5),
                expires_at: Timestamp::from_secs(NOW - 5 + 86_400),
            }
        );
    }

    #[test]
    fn a_revoked_credential_recalls_the_subject_and_a_new_one_does_nothing() {
        let subject = json!({"format": "opaque", "id": "bob"});
        let revoke = set(
            CREDENTIAL_CHANGE,
            json!({"credential_type": "password", "change_type": "revoke"}),
            subject.clone(),
        );
        assert!(matches!(
            action(&revoke, &transmitter(), NOW).unwrap(),
            Action::Rule { scope, .. } if scope.value == "bob"
        ));
        let create = set(
            CREDENTIAL_CHANGE,
            json!({"credential_type": "fido2-roaming", "change_type": "create"}),
            subject,
        );
        assert!(matches!(
            action(&create, &transmitter(), NOW).unwrap(),
            Action::Nothing { .. }
        ));
    }

    #[test]
    fn another_issuers_subject_is_refused() {
        let s = set(
            SESSION_REVOKED,
            json!({}),
            json!({"format": "iss_sub", "iss": "https://evil.example", "sub": "alice"}),
        );
        let e = action(&s, &transmitter(), NOW).unwrap_err();
        assert_eq!(e.code, ErrorCode::AccessDenied);
        assert!(e.description.contains("may not act"), "{e}");
    }

    #[test]
    fn unknown_events_and_unmappable_subjects_are_acknowledged_without_a_write() {
        let other = set(
            "https://schemas.openid.net/secevent/caep/event-type/token-claims-change",
            json!({}),
            json!({"format": "opaque", "id": "bob"}),
        );
        assert!(matches!(
            action(&other, &transmitter(), NOW).unwrap(),
            Action::Nothing { .. }
        ));
        let email = set(
            SESSION_REVOKED,
            json!({}),
            json!({"format": "email", "email": "bob@example.com"}),
        );
        match action(&email, &transmitter(), NOW).unwrap() {
            Action::Nothing { why } => assert!(why.contains("iss_sub"), "{why}"),
            a => panic!("{a:?}"),
        }
    }

    #[test]
    fn a_future_event_or_a_missing_subject_is_refused() {
        let future = set(
            SESSION_REVOKED,
            json!({"event_timestamp": NOW + 3600}),
            json!({"format": "opaque", "id": "bob"}),
        );
        assert_eq!(
            action(&future, &transmitter(), NOW).unwrap_err().code,
            ErrorCode::InvalidRequest
        );
        let none = set(SESSION_REVOKED, json!({}), Value::Null);
        assert!(
            action(&none, &transmitter(), NOW)
                .unwrap_err()
                .description
                .contains("no subject")
        );
    }
}
