//! Verifiers accept a token until its `exp` plus their leeway, so its revocation must hold as
//! long. With a prune grace of 3 s on a 3-node cluster pruning every 100 ms: a revocation whose
//! expiry passed a second ago is accepted, both it and one expiring now are still held a second
//! after their expiry (dozens of prune checks later), both are pruned once the grace has passed,
//! and every replica holds the same set and digest after the prune. One whose expiry passed
//! longer ago than the grace is refused with a message naming the grace.

use std::time::Duration;

use recall::proto as pb;

use crate::fixture::{Cluster, converged, eventually, leader, revoke, status, token};

const GRACE: Duration = Duration::from_secs(3);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn expiring(value: &str, at_ms: i64) -> pb::Revocation {
    pb::Revocation {
        expires_at_ms: Some(at_ms),
        ..token(value)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_is_pruned_only_after_its_expiry_plus_the_grace_on_every_replica() {
    let cluster = Cluster::start_with(3, |c| {
        c.prune_interval = Duration::from_millis(100);
        c.limits.expiry_grace_ms = GRACE.as_millis() as i64;
    })
    .await;
    let l = leader(&cluster).await;
    let mut lead = cluster.client(l);
    let t0 = now_ms();
    let reply = lead
        .revoke(revoke(vec![
            expiring("expired-a-second-ago", t0 - 1_000),
            expiring("expires-now", t0 + 200),
        ]))
        .await
        .expect("an expiry within the grace is accepted")
        .into_inner();
    assert_eq!(reply.added, 2, "{reply:?}");

    let refused = lead
        .revoke(revoke(vec![expiring("long-gone", t0 - 10_000)]))
        .await
        .expect_err("an expiry beyond the grace is refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().contains("prune grace (3000 ms)"),
        "{}",
        refused.message()
    );

    // A second after both expiries, about ten prune checks later, both still hold everywhere.
    let until = t0 + 1_200;
    while now_ms() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let held = converged(&cluster, reply.version).await;
    for (id, s) in &held {
        assert_eq!(s.entries, 2, "node {id} pruned within the grace: {s:?}");
    }

    // Once the grace has passed for both, they go, and every replica agrees.
    let pruned = eventually("the prune after the grace", Duration::from_secs(20), || {
        let mut lead = lead.clone();
        async move {
            let s = status(&mut lead).await.map_err(|e| e.to_string())?;
            (s.entries == 0)
                .then_some(s.applied_version)
                .ok_or(format!("{} entries held", s.entries))
        }
    })
    .await;
    assert!(
        now_ms() >= t0 + 200 + GRACE.as_millis() as i64,
        "pruned before the grace passed"
    );
    let after = converged(&cluster, pruned).await;
    for (id, s) in &after {
        assert_eq!(s.entries, 0, "node {id}: {s:?}");
    }
}
