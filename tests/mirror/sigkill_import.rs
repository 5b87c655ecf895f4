//! The mirror SIGKILLed in the middle of an import and started again resumes from the version
//! Redis holds (no second refill: the node still has the deltas after it) and ends with exactly
//! the authoritative set.

use std::time::Duration;

use super::fixture::{OneNode, revoke, token};
use super::support::{MirrorProc, RedisServer, eventually, exact, held, mirror_certs};

const BATCHES: usize = 20;
const PER_BATCH: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_killed_mid_import_resumes_from_redis_and_ends_exact() {
    let node = OneNode::start().await;
    let redis = RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let certs = mirror_certs(dir.path());
    let mut mirror = MirrorProc::start(&node.addr, &redis.url(), &certs, dir.path());
    let within = Duration::from_secs(30);
    exact(&node, &redis.url(), within).await;

    let mut client = node.client().await;
    let import = tokio::spawn(async move {
        let mut last = 0;
        for b in 0..BATCHES {
            let items = (0..PER_BATCH)
                .map(|i| token("https://idp.example", &format!("jti-{b}-{i}")))
                .collect();
            last = revoke(&mut client, items).await;
        }
        last
    });

    // Kill it once Redis holds part of the import, not all of it.
    let url = redis.url();
    let partial = eventually("Redis holding part of the import", within, || {
        let url = url.clone();
        async move {
            let h = held(&url).await?;
            (h.entries.len() >= 2 * PER_BATCH)
                .then_some(h.version.unwrap_or(0))
                .ok_or(format!("{} entries", h.entries.len()))
        }
    })
    .await;
    mirror.kill();
    let at_kill = held(&redis.url()).await.unwrap();
    assert!(at_kill.version >= Some(partial));
    mirror.restart();

    let last = import.await.unwrap();
    assert!(
        at_kill.entries.len() < BATCHES * PER_BATCH || at_kill.version < Some(last),
        "the kill came after the import had been mirrored whole"
    );
    let end = exact(&node, &redis.url(), within).await;
    assert_eq!(end.entries.len(), BATCHES * PER_BATCH);
    assert_eq!(
        end.refills,
        1,
        "the restarted mirror resumed from Redis's version without a refill:\n{}",
        mirror.log()
    );
    let resumed = format!("version={}", at_kill.version.unwrap());
    assert!(
        mirror
            .log()
            .lines()
            .any(|l| l.contains("mirroring") && l.contains(&resumed)),
        "the restarted mirror said it resumed from {resumed}:\n{}",
        mirror.log()
    );
}
