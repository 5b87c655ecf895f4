//! The Redis baseline: one real `redis-server`, revocations written as `SET recall:revoked:<id> 1`
//! plus `PUBLISH recall:revoked <id>` in pipelines, and subscribers on `SUBSCRIBE recall:revoked`,
//! each behind its own fault-injecting proxy.
//!
//! The subscribers are written the way a Redis denylist usually is: a dead link (nothing heard,
//! no message and no PONG, for 2 s) or a closed connection means reconnect with backoff and
//! SUBSCRIBE again. Pub/sub has no
//! replay, so whatever was published while a subscriber was away is lost; this module must never
//! paper over that (no resync from the `SET` keys), because the loss is what the baseline shows.

use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, timeout};

use super::{BaselineConfig, BaselineFault, Tally, WaveIndex};
use crate::procs::{Proc, free_port, tail};
use crate::proxy::Proxy;
use crate::report::model::SystemRun;
use crate::workload::{self, Workload};

/// The channel revocations are published on.
pub const CHANNEL: &str = "recall:revoked";
/// The prefix of the key each revocation is stored under.
pub const KEY_PREFIX: &str = "recall:revoked:";

/// How often a subscriber pings its pub/sub connection.
const PING_EVERY: Duration = Duration::from_millis(500);
/// A subscriber that hears nothing (no message, no PONG) for this long, or gets no reply to
/// connect or SUBSCRIBE within it, reconnects.
const DEAD_AFTER: Duration = Duration::from_secs(2);
/// How long the server and the subscribers get to be ready.
const READY_WITHIN: Duration = Duration::from_secs(20);
/// How long a write batch is retried before the run fails.
const WRITE_RETRY_FOR: Duration = Duration::from_secs(30);
/// The writer's per-request timeout (the client's default of 500 ms is too tight for a loaded
/// 2-core machine and would turn slow acks into retries).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the workload through Redis pub/sub under `fault`.
pub async fn run(
    cfg: &BaselineConfig,
    fault: BaselineFault,
    workload: &Workload,
    redis_bin: &Path,
) -> anyhow::Result<SystemRun> {
    let dir = cfg.work_dir.join("redis");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let port = free_port()?;
    let args = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        &dir.to_string_lossy(),
        "--protected-mode",
        "no",
    ]
    .map(String::from)
    .to_vec();
    let mut server = Proc::spawn("redis-server", redis_bin, args, &dir)?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let result = drive(cfg, fault, workload, addr, &mut server).await;
    tokio::task::spawn_blocking(move || server.terminate(Duration::from_secs(5))).await?;
    result
}

/// Everything between the server's start and its end.
async fn drive(
    cfg: &BaselineConfig,
    fault: BaselineFault,
    workload: &Workload,
    addr: SocketAddr,
    server: &mut Proc,
) -> anyhow::Result<SystemRun> {
    let n = workload.len();
    if let BaselineFault::SubscriberPartition { victim, after, .. } = fault {
        if victim >= cfg.subscribers {
            bail!(
                "fault victim {victim} is not a subscriber (there are {})",
                cfg.subscribers
            );
        }
        if after >= n {
            bail!("fault `after` ({after}) must be below the revocations ({n})");
        }
    }
    let url = format!("redis://{addr}/");
    let mut writer = wait_ready(&url, server).await?;

    // Subscribers, each behind its own proxy. Dropping `subscribers` stops them.
    let mut proxies = Vec::with_capacity(cfg.subscribers);
    let mut tallies = Vec::with_capacity(cfg.subscribers);
    let mut reconnects = Vec::with_capacity(cfg.subscribers);
    let mut subscribers = JoinSet::new();
    let index = WaveIndex::new(workload, cfg.batch);
    for i in 0..cfg.subscribers {
        let name = format!("redis-subscriber-{i}");
        let proxy = Proxy::start(name.clone(), addr).await?;
        let client = Client::open(format!("redis://{}/", proxy.addr()))?;
        let tally = Tally::new(name, index.clone());
        let count = Arc::new(AtomicU64::new(0));
        subscribers.spawn(subscribe_forever(client, tally.clone(), count.clone()));
        proxies.push(proxy);
        tallies.push(tally);
        reconnects.push(count);
    }
    wait_subscribed(&mut writer, cfg.subscribers, server).await?;

    let bars = Bars::new(cfg, n);
    let watcher = tokio::spawn(bars.clone().watch(tallies.clone()));
    let progress = fault.progress();
    let started = Instant::now();
    let fault_task = match fault {
        BaselineFault::None => None,
        BaselineFault::SubscriberPartition {
            victim,
            after,
            hold,
        } => {
            let link = proxies[victim].link();
            let progress = progress.clone();
            Some(tokio::spawn(async move {
                progress.reached(after).await;
                super::partition(&link, hold, started, &progress).await
            }))
        }
    };

    let written = workload::pipelined(
        workload,
        cfg.batch,
        cfg.in_flight,
        &progress,
        |ids, range| write_batch(writer.clone(), ids, range, bars.writes.clone()),
    )
    .await;
    let write_done = Instant::now();
    if let Err(e) = written {
        if let Some(f) = fault_task {
            f.abort();
        }
        watcher.abort();
        bars.finish();
        return Err(e.context("writing revocations to Redis"));
    }

    let record = match fault_task {
        Some(task) => Some(task.await.context("the partition task")?),
        None => None,
    };
    super::settle(&tallies, write_done + cfg.settle).await;
    watcher.abort();
    bars.finish();
    subscribers.shutdown().await;

    // The victim's side of the partition, once it had every chance to catch up: how often it
    // reconnected, and what pub/sub never gave it again.
    let mut faults = Vec::new();
    if let (Some(mut record), BaselineFault::SubscriberPartition { victim, .. }) = (record, fault) {
        let tally = &tallies[victim];
        record.proof.push_str(&format!(
            "; {} reconnected {} time(s), missed {} of {n}",
            tally.id,
            reconnects[victim].load(Ordering::Relaxed),
            n.saturating_sub(tally.held() as u64)
        ));
        faults.push(record);
    }
    drop(proxies);

    let run = super::result(
        "redis", fault, n, started, write_done, &tallies, &progress, faults,
    );
    for s in &run.subscribers {
        tracing::info!(subscriber = %s.id, missing = s.missing, converged_ms = ?s.converged_ms, "redis subscriber");
    }
    Ok(run)
}

/// Waits until the server answers PING; returns the writer's connection (directly to it).
async fn wait_ready(url: &str, server: &mut Proc) -> anyhow::Result<MultiplexedConnection> {
    let client = Client::open(url)?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(WRITE_TIMEOUT));
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        server.check_alive()?;
        let attempt = async {
            let mut con = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            redis::cmd("PING").query_async::<String>(&mut con).await?;
            anyhow::Ok(con)
        };
        match timeout(Duration::from_secs(2), attempt).await {
            Ok(Ok(con)) => return Ok(con),
            Ok(Err(e)) if Instant::now() >= deadline => {
                bail!(
                    "redis-server did not answer PING within {READY_WITHIN:?} ({e}); the end of {}:\n{}",
                    server.log().display(),
                    tail(server.log(), 20)
                )
            }
            Err(_) if Instant::now() >= deadline => {
                bail!("redis-server did not answer PING within {READY_WITHIN:?}")
            }
            _ => sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Waits until `PUBSUB NUMSUB` counts every subscriber on the channel.
async fn wait_subscribed(
    con: &mut MultiplexedConnection,
    expected: usize,
    server: &mut Proc,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        server.check_alive()?;
        let (_, count): (String, usize) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(CHANNEL)
            .query_async(con)
            .await
            .context("PUBSUB NUMSUB")?;
        if count >= expected {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "only {count} of {expected} Redis subscribers subscribed within {READY_WITHIN:?}"
            );
        }
        sleep(Duration::from_millis(20)).await;
    }
}

/// Writes one batch as one pipeline (SET and PUBLISH per id), retrying with backoff.
async fn write_batch(
    mut con: MultiplexedConnection,
    ids: Arc<Vec<String>>,
    range: Range<usize>,
    bar: ProgressBar,
) -> anyhow::Result<()> {
    let mut pipe = redis::pipe();
    for id in &ids[range.clone()] {
        pipe.cmd("SET")
            .arg(format!("{KEY_PREFIX}{id}"))
            .arg(1)
            .ignore();
        pipe.cmd("PUBLISH").arg(CHANNEL).arg(id).ignore();
    }
    let deadline = Instant::now() + WRITE_RETRY_FOR;
    let mut backoff = Backoff::default();
    loop {
        match pipe.exec_async(&mut con).await {
            Ok(()) => {
                bar.inc(range.len() as u64);
                return Ok(());
            }
            Err(e) if Instant::now() >= deadline => {
                bail!("batch {range:?} still failing after {WRITE_RETRY_FOR:?}: {e}")
            }
            Err(e) => {
                tracing::debug!(error = %e, ?range, "redis write failed; retrying");
                sleep(backoff.next_delay()).await;
            }
        }
    }
}

/// A subscriber for the whole run: subscribe, read until the link dies, reconnect with backoff.
async fn subscribe_forever(client: Client, tally: Arc<Tally>, reconnects: Arc<AtomicU64>) {
    let mut backoff = Backoff::default();
    loop {
        let e = session(&client, &tally, &mut backoff).await;
        tracing::debug!(subscriber = %tally.id, error = %e, "redis subscription lost; reconnecting");
        reconnects.fetch_add(1, Ordering::Relaxed);
        sleep(backoff.next_delay()).await;
    }
}

/// One connection's life: connect, SUBSCRIBE, then record messages while pings get answered.
/// Returns why it ended.
async fn session(client: &Client, tally: &Tally, backoff: &mut Backoff) -> anyhow::Error {
    let pubsub = match timeout(DEAD_AFTER, client.get_async_pubsub()).await {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return anyhow::Error::new(e).context("connecting"),
        Err(_) => return anyhow::anyhow!("no connection within {DEAD_AFTER:?}"),
    };
    let (mut sink, stream) = pubsub.split();
    match timeout(DEAD_AFTER, sink.subscribe(CHANNEL)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return anyhow::Error::new(e).context("SUBSCRIBE"),
        Err(_) => return anyhow::anyhow!("SUBSCRIBE unconfirmed within {DEAD_AFTER:?}"),
    }
    *backoff = Backoff::default();
    // The link is dead when nothing (no message, no PONG) arrives for DEAD_AFTER: a PONG
    // queued behind a backlog of messages is late, but the link is alive.
    let heard = std::sync::Mutex::new(Instant::now());
    let touch = || *heard.lock().expect("heard lock") = Instant::now();
    let pinger = async {
        loop {
            sleep(PING_EVERY).await;
            match sink.ping::<redis::Value>().await {
                Ok(_) => touch(),
                Err(e) => return anyhow::Error::new(e).context("PING"),
            }
        }
    };
    let watchdog = async {
        loop {
            sleep(Duration::from_millis(100)).await;
            if heard.lock().expect("heard lock").elapsed() > DEAD_AFTER {
                return anyhow::anyhow!("nothing heard (no message, no PONG) for {DEAD_AFTER:?}");
            }
        }
    };
    let reader = async {
        let mut chunks = stream.ready_chunks(512);
        while let Some(msgs) = chunks.next().await {
            touch();
            tally.receive(
                msgs.iter()
                    .map(|m| String::from_utf8_lossy(m.get_payload_bytes()).into_owned()),
            );
        }
        anyhow::anyhow!("connection closed")
    };
    tokio::select! {
        e = pinger => e,
        e = watchdog => e,
        e = reader => e,
    }
}

/// Exponential backoff from 50 ms to 1 s.
struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: Duration::from_millis(50),
        }
    }
}

impl Backoff {
    fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(Duration::from_secs(1));
        d
    }
}

/// The progress bars of a run: writes acknowledged, subscribers holding everything.
#[derive(Clone)]
struct Bars {
    writes: ProgressBar,
    converged: ProgressBar,
}

impl Bars {
    fn new(cfg: &BaselineConfig, n: u64) -> Self {
        let style = ProgressStyle::with_template("{prefix:>22} [{bar:30}] {pos}/{len} {msg}")
            .expect("a valid template")
            .progress_chars("=> ");
        let bar = |len: u64, prefix: &'static str| {
            cfg.progress.add(
                ProgressBar::new(len)
                    .with_style(style.clone())
                    .with_prefix(prefix),
            )
        };
        Self {
            writes: bar(n, "redis writes acked"),
            converged: bar(cfg.subscribers as u64, "redis subs converged"),
        }
    }

    /// Keeps the converged bar up to date until aborted.
    async fn watch(self, tallies: Vec<Arc<Tally>>) {
        loop {
            let done = tallies.iter().filter(|t| t.complete_at().is_some()).count();
            let least = tallies.iter().map(|t| t.held()).min().unwrap_or(0);
            self.converged.set_position(done as u64);
            self.converged.set_message(format!("(least held: {least})"));
            sleep(Duration::from_millis(100)).await;
        }
    }

    fn finish(&self) {
        self.writes.finish_and_clear();
        self.converged.finish_and_clear();
    }
}
