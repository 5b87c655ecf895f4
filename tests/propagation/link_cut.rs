//! A subscriber whose link is cut while 50k revocations are committed reconnects, resumes from
//! its applied version and converges to the node's exact set: nothing lost, nothing skipped.

use std::time::Duration;

use crate::fixture::{OneNode, revoke, subscribe, token};
use recall_chaos::proxy::Proxy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_link_during_50k_revocations_converges_with_equal_digest() {
    let node = OneNode::start().await;
    let proxy = Proxy::start("subscriber→node", node.addr.parse().unwrap())
        .await
        .unwrap();
    let mut config = node.subscriber_config("svc-cut");
    config.cluster = vec![proxy.addr().to_string()];
    let sub = subscribe(config).await;
    let mut client = node.client().await;

    let mut last = 0;
    for batch in 0..50 {
        let items = (0..1_000)
            .map(|i| token("https://iss", &format!("b{batch}-t{i}")))
            .collect();
        last = revoke(&mut client, items).await;
        if batch == 10 {
            proxy.link().cut();
        }
        if batch == 30 {
            proxy.link().heal();
        }
    }
    if let Err(e) = sub.wait_version(last, Duration::from_secs(30)).await {
        panic!(
            "{e:#}: {:?} node {:?}",
            sub.status(),
            node.node.sm.applied()
        );
    }
    let s = sub.status();
    assert_eq!(s.entries, 50_000);
    assert_eq!(s.digest, node.node.sm.applied().digest);
    assert!(s.connects >= 2, "the subscriber never reconnected: {s:?}");
    assert_eq!(s.digest_mismatches, 0);
    sub.shutdown().await;
}
