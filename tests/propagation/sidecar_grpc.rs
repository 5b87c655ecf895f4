//! The sidecar's gRPC face (`recall.v1.Check`), against a real node: single and batch checks
//! report revocations and rules, bad facts are refused naming the field, and with the cluster
//! gone past the staleness bound the policy decides the verdict.

use std::time::Duration;

use recall::proto as pb;
use recall::subscriber::StalePolicy;
use tonic::Code;

use crate::fixture::{OneNode, revoke, token};
use crate::sidecar_fixture::{check_client, cluster_gone, start_sidecar, wait_until};
use recall_chaos::proxy::Proxy;

const ISS: &str = "https://login.example";

fn facts(jti: &str, sub: &str) -> pb::TokenFacts {
    pb::TokenFacts {
        iss: ISS.into(),
        jti: Some(jti.into()),
        sub: Some(sub.into()),
        iat: Some(1_000),
        ..Default::default()
    }
}

fn single(f: pb::TokenFacts) -> pb::CheckRequest {
    pb::CheckRequest { facts: Some(f) }
}

fn verdict(r: &pb::CheckReply) -> pb::Verdict {
    pb::Verdict::try_from(r.verdict).unwrap()
}

/// A revoked token and a user recalled by a not-before rule come back REVOKED, with what matched,
/// over Check and CheckBatch; the batch answers in request order at one version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_is_reported_revoked_over_grpc_single_and_batch() {
    let node = OneNode::start().await;
    let sidecar = start_sidecar(node.subscriber_config("sc-grpc-1")).await;
    sidecar
        .subscriber()
        .wait_synced(Duration::from_secs(10))
        .await
        .unwrap();
    let mut grpc = check_client(&sidecar).await;
    let before = grpc
        .check(single(facts("t-1", "bob")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict(&before), pb::Verdict::Allowed, "{before:?}");

    let mut ops = node.client().await;
    revoke(&mut ops, vec![token(ISS, "t-1")]).await;
    let rule = pb::Rule {
        scope: Some(pb::RuleScope {
            kind: pb::ScopeKind::Subject as i32,
            namespace: ISS.into(),
            value: "alice".into(),
        }),
        not_before_ms: 2_000_000,
        expires_at_ms: None,
    };
    let v = ops
        .add_rule(pb::AddRuleRequest {
            rule: Some(rule),
            actor: "t".into(),
            reason: "t".into(),
            wait: None,
        })
        .await
        .unwrap()
        .into_inner()
        .version;
    sidecar
        .subscriber()
        .wait_version(v, Duration::from_secs(5))
        .await
        .unwrap();

    let after = grpc
        .check(single(facts("t-1", "bob")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict(&after), pb::Verdict::Revoked, "{after:?}");
    let entry = pb::r#match::Of::Entry(pb::EntryMatch {
        kind: pb::Kind::Token as i32,
        namespace: ISS.into(),
        exact: true,
    });
    assert_eq!(after.matches, [pb::Match { of: Some(entry) }]);
    assert!(after.version >= v && !after.stale, "{after:?}");
    assert_eq!(after.policy, pb::StalePolicy::FailClosed as i32);

    let batch = pb::CheckBatchRequest {
        facts: vec![
            facts("t-1", "bob"),
            facts("t-2", "bob"),
            facts("t-3", "alice"),
        ],
    };
    let replies = grpc.check_batch(batch).await.unwrap().into_inner().replies;
    let verdicts: Vec<_> = replies.iter().map(verdict).collect();
    assert_eq!(
        verdicts,
        [
            pb::Verdict::Revoked,
            pb::Verdict::Allowed,
            pb::Verdict::Revoked
        ]
    );
    let rule_match = pb::r#match::Of::Rule(pb::RuleMatch {
        scope: pb::ScopeKind::Subject as i32,
        not_before_ms: 2_000_000,
    });
    assert_eq!(
        replies[2].matches,
        [pb::Match {
            of: Some(rule_match)
        }]
    );
    assert!(
        replies.iter().all(|r| r.version == replies[0].version),
        "{replies:?}"
    );
    let empty = pb::CheckBatchRequest { facts: vec![] };
    let none = grpc.check_batch(empty).await.unwrap().into_inner();
    assert!(none.replies.is_empty());
    sidecar.shutdown().await.unwrap();
}

/// Bad facts are INVALID_ARGUMENT naming the field (for a batch, the item); a batch over the
/// limit names the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_facts_are_refused_naming_the_field() {
    let node = OneNode::start().await;
    let sidecar = start_sidecar(node.subscriber_config("sc-grpc-bad-1")).await;
    let mut grpc = check_client(&sidecar).await;

    let missing = grpc
        .check(pb::CheckRequest { facts: None })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument);
    assert!(missing.message().starts_with("facts: missing"), "{missing}");

    let mut no_iss = facts("t-1", "bob");
    no_iss.iss.clear();
    let mut items = vec![facts("t-1", "bob"); 3];
    items.push(no_iss);
    let item = grpc
        .check_batch(pb::CheckBatchRequest { facts: items })
        .await
        .unwrap_err();
    assert_eq!(item.code(), Code::InvalidArgument);
    assert!(
        item.message().starts_with("facts[3].iss: missing"),
        "{item}"
    );

    let mut raw_key = facts("t-1", "bob");
    raw_key.api_key_sha256 = Some("sk_live_SECRET".into());
    let key = grpc.check(single(raw_key)).await.unwrap_err();
    assert_eq!(key.code(), Code::InvalidArgument);
    assert!(key.message().contains("facts.api_key_sha256"), "{key}");
    assert!(!key.message().contains("SECRET"), "{key}");

    let too_many = pb::CheckBatchRequest {
        facts: vec![facts("t-1", "bob"); 10_001],
    };
    let limit = grpc.check_batch(too_many).await.unwrap_err();
    assert_eq!(limit.code(), Code::InvalidArgument);
    assert!(limit.message().contains("limit of 10000"), "{limit}");
    sidecar.shutdown().await.unwrap();
}

/// With the cluster gone past a 300 ms bound, replies are stale and the policy decides: REVOKED
/// under fail-closed, the local ALLOWED under fail-open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_verdicts_follow_the_policy_over_grpc() {
    let node = OneNode::start().await;
    let proxy = Proxy::start("subscriber→node", node.addr.parse().unwrap())
        .await
        .unwrap();
    let config = |id: &str, policy| {
        let mut c = node.subscriber_config(id);
        c.cluster = vec![proxy.addr().to_string()];
        c.staleness_bound = Duration::from_millis(300);
        c.policy = policy;
        c
    };
    let closed = start_sidecar(config("sc-grpc-closed-1", StalePolicy::FailClosed)).await;
    let open = start_sidecar(config("sc-grpc-open-1", StalePolicy::FailOpen)).await;
    for sc in [&closed, &open] {
        sc.subscriber()
            .wait_synced(Duration::from_secs(10))
            .await
            .unwrap();
    }
    let mut closed_grpc = check_client(&closed).await;
    let mut open_grpc = check_client(&open).await;

    cluster_gone(proxy, node).await;
    for grpc in [&mut closed_grpc, &mut open_grpc] {
        wait_until("replies turn stale", Duration::from_secs(10), || {
            let mut grpc = grpc.clone();
            async move {
                let r = grpc.check(single(facts("t-1", "bob"))).await.unwrap();
                r.into_inner().stale
            }
        })
        .await;
    }
    let c = closed_grpc
        .check(single(facts("t-1", "bob")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict(&c), pb::Verdict::Revoked, "{c:?}");
    assert!(
        c.stale && c.matches.is_empty() && c.staleness_ms > 300,
        "{c:?}"
    );
    assert_eq!(c.policy, pb::StalePolicy::FailClosed as i32);
    let batch = pb::CheckBatchRequest {
        facts: vec![facts("t-1", "bob"); 2],
    };
    let o = open_grpc.check_batch(batch).await.unwrap().into_inner();
    assert!(
        o.replies
            .iter()
            .all(|r| verdict(r) == pb::Verdict::Allowed && r.stale),
        "{o:?}"
    );
    assert_eq!(o.replies[0].policy, pb::StalePolicy::FailOpen as i32);
    closed.shutdown().await.unwrap();
    open.shutdown().await.unwrap();
}
