//! A link that goes silent without breaking (a blackhole: no FIN, no RST, nothing) is noticed by
//! the silence timeout: the subscriber drops the stream, moves to the next node address, and
//! receives what was revoked meanwhile. Without the timeout it would wait on the dead stream
//! forever.

use std::time::Duration;

use recall_chaos::proxy::{Blackhole, Proxy};

use crate::fixture::{OneNode, revoke, subscribe, token};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_stream_is_dropped_after_the_silence_timeout() {
    let node = OneNode::start().await;
    let proxy = Proxy::start("subscriber→node", node.addr.parse().unwrap())
        .await
        .unwrap();
    let mut config = node.subscriber_config("svc-silent");
    // The proxy first, the node itself second.
    config.cluster = vec![proxy.addr().to_string(), node.addr.clone()];
    config.silence_timeout = Duration::from_millis(600);
    let sub = subscribe(config).await;
    assert_eq!(sub.status().node, Some(proxy.addr().to_string()));

    let link = proxy.link();
    link.blackhole(Blackhole::Both);
    let mut client = node.client().await;
    let version = revoke(&mut client, vec![token("https://iss", "during-silence")]).await;
    sub.wait_version(version, Duration::from_secs(10))
        .await
        .expect("the subscriber left the silent link for the next node");
    let s = sub.status();
    assert_eq!(s.node, Some(node.addr.clone()));
    assert!(s.connects >= 2, "{s:?}");
    assert!(
        link.counters().dropped_down > 0,
        "the blackhole swallowed nothing: {:?}",
        link.counters()
    );
    sub.shutdown().await;
}
