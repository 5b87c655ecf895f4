//! Sightings, black-box: a `recall sidecar --service checkout` process in front of three `recall
//! server` processes counts each denial of a revoked token (an entry, and a subject rule) and
//! reports them; `recall sightings` shows which revoked credentials are still presented, at which
//! service, by which subscriber, how often and when last, merged from every node. An allowed token
//! is no sighting. Only subscribers may report and only operators with a role may list; a report
//! that is too large or names a bad field is refused whole, by field, and nothing of it is kept.
//! A node that does not answer is named and the command fails after printing what it has.

use recall::proto as pb;
use recall::proto::sightings_client::SightingsClient;
use recall::transport::{DEV_TRUST_DOMAIN, Dialer, Expect, Identity, Security};
use serde_json::Value;

use crate::cli::recall;
use crate::fixture::{
    ISSUER, PATIENCE, Procs, converged, eventually, leader, operator, revoke, security, token,
};
use crate::sidecar_proc::{self, Sidecar};

/// The sidecar's answer to `/v1/check` with `params` (and [`ISSUER`]).
async fn check(sidecar: &str, params: &[(&str, &str)]) -> Result<Value, String> {
    let mut all = vec![("iss", ISSUER)];
    all.extend_from_slice(params);
    let url = reqwest::Url::parse_with_params(&format!("http://{sidecar}/v1/check"), all).unwrap();
    let r = reqwest::get(url).await.map_err(|e| e.to_string())?;
    let body = r.text().await.map_err(|e| e.to_string())?;
    serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))
}

/// A `Sightings` client of `addr` with `security`.
fn sightings_as(addr: &str, security: Security) -> SightingsClient<tonic::transport::Channel> {
    let ch = Dialer::new(security)
        .lazy(addr, Expect::AnyNode)
        .expect("a valid address");
    SightingsClient::new(ch).max_decoding_message_size(16 << 20)
}

/// A sighting as a subscriber reports it.
fn seen(value: &str, service: &str) -> pb::Sighting {
    pb::Sighting {
        rule: false,
        kind: "token".into(),
        namespace: ISSUER.into(),
        value: value.into(),
        service: service.into(),
        count: 1,
        first_seen_ms: 1_000,
        last_seen_ms: 2_000,
        subscriber_id: String::new(),
    }
}

/// The sighting of `kind` `value` in `recall sightings --json` output, if listed.
fn find<'a>(list: &'a Value, kind: &str, value: &str) -> Option<&'a Value> {
    list["sightings"]
        .as_array()?
        .iter()
        .find(|s| s["kind"] == kind && s["value"] == value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recall_sightings_shows_revoked_tokens_still_presented_and_where() {
    let procs = Procs::start(3, &[]);
    let l = leader(&procs).await;
    let mut lead = procs.client(l);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    lead.revoke(revoke(vec![token("stolen-1")]))
        .await
        .expect("revokes");
    let rule = pb::AddRuleRequest {
        rule: Some(pb::Rule {
            scope: Some(pb::RuleScope {
                kind: pb::ScopeKind::Subject as i32,
                namespace: ISSUER.into(),
                value: "mallory".into(),
            }),
            not_before_ms: now_ms,
            expires_at_ms: None,
        }),
        actor: "tests".into(),
        reason: "mallory's laptop was stolen".into(),
        wait: None,
    };
    let v = lead
        .add_rule(rule)
        .await
        .expect("the rule commits")
        .into_inner()
        .version;
    converged(&procs, v).await;

    let id = "checkout-sidecar";
    let cluster = sidecar_proc::cluster(&procs);
    let side = Sidecar::spawn(
        &procs,
        id,
        &["--service", "checkout", "--sightings-interval-ms", "200"],
    );
    let sidecar = side.http.clone();
    eventually("the sidecar to sync", PATIENCE, || async {
        let a = check(&sidecar, &[("jti", "fine")]).await?;
        (a["stale"] == false).then_some(()).ok_or(a.to_string())
    })
    .await;

    // Three presentations of the revoked token, one of a token the rule covers, one allowed.
    for _ in 0..3 {
        let a = check(&sidecar, &[("jti", "stolen-1")]).await.unwrap();
        assert_eq!(a["revoked"], true, "{a}");
    }
    let iat = (now_ms / 1000 - 3600).to_string();
    let a = check(
        &sidecar,
        &[("jti", "old"), ("sub", "mallory"), ("iat", &iat)],
    )
    .await
    .unwrap();
    assert_eq!(a["revoked"], true, "{a}");
    let a = check(&sidecar, &[("jti", "fine-2")]).await.unwrap();
    assert_eq!(a["revoked"], false, "{a}");

    let addr = procs.addr(l).to_string();
    let list = eventually("recall sightings to show both", PATIENCE, || async {
        let run = recall(&cluster, &["sightings", "--json"]).await;
        if !run.ok {
            return Err(run.stderr);
        }
        let list: Value = serde_json::from_str(&run.stdout).map_err(|e| e.to_string())?;
        let token = find(&list, "token", "stolen-1").ok_or(run.stdout.clone())?;
        let rule = find(&list, "subject", "mallory").ok_or(run.stdout.clone())?;
        (token["count"] == 3 && rule["count"] == 1)
            .then(|| list.clone())
            .ok_or(run.stdout)
    })
    .await;
    let token = find(&list, "token", "stolen-1").unwrap();
    assert_eq!(token["service"], "checkout");
    assert_eq!(token["subscriber"], id);
    assert_eq!(token["rule"], false);
    assert_eq!(token["namespace"], ISSUER);
    let first = token["first_seen_ms"].as_i64().unwrap();
    let last = token["last_seen_ms"].as_i64().unwrap();
    assert!(now_ms - 60_000 <= first && first <= last, "{token}");
    assert_eq!(find(&list, "subject", "mallory").unwrap()["rule"], true);
    assert!(
        find(&list, "token", "fine-2").is_none(),
        "an allowed token is no sighting"
    );
    assert!(
        find(&list, "token", "old").is_none(),
        "the rule, not the jti, revoked it"
    );
    assert_eq!(list["complete"], true);

    // The table, as a person reads it.
    let run = recall(&addr, &["sightings", "--since", "1h"]).await;
    assert!(run.ok, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.lines().any(|l| l.contains("checkout")
            && l.contains(&format!("token stolen-1 under {ISSUER}"))
            && l.split_whitespace().nth(1) == Some("3")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains(&format!("subject rule mallory under {ISSUER}"))
    );

    // Who may do what.
    let subscriber = security(&Identity::subscriber(DEV_TRUST_DOMAIN, id));
    let e = sightings_as(&addr, subscriber.clone())
        .list(pb::ListSightingsRequest::default())
        .await
        .expect_err("a subscriber may not list");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    let e = sightings_as(&addr, operator("nobody"))
        .list(pb::ListSightingsRequest::default())
        .await
        .expect_err("an operator without a role may not list");
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    assert!(e.message().contains("viewer"), "{}", e.message());
    let e = sightings_as(&addr, operator("admin"))
        .report(pb::ReportSightingsRequest {
            sightings: vec![seen("forged", "checkout")],
            dropped: 0,
        })
        .await
        .expect_err("an operator may not report");
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    assert!(e.message().contains("subscriber"), "{}", e.message());

    // Bad reports are refused whole, naming what was wrong; nothing of them is kept.
    let mut reporter = sightings_as(&addr, subscriber);
    let e = reporter
        .report(pb::ReportSightingsRequest {
            sightings: vec![seen("flood", "checkout"); 4097],
            dropped: 0,
        })
        .await
        .expect_err("too many in one report");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().starts_with("sightings: 4097"),
        "{}",
        e.message()
    );
    let e = reporter
        .report(pb::ReportSightingsRequest {
            sightings: vec![seen("kept?", "checkout"), seen("x", "\u{1b}[2Jevil")],
            dropped: 0,
        })
        .await
        .expect_err("a control character in a service name");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().starts_with("sightings[1].service:"),
        "{}",
        e.message()
    );
    let run = recall(&cluster, &["sightings", "--json"]).await;
    let after: Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(find(&after, "token", "kept?").is_none(), "{after}");
    assert!(find(&after, "token", "flood").is_none());
    assert!(find(&after, "token", "forged").is_none());

    // A node that does not answer is named; the command fails after printing what it has.
    let silent = procs.ids().into_iter().find(|&n| n != l).unwrap();
    procs.pause(silent);
    let run = recall(&addr, &["sightings"]).await;
    procs.resume(silent);
    assert!(!run.ok, "an incomplete list fails: {}", run.stdout);
    assert!(
        run.stdout.contains(&format!(
            "no answer: node {silent} (what its subscribers reported is missing)"
        )),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr
            .contains(&format!("node {silent} did not answer")),
        "{}",
        run.stderr
    );
}
