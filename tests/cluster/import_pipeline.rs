//! The Import stream keeps several chunks in flight and acknowledges them in order: a clean
//! import of many chunks commits every item once, and an import whose fifth chunk holds an
//! invalid item reports that item by its index in the whole import, says exactly which prefix was
//! committed (the four chunks before it), and proposes nothing from the bad chunk or after it.

use recall::proto as pb;
use tonic::Code;

use crate::fixture::{Cluster, converged, leader, token};

const CHUNK: usize = 1_000;

fn chunk(prefix: &str, index: usize) -> pb::ImportChunk {
    pb::ImportChunk {
        items: (0..CHUNK)
            .map(|i| token(format!("{prefix}-{}", index * CHUNK + i)))
            .collect(),
        actor: "tests".into(),
        reason: "pipelined import".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_commit_in_order_and_a_bad_chunk_leaves_exactly_the_prefix_before_it() {
    let cluster = Cluster::start(3).await;
    let l = leader(&cluster).await;
    let mut lead = cluster.client(l);

    let clean: Vec<_> = (0..8).map(|i| chunk("clean", i)).collect();
    let reply = lead
        .import(futures::stream::iter(clean))
        .await
        .expect("a clean import commits")
        .into_inner();
    assert_eq!(reply.added, 8 * CHUNK as u64, "{reply:?}");
    let held = converged(&cluster, reply.version).await;
    assert!(
        held.values().all(|s| s.entries == 8 * CHUNK as u64),
        "{held:?}"
    );

    let mut bad: Vec<_> = (0..7).map(|i| chunk("bad", i)).collect();
    bad[4].items[500] = token("");
    let err = lead
        .import(futures::stream::iter(bad))
        .await
        .expect_err("an invalid item stops the import");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let msg = err.message();
    assert!(msg.contains("items[4500]"), "{msg}");
    assert!(
        msg.contains("the items before item 4000 were committed"),
        "{msg}"
    );
    let version = crate::fixture::status(&mut lead)
        .await
        .unwrap()
        .applied_version;
    let after = converged(&cluster, version).await;
    for (id, s) in &after {
        assert_eq!(
            s.entries,
            (8 + 4) * CHUNK as u64,
            "node {id} holds the clean import and exactly the four chunks before the bad one"
        );
    }
}
