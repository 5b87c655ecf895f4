//! Limits that hold against a caller that means harm: 1,000 connections that open a stream and
//! never send their Hello are ended at the Hello deadline (none of them counts as a subscriber),
//! while real subscribers keep subscribing and receiving; a Hello larger than the stream's
//! message limit is refused with a status that names the limit.

use std::time::{Duration, Instant};

use futures::StreamExt;
use recall::proto as pb;
use recall::proto::subscription_client::SubscriptionClient;
use recall::transport::{Dialer, Expect};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::fixture::{OneNode, revoke, subscribe, subscriber_security, token};
use crate::raw::{Raw, hello};

const SILENT: usize = 1_000;
const DEADLINE: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_streams_end_at_the_hello_deadline_and_real_subscribers_keep_working() {
    let node = OneNode::start_with(|c| c.streams.hello_timeout = DEADLINE).await;
    let dialer = Dialer::new(subscriber_security("silent"));
    let opened = Instant::now();
    // Each on its own connection; the request senders are kept so the streams stay open.
    let silent: Vec<_> = futures::stream::iter(0..SILENT)
        .map(|_| {
            let (dialer, addr) = (dialer.clone(), node.addr.clone());
            async move {
                let channel = dialer.connect(&addr, Expect::AnyNode).await.unwrap();
                let (tx, rx) = mpsc::channel::<pb::SubscribeRequest>(1);
                let call = tokio::spawn(async move {
                    SubscriptionClient::new(channel)
                        .subscribe(ReceiverStream::new(rx))
                        .await
                });
                (tx, call)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;

    // Meanwhile a real subscriber joins and follows a write.
    let real = subscribe(node.subscriber_config("real")).await;
    let mut client = node.client().await;
    let v = revoke(&mut client, vec![token("https://iss", "during-the-flood")]).await;
    real.wait_version(v, Duration::from_secs(10)).await.unwrap();

    let mut ended = 0;
    for (tx, call) in silent {
        let status = tokio::time::timeout(DEADLINE * 10, call)
            .await
            .expect("every silent stream ends")
            .unwrap()
            .expect_err("a stream without a Hello is refused");
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
        assert!(status.message().contains("no Hello"), "{status:?}");
        ended += 1;
        drop(tx);
    }
    assert_eq!(ended, SILENT);
    assert!(
        opened.elapsed() >= DEADLINE,
        "streams end at the deadline, not before"
    );
    let live: Vec<String> = node
        .node
        .subscribers
        .list()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(live, ["real"], "silent streams never count as subscribers");
    real.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_hello_is_refused_naming_the_limit() {
    let node = OneNode::start().await;
    let mut big = hello("big", 0, 0, 0);
    big.mode = "x".repeat(100_000);
    let err = Raw::open(&node.addr, big).await.err().expect("refused");
    assert!(
        matches!(
            err.code(),
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
        ),
        "{err:?}"
    );
    assert!(
        err.message().contains("65536"),
        "the limit is named: {}",
        err.message()
    );
}
