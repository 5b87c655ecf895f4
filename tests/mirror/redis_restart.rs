//! Redis restarting under a running mirror. Restarted empty (its data lost), or flushed under a
//! live connection: the mirror waits for Redis with backoff, sees the version gone, refills it
//! from a snapshot and ends with exactly the authoritative set, changes made meanwhile included.
//! SIGKILLed mid-import with an append-only file: the mirror resumes from the version Redis
//! recovered, without a refill, and ends exact (nothing lost, nothing applied twice).

use std::time::Duration;

use super::fixture::{OneNode, revoke, token};
use super::support::{MirrorProc, RedisServer, connect, eventually, exact, held, mirror_certs};

const ISS: &str = "https://idp.example";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_redis_is_refilled_to_exactly_the_authoritative_set() {
    let node = OneNode::start().await;
    let mut redis = RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let certs = mirror_certs(dir.path());
    let mirror = MirrorProc::start(&node.addr, &redis.url(), &certs, dir.path());
    let within = Duration::from_secs(20);
    let mut client = node.client().await;

    let items = (0..500).map(|i| token(ISS, &format!("a{i}"))).collect();
    revoke(&mut client, items).await;
    exact(&node, &redis.url(), within).await;

    // Restarted empty while nothing changes: refilled all the same.
    redis.restart().await;
    let held = exact(&node, &redis.url(), within).await;
    assert_eq!(held.entries.len(), 500);
    assert_eq!(
        held.refills,
        1,
        "one refill into the new Redis:\n{}",
        mirror.log()
    );

    // Killed, and a change lands while it is down; then back, empty.
    redis.kill();
    revoke(&mut client, vec![token(ISS, "while-down")]).await;
    redis.restart().await;
    let held = exact(&node, &redis.url(), within).await;
    assert_eq!(held.entries.len(), 501);
    assert_eq!(
        held.refills,
        1,
        "one refill into the new Redis:\n{}",
        mirror.log()
    );

    // Flushed under the mirror's live connection: the next write finds the version gone.
    let mut con = connect(&redis.url()).await.unwrap();
    redis::cmd("FLUSHALL")
        .query_async::<()>(&mut con)
        .await
        .unwrap();
    // A stale key a reader (or an old fill) left behind must not survive the refill.
    redis::cmd("SET")
        .arg("recall:rev:00000000000000aa")
        .arg(0)
        .query_async::<()>(&mut con)
        .await
        .unwrap();
    revoke(&mut client, vec![token(ISS, "after-flush")]).await;
    let held = exact(&node, &redis.url(), within).await;
    assert_eq!(held.entries.len(), 502, "{}", mirror.log());
    assert!(!held.entries.contains(&0xaa));
    assert!(
        mirror.log().contains("its data changed under the mirror"),
        "the mirror saw the flush as such:\n{}",
        mirror.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_killed_mid_import_resumes_from_the_version_it_recovered() {
    let node = OneNode::start().await;
    let mut redis = RedisServer::start_persistent().await;
    let dir = tempfile::tempdir().unwrap();
    let certs = mirror_certs(dir.path());
    let mirror = MirrorProc::start(&node.addr, &redis.url(), &certs, dir.path());
    let within = Duration::from_secs(30);
    exact(&node, &redis.url(), within).await;

    let mut client = node.client().await;
    let import = tokio::spawn(async move {
        for b in 0..20 {
            let items = (0..1_000)
                .map(|i| token(ISS, &format!("j{b}-{i}")))
                .collect();
            revoke(&mut client, items).await;
        }
    });
    let url = redis.url();
    eventually("Redis holding part of the import", within, || {
        let url = url.clone();
        async move {
            let n = held(&url).await?.entries.len();
            (n >= 2_000).then_some(()).ok_or(format!("{n} entries"))
        }
    })
    .await;
    redis.restart().await;
    let recovered = held(&redis.url()).await.unwrap();
    assert!(
        recovered.version.is_some(),
        "the append-only file kept the mirror's state"
    );
    import.await.unwrap();
    let end = exact(&node, &redis.url(), within).await;
    assert_eq!(end.entries.len(), 20_000);
    assert_eq!(
        end.refills,
        1,
        "resumed without a refill:\n{}",
        mirror.log()
    );
    assert!(
        mirror.log().contains("Redis failed"),
        "the mirror saw Redis go:\n{}",
        mirror.log()
    );
}
