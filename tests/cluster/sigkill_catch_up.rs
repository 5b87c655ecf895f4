//! A node killed with SIGKILL loses nothing it acknowledged and catches up when it comes back:
//! by the log when its peers still hold what it missed, and through a snapshot install when they
//! have compacted it away. Either way it ends with the leader's version and digest.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::fixture::{Client, PATIENCE, Procs, converged, leader, revoke_range};

/// Keys per write of the background writer.
const KEYS_PER_WRITE: usize = 5;

/// A client writing batches of fresh keys until stopped, each to the next node in turn; a failed
/// write is retried on the next node until it is acknowledged.
struct Writer {
    acked: watch::Receiver<usize>,
    stop: Arc<AtomicBool>,
    task: JoinHandle<u64>,
}

impl Writer {
    fn start(clients: Vec<Client>) -> Self {
        let (progress, acked) = watch::channel(0);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let mut clients = clients;
            let (mut next, mut last) = (0, 0);
            for n in 0.. {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                let req = revoke_range(&format!("written-{n}"), 0..KEYS_PER_WRITE);
                let deadline = Instant::now() + PATIENCE;
                loop {
                    let client = &mut clients[next % 3];
                    next += 1;
                    match client.revoke(req.clone()).await {
                        Ok(r) => {
                            last = r.into_inner().version;
                            break;
                        }
                        Err(e) => {
                            assert!(Instant::now() < deadline, "write {n} never committed: {e}");
                            // A retry backoff, not a wait for a state.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                progress.send_replace(n + 1);
            }
            last
        });
        Self { acked, stop, task }
    }

    /// Waits until `more` further writes are acknowledged; returns the count so far.
    async fn wait_for(&mut self, more: usize) -> usize {
        let target = *self.acked.borrow() + more;
        let waited = tokio::time::timeout(PATIENCE, self.acked.wait_for(|n| *n >= target)).await;
        *waited
            .expect("the writer keeps committing")
            .expect("the writer runs")
    }

    /// Stops writing; returns how many writes were acknowledged and the last version.
    async fn stop(self) -> (usize, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let last = self.task.await.expect("the writer finishes");
        let acked = *self.acked.borrow();
        (acked, last)
    }
}

/// A follower is killed while a client keeps writing through every node, stays down for a while,
/// then restarts: it catches up by the log and ends equal to the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_during_writes_catches_up_on_restart() {
    let mut procs = Procs::start(3, &[]);
    let leader = leader(&procs).await;
    let victim = procs.ids().into_iter().find(|id| *id != leader).unwrap();
    let clients = procs.ids().iter().map(|id| procs.client(*id)).collect();
    let mut writer = Writer::start(clients);

    writer.wait_for(20).await;
    procs.kill(victim);
    writer.wait_for(20).await;
    procs.restart(victim);
    writer.wait_for(20).await;
    let (acked, last) = writer.stop().await;

    let nodes = converged(&procs, last).await;
    assert_eq!(nodes.len(), 3, "the killed node is back");
    for (id, s) in &nodes {
        assert_eq!(
            s.entries,
            (acked * KEYS_PER_WRITE) as u64,
            "node {id} holds every acknowledged key"
        );
    }
}

/// Entries written while the node is down: more than the log keeps past a snapshot (1000), so
/// the leader's log no longer reaches back to where the node stopped.
const WRITES_WHILE_DOWN: usize = 1_200;
/// Concurrent writers (each write is its own Raft entry).
const CONCURRENCY: usize = 16;

/// What openraft's state machine worker logs when a snapshot from the leader is installed.
const INSTALLED: &str = "install complete snapshot";

/// A follower is killed and stays down while the others write enough entries to snapshot and
/// purge their logs past it: on restart it is brought up to date through a snapshot install, and
/// reaches the leader's version and digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_a_compaction_catches_up_through_a_snapshot() {
    let mut procs = Procs::start(3, &["--snapshot-after", "50"]);
    let leader = leader(&procs).await;
    let victim = procs.ids().into_iter().find(|id| *id != leader).unwrap();
    let reply = procs
        .client(leader)
        .revoke(revoke_range("before", 0..10))
        .await
        .expect("commits")
        .into_inner();
    converged(&procs, reply.version).await;
    procs.kill(victim);

    let writers = (0..CONCURRENCY).map(|w| {
        let mut client = procs.client(leader);
        tokio::spawn(async move {
            let mut last = 0;
            for n in (w..WRITES_WHILE_DOWN).step_by(CONCURRENCY) {
                let reply = client
                    .revoke(revoke_range(&format!("while-down-{n}"), 0..1))
                    .await
                    .expect("commits with two of three nodes")
                    .into_inner();
                last = reply.version;
            }
            last
        })
    });
    let mut last = 0;
    for w in writers.collect::<Vec<_>>() {
        last = last.max(w.await.expect("the writer finishes"));
    }
    assert!(last >= reply.version + WRITES_WHILE_DOWN as u64);

    let log = "info,openraft=warn,openraft::core::sm::worker=info";
    procs.restart_with_env(victim, &[("RUST_LOG", log)]);
    let nodes = converged(&procs, last).await;
    assert_eq!(nodes.len(), 3, "the node is back");
    let expected = 10 + WRITES_WHILE_DOWN as u64;
    assert_eq!(nodes[&victim].entries, expected);
    assert!(nodes[&victim].applied_version >= nodes[&leader].applied_version);
    assert!(
        procs.log(victim).contains(INSTALLED),
        "node {victim} caught up through a snapshot install:\n{}",
        procs.logs()
    );
}

/// Keys imported while the node of the next test is down: 50 entries of about 0.5 MB.
const BIG_IMPORT: usize = 500_000;

/// A follower is killed, the others import 500k keys in requests of 10k (the CLI's chunk size),
/// and the follower restarts with every setting at its default: it must catch up. (With 1 MiB
/// entries and 64 per AppendEntries it never did: every call overran openraft's one-heartbeat
/// budget and was resent whole.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_down_during_a_big_import_catches_up() {
    let mut procs = Procs::start(
        3,
        &["--heartbeat-ms", "100", "--election-timeout-ms", "500"],
    );
    let leader = leader(&procs).await;
    let victim = procs.ids().into_iter().find(|id| *id != leader).unwrap();
    procs.kill(victim);
    let mut client = procs.client(leader);
    let mut last = 0;
    for chunk in 0..BIG_IMPORT / 10_000 {
        let keys = chunk * 10_000..(chunk + 1) * 10_000;
        let reply = client
            .revoke(revoke_range("big", keys))
            .await
            .expect("commits with two of three nodes")
            .into_inner();
        last = reply.version;
    }
    procs.restart(victim);
    let nodes = converged(&procs, last).await;
    assert_eq!(nodes[&victim].entries, BIG_IMPORT as u64);
}
