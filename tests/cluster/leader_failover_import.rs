//! Killing the leader in the middle of a 100k-entry import loses nothing and doubles nothing:
//! the client retries each failed request on another node, the import finishes after the
//! re-election, and afterwards every node (the killed one too, once restarted) holds exactly the
//! 100,000 keys, with equal digests.

use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::fixture::{Client, Cluster, Nodes, PATIENCE, Procs, converged, leader, revoke_range};

/// Keys imported.
const TOTAL: usize = 100_000;
/// Keys per request.
const CHUNK: usize = 10_000;

/// Raft entries of about 16 KiB (some 350 keys): each request becomes about 30 entries, and an
/// AppendEntries stays small enough to finish within a heartbeat even in a debug build on a busy
/// machine (see `sigkilled_leader_with_default_settings` for what happens with the default 1 MiB).
const CHUNK_BYTES: usize = 16 << 10;

/// What the importing client saw.
struct Outcome {
    /// Every acknowledged reply, by chunk.
    replies: Vec<recall::proto::WriteReply>,
    /// Every failed attempt, for the record.
    errors: Vec<String>,
}

/// Sends the import chunk by chunk, starting with `clients[0]`; a failed request is retried on
/// the next node (revoking is idempotent, so a retry is safe whatever the failed attempt did).
/// Publishes how many chunks were acknowledged.
async fn import(mut clients: Vec<(u64, Client)>, progress: watch::Sender<usize>) -> Outcome {
    let mut out = Outcome {
        replies: Vec::new(),
        errors: Vec::new(),
    };
    let mut node = 0;
    for chunk in 0..TOTAL / CHUNK {
        let req = revoke_range("import", chunk * CHUNK..(chunk + 1) * CHUNK);
        let deadline = Instant::now() + PATIENCE;
        loop {
            let (id, client) = &mut clients[node % 3];
            match client.revoke(req.clone()).await {
                Ok(reply) => {
                    out.replies.push(reply.into_inner());
                    break;
                }
                Err(e) => {
                    out.errors.push(format!("chunk {chunk} on node {id}: {e}"));
                    assert!(
                        Instant::now() < deadline,
                        "chunk {chunk} was never acknowledged: {:#?}",
                        out.errors
                    );
                    node += 1;
                    // A retry backoff, not a wait for a state.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        progress.send_replace(chunk + 1);
    }
    out
}

/// The importer targets the leader; the leader is stopped right after the third chunk of ten is
/// acknowledged, so the next request is cut off in flight. The nodes run in this process with the
/// default heartbeat and election timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_mid_import_loses_nothing_and_doubles_nothing() {
    let mut cluster = Cluster::start_with(3, |c| {
        c.chunk_bytes = CHUNK_BYTES;
        c.heartbeat = Duration::from_millis(100);
        c.election_timeout = Duration::from_millis(500);
        c.write_timeout = Duration::from_secs(3);
    })
    .await;
    let first_leader = leader(&cluster).await;
    let (importer, acked_at_kill) = start_import_and_wait(&cluster, first_leader).await;
    cluster.stop(first_leader).await;
    let outcome = importer.await.expect("the import finishes");

    check(&cluster, first_leader, acked_at_kill, &outcome).await;
    cluster.restart(first_leader).await;
    check_every_node(&cluster, &outcome).await;
}

/// The same scenario with `recall server` processes at their defaults (entries of about 128 KiB,
/// at most 8 per AppendEntries, heartbeat 100 ms), the leader killed with SIGKILL: replication of
/// the backlog fits openraft's one-heartbeat budget per call, so the new leader gets a quorum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_leader_with_default_settings() {
    let mut procs = Procs::start(
        3,
        &["--heartbeat-ms", "100", "--election-timeout-ms", "500"],
    );
    let first_leader = leader(&procs).await;
    let (importer, acked_at_kill) = start_import_and_wait(&procs, first_leader).await;
    procs.kill(first_leader);
    let outcome = match importer.await {
        Ok(outcome) => outcome,
        Err(e) => panic!("the import failed: {e}\n{}", procs.logs()),
    };

    check(&procs, first_leader, acked_at_kill, &outcome).await;
    procs.restart(first_leader);
    check_every_node(&procs, &outcome).await;
}

/// Starts the importer against the leader first; returns it once three chunks are acknowledged,
/// with the count acknowledged by then.
async fn start_import_and_wait(
    nodes: &impl Nodes,
    leader: u64,
) -> (tokio::task::JoinHandle<Outcome>, usize) {
    let mut clients = nodes.running();
    let at = clients.iter().position(|(id, _)| *id == leader).unwrap();
    clients.rotate_left(at);
    let (progress, mut acked) = watch::channel(0);
    let importer = tokio::spawn(import(clients, progress));
    let acked_at_kill = *acked
        .wait_for(|n| *n >= 3)
        .await
        .expect("the importer runs");
    (importer, acked_at_kill)
}

/// The import was cut by the kill, recovered through another leader, and every acknowledged
/// request accounts for each of its keys exactly once.
async fn check(nodes: &impl Nodes, killed: u64, acked_at_kill: usize, outcome: &Outcome) {
    assert!(acked_at_kill < TOTAL / CHUNK, "the leader died mid-import");
    assert!(
        !outcome.errors.is_empty(),
        "the killed leader cut off at least one request"
    );
    let new_leader = leader(nodes).await;
    assert_ne!(new_leader, killed);
    assert_eq!(outcome.replies.len(), TOTAL / CHUNK);
    for (chunk, r) in outcome.replies.iter().enumerate() {
        assert_eq!(
            r.added + r.already_present,
            CHUNK as u64,
            "chunk {chunk}: every key of an acknowledged request is accounted for"
        );
    }
    let added: u64 = outcome.replies.iter().map(|r| r.added).sum();
    assert!(added <= TOTAL as u64, "no key was added twice ({added})");
}

/// Every node, the restarted one included, holds exactly the imported keys, with equal digests.
async fn check_every_node(nodes: &impl Nodes, outcome: &Outcome) {
    let last = outcome.replies.iter().map(|r| r.version).max().unwrap();
    let statuses = converged(nodes, last).await;
    assert_eq!(statuses.len(), 3, "the killed leader caught up too");
    for (id, s) in &statuses {
        assert_eq!(s.entries, TOTAL as u64, "node {id} holds exactly every key");
    }
}

/// `recall import` through a list of nodes survives a SIGKILL of the node it streams to: it
/// sends the import again to the next node (writes are idempotent) and succeeds without a
/// re-run, and the cluster holds every line exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_import_survives_the_death_of_its_node() {
    const LINES: usize = 50_000;
    let mut procs = Procs::start(3, &[]);
    let l = leader(&procs).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("revoked.csv");
    let mut csv = String::from("kind,namespace,value,expires_at\n");
    for i in 0..LINES {
        csv.push_str(&format!("token,{},cli-{i},\n", crate::fixture::ISSUER));
    }
    std::fs::write(&file, csv).unwrap();
    // The leader first, so the stream dies with it.
    let order: Vec<u64> = std::iter::once(l)
        .chain(procs.ids().into_iter().filter(|i| *i != l))
        .collect();
    let cluster = order
        .iter()
        .map(|i| procs.addr(*i).to_string())
        .collect::<Vec<_>>()
        .join(",");
    let import = tokio::process::Command::new(env!("CARGO_BIN_EXE_recall"))
        .arg("import")
        .arg(&file)
        .args(["--quiet", "--cluster", &cluster, "--pki"])
        .arg(crate::fixture::pki().dir.path())
        .env_remove("RECALL_CLUSTER")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs recall import");
    // Kill the node once the import is under way (its first entries are committed).
    let c = procs.client(l);
    crate::fixture::eventually("the import to start committing", PATIENCE, || {
        let mut c = c.clone();
        async move {
            let s = crate::fixture::status(&mut c)
                .await
                .map_err(|e| e.to_string())?;
            (s.entries > 0)
                .then_some(())
                .ok_or("nothing yet".to_string())
        }
    })
    .await;
    drop(c);
    procs.kill(l);
    let out = tokio::time::timeout(Duration::from_secs(120), import.wait_with_output())
        .await
        .expect("the import ends")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        procs.logs()
    );
    assert!(
        stdout.contains(&format!("imported {LINES} lines")),
        "{stdout}"
    );
    // At least one more try went to another node (more when the next node had no leader yet,
    // as on a loaded machine); every line is still counted once below.
    let sends: u32 = stdout
        .split("the import was sent ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the import must say it was sent again: {stdout}"));
    assert!(
        sends >= 2,
        "the node died mid-import and the import went to the next one: {stdout}"
    );
    let states = converged(&procs, 1).await;
    for (id, s) in &states {
        assert_eq!(s.entries as usize, LINES, "node {id} holds every line once");
    }
}
