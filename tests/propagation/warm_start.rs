//! A restarted subscriber warm-starts from its data directory and receives only the deltas it
//! missed (no snapshot); one that fell behind the node's retained window receives a snapshot.

use std::time::Duration;

use crate::fixture::{OneNode, revoke, subscribe, token};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_with_deltas_only() {
    let node = OneNode::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut config = node.subscriber_config("svc-warm");
    config.data_dir = Some(data.path().to_path_buf());
    config.persist_every = Duration::from_millis(50);
    let mut client = node.client().await;
    revoke(
        &mut client,
        (0..100)
            .map(|i| token("https://iss", &format!("a{i}")))
            .collect(),
    )
    .await;

    let sub = subscribe(config.clone()).await;
    let v = revoke(&mut client, vec![token("https://iss", "b")]).await;
    sub.wait_version(v, Duration::from_secs(5)).await.unwrap();
    sub.shutdown().await;

    let v = revoke(&mut client, vec![token("https://iss", "c")]).await;
    let sub = Subscriber::start(config).await.unwrap();
    sub.wait_version(v, Duration::from_secs(5)).await.unwrap();
    let s = sub.status();
    assert_eq!(
        s.snapshots, 0,
        "a warm start must resume with deltas: {s:?}"
    );
    assert!(s.deltas >= 1, "{s:?}");
    assert_eq!(s.entries, 102);
    assert_eq!(s.digest, node.node.sm.applied().digest);
    sub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_the_window_gets_a_snapshot() {
    let node = OneNode::start_with(|c| c.state_machine.max_deltas = 4).await;
    let data = tempfile::tempdir().unwrap();
    let mut config = node.subscriber_config("svc-behind");
    config.data_dir = Some(data.path().to_path_buf());
    let mut client = node.client().await;
    let sub = subscribe(config.clone()).await;
    sub.shutdown().await;

    let mut v = 0;
    for i in 0..20 {
        v = revoke(&mut client, vec![token("https://iss", &format!("x{i}"))]).await;
    }
    let sub = Subscriber::start(config).await.unwrap();
    sub.wait_version(v, Duration::from_secs(5)).await.unwrap();
    let s = sub.status();
    assert_eq!(s.snapshots, 1, "{s:?}");
    assert_eq!(s.entries, 20);
    assert_eq!(s.digest, node.node.sm.applied().digest);
    sub.shutdown().await;
}

use recall::subscriber::Subscriber;
