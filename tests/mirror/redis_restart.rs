//! Redis restarted empty under a running mirror (its data lost), and Redis flushed under a live
//! connection: the mirror waits for Redis with backoff, sees the version gone, refills it from a
//! snapshot and ends with exactly the authoritative set, changes made meanwhile included.

use std::time::Duration;

use super::fixture::{OneNode, revoke, token};
use super::support::{MirrorProc, RedisServer, connect, exact, mirror_certs};

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

    // Killed, and a change lands while it is down; then back, empty.
    redis.kill();
    revoke(&mut client, vec![token(ISS, "while-down")]).await;
    redis.restart_empty().await;
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
