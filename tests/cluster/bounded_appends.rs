//! AppendEntries are bounded by bytes: a follower that was down while many entries were
//! committed catches up in AppendEntries of at most `append_bytes` each (the leader splits every
//! larger batch, and counts it in `recall_raft_appends_split_total`), and ends holding exactly
//! what the others hold.

use std::time::Duration;

use prometheus::proto::MetricFamily;
use recall::proto as pb;

use crate::fixture::{Cluster, converged, leader, token};

/// Entries of about 4 KiB, four of them to a 16 KiB AppendEntries.
const CHUNK_BYTES: usize = 4 << 10;
const APPEND_BYTES: usize = 16 << 10;
const CHUNKS: usize = 20;
const ITEMS: usize = 1_000;

fn family(node: &recall::node::RunningNode, name: &str) -> MetricFamily {
    let families = node.metrics.registry().gather();
    families
        .into_iter()
        .find(|f| f.name() == name)
        .unwrap_or_else(|| panic!("the node exports {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_catches_up_on_a_big_import_in_appends_within_the_byte_budget() {
    let mut cluster = Cluster::start_with(3, |c| {
        c.chunk_bytes = CHUNK_BYTES;
        c.append_bytes = APPEND_BYTES;
        c.heartbeat = Duration::from_millis(100);
        c.election_timeout = Duration::from_millis(500);
    })
    .await;
    let l = leader(&cluster).await;
    let behind = cluster
        .ids()
        .into_iter()
        .find(|id| *id != l)
        .expect("a follower");
    cluster.stop(behind).await;

    let chunks: Vec<pb::ImportChunk> = (0..CHUNKS)
        .map(|c| pb::ImportChunk {
            items: (0..ITEMS)
                .map(|i| token(format!("bounded-{}", c * ITEMS + i)))
                .collect(),
            actor: "tests".into(),
            reason: "bounded appends".into(),
        })
        .collect();
    let reply = cluster
        .client(l)
        .import(futures::stream::iter(chunks))
        .await
        .expect("the import commits on the two running nodes")
        .into_inner();
    assert_eq!(reply.added, (CHUNKS * ITEMS) as u64, "{reply:?}");

    cluster.restart(behind).await;
    let held = converged(&cluster, reply.version).await;
    for (id, s) in &held {
        assert_eq!(s.entries, (CHUNKS * ITEMS) as u64, "node {id}: {s:?}");
    }

    let node = cluster.node(l);
    let split = family(node, "recall_raft_appends_split_total").get_metric()[0]
        .get_counter()
        .get_value();
    assert!(
        split > 0.0,
        "the catch-up needed batches larger than the budget"
    );
    let sizes = family(node, "recall_raft_append_bytes");
    let histogram = sizes.get_metric()[0].get_histogram();
    let within = histogram
        .get_bucket()
        .iter()
        .find(|b| b.upper_bound() == APPEND_BYTES as f64)
        .expect("a bucket at the budget")
        .cumulative_count();
    assert!(histogram.get_sample_count() > 0);
    assert_eq!(
        within,
        histogram.get_sample_count(),
        "every AppendEntries sent was at most {APPEND_BYTES} bytes (largest: {} samples above)",
        histogram.get_sample_count() - within
    );
}
