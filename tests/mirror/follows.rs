//! The mirror follows a cluster through revokes, rules, lifts and a later expiry: Redis holds
//! exactly the node's set at the node's version, each key expires at its revocation's expiry plus
//! the grace (no TTL without one), and each change is published on `recall:changes`.

use std::time::Duration;

use futures::StreamExt;
use recall::proto as pb;
use recall_core::Kind;

use super::fixture::{OneNode, revoke, token};
use super::support::{MirrorProc, RedisServer, connect, exact, mirror_certs};

const ISS: &str = "https://idp.example";
/// 2100-01-01, in unix milliseconds.
const FAR: i64 = 4_102_444_800_000;
/// The mirror's default `--expiry-grace` (5 minutes, the cluster's default prune grace).
const GRACE_MS: i64 = 300_000;

fn expiring(jti: &str, ms: i64) -> pb::Revocation {
    pb::Revocation {
        expires_at_ms: Some(ms),
        ..token(ISS, jti)
    }
}

fn subject_rule(sub: &str, not_before_ms: i64) -> pb::AddRuleRequest {
    pb::AddRuleRequest {
        rule: Some(pb::Rule {
            scope: Some(pb::RuleScope {
                kind: pb::ScopeKind::Subject as i32,
                namespace: ISS.into(),
                value: sub.into(),
            }),
            not_before_ms,
            expires_at_ms: None,
        }),
        actor: "test".into(),
        reason: "test".into(),
        wait: None,
    }
}

async fn pexpiretime(url: &str, key: &str) -> i64 {
    let mut con = connect(url).await.unwrap();
    redis::cmd("PEXPIRETIME")
        .arg(key)
        .query_async(&mut con)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_holds_exactly_the_authoritative_set_through_revokes_rules_and_lifts() {
    let node = OneNode::start().await;
    let redis = RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let certs = mirror_certs(dir.path());
    let mirror = MirrorProc::start(&node.addr, &redis.url(), &certs, dir.path());
    let within = Duration::from_secs(20);
    let mut client = node.client().await;

    // An empty cluster is mirrored as an empty, ready set.
    exact(&node, &redis.url(), within).await;

    let mut changes = redis::Client::open(redis.url())
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap();
    changes.subscribe("recall:changes").await.unwrap();
    let mut changes = changes.into_on_message();

    let v = revoke(&mut client, vec![token(ISS, "a"), expiring("b", FAR)]).await;
    let fp = |jti: &str| {
        node.node
            .sm
            .with_set(|s| s.fingerprinter().of(Kind::Token, ISS, jti))
    };
    let key = |jti: &str| format!("recall:rev:{:016x}", fp(jti).0);
    let mut published = vec![];
    for _ in 0..2 {
        let msg = tokio::time::timeout(within, changes.next())
            .await
            .unwrap()
            .unwrap();
        published.push(msg.get_payload::<String>().unwrap());
    }
    published.sort();
    let mut want = vec![
        format!("{v} rev+ {:016x} 0", fp("a").0),
        format!("{v} rev+ {:016x} {FAR}", fp("b").0),
    ];
    want.sort();
    assert_eq!(published, want);

    client
        .add_rule(subject_rule("alice", 1_700_000_000_000))
        .await
        .unwrap();
    revoke(&mut client, vec![token(ISS, "c")]).await;
    exact(&node, &redis.url(), within).await;
    assert_eq!(
        pexpiretime(&redis.url(), &key("a")).await,
        -1,
        "no expiry, no TTL"
    );
    assert_eq!(pexpiretime(&redis.url(), &key("b")).await, FAR + GRACE_MS);

    // A later expiry moves the key's; a lift removes it; a later rule replaces the earlier.
    revoke(&mut client, vec![expiring("b", FAR + 1_000)]).await;
    client
        .lift(pb::LiftRequest {
            keys: vec![token(ISS, "a").key.unwrap()],
            rules: vec![],
            actor: "test".into(),
            reason: "test".into(),
            wait: None,
        })
        .await
        .unwrap();
    client
        .add_rule(subject_rule("alice", 1_750_000_000_000))
        .await
        .unwrap();
    let held = exact(&node, &redis.url(), within).await;
    assert_eq!(held.entries.len(), 2);
    assert_eq!(
        held.rules.values().copied().collect::<Vec<_>>(),
        [1_750_000_000_000]
    );
    assert_eq!(
        pexpiretime(&redis.url(), &key("b")).await,
        FAR + 1_000 + GRACE_MS
    );
    assert_eq!(
        held.refills,
        1,
        "one fill at the start, deltas since: {}",
        mirror.log()
    );
}
