//! The etcd baseline: 3 etcd members as real processes on loopback, each revocation a key under
//! [`PREFIX`] (one transaction per batch, sent to member 1), each subscriber a prefix watcher in
//! this process behind its own fault-injecting proxy, spread round-robin over the members.
//!
//! The watchers are written the way a careful etcd user writes one: a watch resumes at the
//! revision after the last one it received in full, so etcd replays whatever a broken connection
//! missed; a link that stays silent for [`SILENCE`] although a progress request goes out every
//! [`PROGRESS_EVERY`] is treated as dead and replaced. A watcher never counts a key it did not
//! receive. The cluster runs without auto-compaction, so a resumed watch cannot find its revision
//! compacted; if it ever did, the watcher stops and the run reports what it missed.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

use super::{BaselineConfig, BaselineFault, Tally, WaveIndex};
use crate::procs::{Proc, free_port, tail};
use crate::proxy::{Link, Proxy};
use crate::report::model::{FaultRecord, SystemRun};
use crate::workload::{self, Workload, WriteProgress};

/// The generated messages and clients of `proto/etcd/v3.proto` (our own subset of etcd's API).
#[allow(missing_docs, clippy::all)]
mod pb {
    tonic::include_proto!("etcdserverpb");
}

use pb::kv_client::KvClient;
use pb::watch_client::WatchClient;

/// The prefix of every revocation key; the token id follows it.
const PREFIX: &str = "/recall/revoked/";
/// Written once the cluster is up: its revision is where the watchers start.
const READY_KEY: &str = "/recall-chaos/ready";
/// etcd members.
const MEMBERS: usize = 3;
/// The largest request etcd accepts (`--max-request-bytes`); also the size past which it splits
/// a watch response into fragments.
const MAX_REQUEST_BYTES: usize = 16 << 20;
/// The largest message the clients accept: a fragment, with room to spare.
const MAX_MESSAGE_BYTES: usize = 4 * MAX_REQUEST_BYTES;
/// How long the cluster gets to accept its first write, and the watchers to be created.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// TCP connect timeout of every client.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How often a watcher asks for a progress response.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// A watcher that heard nothing for this long (connecting included) replaces its connection.
const SILENCE: Duration = Duration::from_secs(2);
/// One attempt of one write.
const WRITE_ATTEMPT: Duration = Duration::from_secs(10);
/// How long a batch is retried before the run fails.
const WRITE_DEADLINE: Duration = Duration::from_secs(60);
/// Retry backoff, doubling from the first to the second.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(1));

/// Runs `workload` through etcd with `fault` injected; the members live under
/// `cfg.work_dir/etcd` and are stopped before this returns.
pub async fn run(
    cfg: &BaselineConfig,
    fault: BaselineFault,
    workload: &Workload,
    etcd_bin: &Path,
) -> anyhow::Result<SystemRun> {
    validate(cfg, fault)?;
    let dir = cfg.work_dir.join("etcd");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cluster = Cluster::start(etcd_bin, &dir, cfg.batch.max(128))?;
    let outcome = async {
        let ready = cluster.wait_ready().await?;
        measure(cfg, fault, workload, &cluster, ready).await
    }
    .await;
    cluster.stop().await;
    outcome
}

fn validate(cfg: &BaselineConfig, fault: BaselineFault) -> anyhow::Result<()> {
    ensure!(cfg.subscribers > 0, "subscribers must be at least 1");
    ensure!(cfg.batch > 0, "batch must be at least 1");
    ensure!(cfg.in_flight > 0, "in_flight must be at least 1");
    if let BaselineFault::SubscriberPartition { victim, .. } = fault {
        ensure!(
            victim < cfg.subscribers,
            "the fault's victim is subscriber {victim}, but there are only {} (numbered from 0)",
            cfg.subscribers
        );
    }
    Ok(())
}

/// Watchers up, writes, fault, settling: the measured part of a run.
async fn measure(
    cfg: &BaselineConfig,
    fault: BaselineFault,
    workload: &Workload,
    cluster: &Cluster,
    ready_revision: i64,
) -> anyhow::Result<SystemRun> {
    let n = workload.len();
    let index = WaveIndex::new(workload, cfg.batch);
    let watchers = Watchers::start(
        cfg.subscribers,
        &index,
        &cluster.clients,
        ready_revision + 1,
    )
    .await?;
    let kv = KvClient::new(endpoint(cluster.clients[0])?.connect().await?)
        .max_decoding_message_size(MAX_MESSAGE_BYTES);

    let written = bar(&cfg.progress, n, "etcd writes acknowledged");
    let progress = fault.progress();
    let (done_tx, done_rx) = watch::channel(false);
    let started = Instant::now();
    let (writes, faults) = tokio::join!(
        async {
            let r = workload::pipelined(
                workload,
                cfg.batch,
                cfg.in_flight,
                &progress,
                |ids, range| {
                    let (kv, written) = (kv.clone(), written.clone());
                    async move {
                        let count = range.len() as u64;
                        let revision = write_batch(kv, &ids, range).await?;
                        written.inc(count);
                        Ok(revision)
                    }
                },
            )
            .await;
            let _ = done_tx.send(true);
            (r, Instant::now())
        },
        inject(fault, &watchers, &progress, done_rx, started),
    );
    let (writes, write_done) = writes;
    if let Err(e) = writes {
        written.abandon_with_message("failed");
        return Err(e);
    }

    let converged = bar(
        &cfg.progress,
        cfg.subscribers as u64,
        "etcd subscribers converged",
    );
    tokio::select! {
        () = super::settle(&watchers.tallies, write_done + cfg.settle) => {}
        () = follow(&converged, &watchers.tallies) => {}
    }
    converged.set_position(complete(&watchers.tallies));
    written.finish_and_clear();
    converged.finish_and_clear();

    let tallies = watchers.tallies.clone();
    watchers.stop().await;
    Ok(super::result(
        "etcd", fault, n, started, write_done, &tallies, &progress, faults,
    ))
}

/// Injects `fault` once enough revocations are acknowledged; the records say what happened.
async fn inject(
    fault: BaselineFault,
    watchers: &Watchers,
    progress: &WriteProgress,
    mut writes_done: watch::Receiver<bool>,
    started: Instant,
) -> Vec<FaultRecord> {
    let BaselineFault::SubscriberPartition {
        victim,
        after,
        hold,
    } = fault
    else {
        return Vec::new();
    };
    let link = &watchers.links[victim];
    tokio::select! {
        biased;
        () = progress.reached(after) => {}
        _ = writes_done.wait_for(|d| *d) => {
            if progress.written() < after {
                return vec![FaultRecord {
                    what: format!("blackhole {} both ways for {} ms", link.name(), hold.as_millis()),
                    at_ms: super::ms(started.elapsed()),
                    healed_ms: None,
                    proof: format!(
                        "never injected: the writes ended at {} revocations, before {after}",
                        progress.written()
                    ),
                    took_effect: false,
                }];
            }
        }
    }
    vec![super::partition(link, hold, started, progress).await]
}

/// Writes one batch as one transaction, retrying until it is acknowledged (a put is idempotent
/// for the subscribers: a repeated key is the same revocation). Returns the batch's revision.
async fn write_batch(
    kv: KvClient<Channel>,
    ids: &[String],
    range: Range<usize>,
) -> anyhow::Result<i64> {
    let txn = pb::TxnRequest {
        success: ids[range.clone()]
            .iter()
            .map(|id| pb::RequestOp {
                request: Some(pb::request_op::Request::RequestPut(put(format!(
                    "{PREFIX}{id}"
                )
                .into_bytes()))),
            })
            .collect(),
        ..Default::default()
    };
    let deadline = Instant::now() + WRITE_DEADLINE;
    let mut backoff = BACKOFF.0;
    loop {
        let error = match timeout(WRITE_ATTEMPT, kv.clone().txn(txn.clone())).await {
            Ok(Ok(r)) => return Ok(r.into_inner().header.map_or(0, |h| h.revision)),
            Ok(Err(status)) if status.code() == Code::InvalidArgument => {
                bail!("etcd refused batch {range:?}: {}", status.message())
            }
            Ok(Err(status)) => format!("{:?}: {}", status.code(), status.message()),
            Err(_) => format!("no answer within {WRITE_ATTEMPT:?}"),
        };
        if Instant::now() + backoff > deadline {
            bail!(
                "batch {range:?} not acknowledged within {WRITE_DEADLINE:?}; last error: {error}"
            );
        }
        tracing::debug!(?range, %error, "etcd write failed; retrying");
        sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF.1);
    }
}

fn put(key: Vec<u8>) -> pb::PutRequest {
    pb::PutRequest {
        key,
        value: b"1".to_vec(),
        ..Default::default()
    }
}

/// A client endpoint for `addr`.
fn endpoint(addr: SocketAddr) -> anyhow::Result<Endpoint> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true))
}

/// The end of the key range holding every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Only 0xff bytes: every key from `prefix` on.
    vec![0]
}

/// The etcd members.
struct Cluster {
    members: Vec<Proc>,
    /// Client addresses, by member.
    clients: Vec<SocketAddr>,
}

impl Cluster {
    /// Starts the members, logging to `dir/mN.log` with data in `dir/mN`.
    fn start(etcd_bin: &Path, dir: &Path, max_txn_ops: usize) -> anyhow::Result<Self> {
        let mut clients = Vec::with_capacity(MEMBERS);
        let mut peers = Vec::with_capacity(MEMBERS);
        for _ in 0..MEMBERS {
            clients.push(SocketAddr::from(([127, 0, 0, 1], free_port()?)));
            peers.push(SocketAddr::from(([127, 0, 0, 1], free_port()?)));
        }
        let initial_cluster = peers
            .iter()
            .enumerate()
            .map(|(i, p)| format!("m{}=http://{p}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::with_capacity(MEMBERS);
        for (i, (client, peer)) in clients.iter().zip(&peers).enumerate() {
            let name = format!("m{}", i + 1);
            let args = [
                "--name".into(),
                name.clone(),
                "--data-dir".into(),
                dir.join(&name).display().to_string(),
                "--listen-client-urls".into(),
                format!("http://{client}"),
                "--advertise-client-urls".into(),
                format!("http://{client}"),
                "--listen-peer-urls".into(),
                format!("http://{peer}"),
                "--initial-advertise-peer-urls".into(),
                format!("http://{peer}"),
                "--initial-cluster".into(),
                initial_cluster.clone(),
                "--initial-cluster-state".into(),
                "new".into(),
                "--initial-cluster-token".into(),
                "recall-chaos".into(),
                "--max-txn-ops".into(),
                max_txn_ops.to_string(),
                "--max-request-bytes".into(),
                MAX_REQUEST_BYTES.to_string(),
                "--logger".into(),
                "zap".into(),
                "--log-level".into(),
                "error".into(),
            ];
            members.push(Proc::spawn(name, etcd_bin, args.to_vec(), dir)?);
        }
        Ok(Self { members, clients })
    }

    /// Waits until member 1 acknowledges a put; returns that put's revision.
    async fn wait_ready(&mut self) -> anyhow::Result<i64> {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            for m in &mut self.members {
                m.check_alive()?;
            }
            let attempt = async {
                let mut kv = KvClient::new(endpoint(self.clients[0])?.connect().await?);
                let r = kv.put(put(READY_KEY.into())).await?.into_inner();
                anyhow::Ok(r.header.map_or(0, |h| h.revision))
            };
            let last_error = match timeout(SILENCE, attempt).await {
                Ok(Ok(revision)) => return Ok(revision),
                Ok(Err(e)) => format!("{e:#}"),
                Err(_) => format!("no answer within {SILENCE:?}"),
            };
            if Instant::now() >= deadline {
                let m1 = &self.members[0];
                bail!(
                    "etcd did not accept a write within {START_DEADLINE:?} ({last_error}); the end of {}:\n{}",
                    m1.log().display(),
                    tail(m1.log(), 20)
                );
            }
            sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM to every member (SIGKILL after 5 s), off the async threads.
    async fn stop(self) {
        let mut members = self.members;
        let _ = tokio::task::spawn_blocking(move || {
            for m in &mut members {
                m.terminate(Duration::from_secs(5));
            }
        })
        .await;
    }
}

/// The subscribers: one watcher task, tally and proxy each.
struct Watchers {
    tallies: Vec<Arc<Tally>>,
    links: Vec<Link>,
    proxies: Vec<Proxy>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Watchers {
    /// Starts `count` watchers expecting every key of `index`, watcher `i` through its own proxy
    /// to member `i % 3`, watching from `start_revision`; returns once every watch is created.
    async fn start(
        count: usize,
        index: &Arc<WaveIndex>,
        members: &[SocketAddr],
        start_revision: i64,
    ) -> anyhow::Result<Self> {
        let (stop, _) = watch::channel(false);
        let mut w = Self {
            tallies: Vec::with_capacity(count),
            links: Vec::with_capacity(count),
            proxies: Vec::with_capacity(count),
            stop,
            tasks: Vec::with_capacity(count),
        };
        let mut created = Vec::with_capacity(count);
        for i in 0..count {
            let name = format!("etcd-watcher-{i}");
            let proxy = Proxy::start(name.clone(), members[i % members.len()]).await?;
            let tally = Tally::new(name, index.clone());
            let (created_tx, created_rx) = watch::channel(false);
            let watcher = Watcher {
                endpoint: endpoint(proxy.addr())?,
                tally: tally.clone(),
                next_revision: start_revision,
                fragments_revision: 0,
                created: created_tx,
            };
            w.tasks.push(tokio::spawn(watcher.run(w.stop.subscribe())));
            w.tallies.push(tally);
            w.links.push(proxy.link());
            w.proxies.push(proxy);
            created.push(created_rx);
        }
        let deadline = Instant::now() + START_DEADLINE;
        for (i, mut rx) in created.into_iter().enumerate() {
            match tokio::time::timeout_at(deadline, rx.wait_for(|c| *c)).await {
                Ok(Ok(_)) => {}
                Ok(Err(_)) => bail!("etcd watcher {i} stopped before its watch was created"),
                Err(_) => bail!("etcd watcher {i}: no watch created within {START_DEADLINE:?}"),
            }
        }
        Ok(w)
    }

    /// Stops the watchers, then the proxies.
    async fn stop(mut self) {
        let _ = self.stop.send(true);
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
    }
}

impl Drop for Watchers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.proxies.clear();
    }
}

/// One subscriber's watch, across reconnections.
struct Watcher {
    endpoint: Endpoint,
    tally: Arc<Tally>,
    /// The revision the next watch starts at: every earlier one was received in full.
    next_revision: i64,
    /// The highest revision in the fragments of a response not yet complete (0: none).
    fragments_revision: i64,
    /// Turned true when the first watch is created.
    created: watch::Sender<bool>,
}

impl Watcher {
    /// Watches until `stop`, reconnecting with backoff whenever a connection fails.
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut backoff = BACKOFF.0;
        let mut reconnects = 0u64;
        loop {
            let from = self.next_revision;
            let error = tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                e = self.session() => e,
            };
            reconnects += 1;
            if self.next_revision > from {
                backoff = BACKOFF.0;
            }
            tracing::debug!(
                watcher = %self.tally.id,
                error = %format!("{error:#}"),
                resume_at = self.next_revision,
                "etcd watch lost; reconnecting"
            );
            if error.is::<Fatal>() {
                tracing::error!(watcher = %self.tally.id, error = %error, "etcd watcher gave up");
                let _ = stop.wait_for(|s| *s).await;
                break;
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                () = sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF.1);
        }
        tracing::info!(
            watcher = %self.tally.id,
            reconnects,
            held = self.tally.held(),
            next_revision = self.next_revision,
            "etcd watcher stopped"
        );
    }

    /// One connection and one watch on it, until it fails (it never ends otherwise).
    async fn session(&mut self) -> anyhow::Error {
        match self.session_inner().await {
            Ok(never) => match never {},
            Err(e) => e,
        }
    }

    async fn session_inner(&mut self) -> anyhow::Result<std::convert::Infallible> {
        self.fragments_revision = 0;
        let (requests, rx) = mpsc::channel(16);
        requests.try_send(self.create_request())?;
        let open = async {
            let channel = self.endpoint.connect().await?;
            let mut client = WatchClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
            anyhow::Ok(client.watch(ReceiverStream::new(rx)).await?.into_inner())
        };
        let mut stream = timeout(SILENCE, open)
            .await
            .map_err(|_| anyhow::anyhow!("no watch stream within {SILENCE:?}"))??;
        let mut ticker = tokio::time::interval(PROGRESS_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut heard = Instant::now();
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    // A full queue already holds a request the server has not read yet.
                    let _ = requests.try_send(progress_request());
                }
                () = tokio::time::sleep_until(heard + SILENCE) => {
                    bail!("nothing heard for {SILENCE:?}: the link is taken for dead");
                }
                message = stream.message() => {
                    let Some(response) = message? else {
                        bail!("the server ended the watch stream");
                    };
                    heard = Instant::now();
                    self.handle(response)?;
                }
            }
        }
    }

    fn create_request(&self) -> pb::WatchRequest {
        pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
                pb::WatchCreateRequest {
                    key: PREFIX.into(),
                    range_end: prefix_end(PREFIX.as_bytes()),
                    start_revision: self.next_revision,
                    progress_notify: true,
                    fragment: true,
                    ..Default::default()
                },
            )),
        }
    }

    /// Records a response's keys; moves the resume revision once a response is complete.
    fn handle(&mut self, response: pb::WatchResponse) -> anyhow::Result<()> {
        if response.canceled {
            if response.compact_revision > 0 {
                return Err(Fatal(format!(
                    "revision {} is compacted (oldest kept: {}); what came between is lost",
                    self.next_revision, response.compact_revision
                ))
                .into());
            }
            bail!("etcd canceled the watch: {}", response.cancel_reason);
        }
        if response.created {
            self.created.send_replace(true);
        }
        let mut keys = Vec::with_capacity(response.events.len());
        for event in &response.events {
            let Some(kv) = &event.kv else { continue };
            self.fragments_revision = self.fragments_revision.max(kv.mod_revision);
            if event.r#type() != pb::event::EventType::Put {
                continue;
            }
            if let Some(id) = kv.key.strip_prefix(PREFIX.as_bytes()) {
                keys.push(String::from_utf8_lossy(id).into_owned());
            }
        }
        tracing::trace!(
            watcher = %self.tally.id,
            events = response.events.len(),
            first = response.events.first().and_then(|e| e.kv.as_ref()).map_or(0, |kv| kv.mod_revision),
            last = response.events.last().and_then(|e| e.kv.as_ref()).map_or(0, |kv| kv.mod_revision),
            fragment = response.fragment,
            watch_id = response.watch_id,
            header_revision = response.header.as_ref().map_or(0, |h| h.revision),
            "etcd watch response"
        );
        if !keys.is_empty() {
            self.tally.receive(keys);
        }
        if !response.fragment && self.fragments_revision > 0 {
            self.next_revision = self.next_revision.max(self.fragments_revision + 1);
            self.fragments_revision = 0;
        }
        Ok(())
    }
}

fn progress_request() -> pb::WatchRequest {
    pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::ProgressRequest(
            pb::WatchProgressRequest {},
        )),
    }
}

/// A failure reconnecting cannot fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Fatal(String);

/// A progress bar on `progress`.
fn bar(progress: &MultiProgress, len: u64, what: &str) -> ProgressBar {
    let bar = progress.add(ProgressBar::new(len));
    if let Ok(style) = ProgressStyle::with_template("{prefix:>26} {bar:40} {pos}/{len} {msg}") {
        bar.set_style(style);
    }
    bar.set_prefix(what.to_string());
    bar
}

/// Subscribers holding everything.
fn complete(tallies: &[Arc<Tally>]) -> u64 {
    tallies.iter().filter(|t| t.complete_at().is_some()).count() as u64
}

/// Keeps `bar` on the number of converged subscribers; never returns.
async fn follow(bar: &ProgressBar, tallies: &[Arc<Tally>]) {
    loop {
        bar.set_position(complete(tallies));
        let least = tallies.iter().map(|t| t.held()).min().unwrap_or(0);
        bar.set_message(format!("(the furthest behind holds {least})"));
        sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_is_the_prefix_with_its_last_byte_plus_one() {
        assert_eq!(prefix_end(b"/recall/revoked/"), b"/recall/revoked0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), b"\0");
    }
}
