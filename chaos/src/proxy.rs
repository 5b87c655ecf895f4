//! A fault-injecting TCP proxy on loopback: every network link of a chaos run goes through one,
//! and the harness turns its faults on and off.
//!
//! Faults, per direction ("up" is client to server, "down" server to client):
//! - **latency**: every chunk is delivered `latency` after it was read, without lowering the
//!   link's throughput (chunks queue, each with its own deadline);
//! - **blackhole**: bytes read are swallowed and counted. A connection that lost bytes has a gap
//!   in its stream and cannot carry on, so it is reset when the link heals, as a real network's
//!   timeouts would eventually do. Connections opened while a link swallows what clients send
//!   are held: never connected upstream, their bytes swallowed, reset on heal (a SYN nobody
//!   answers). A link that swallows only what servers send (one-way loss) connects new
//!   connections as usual and swallows their answers;
//! - **reset**: every open connection is closed with an RST;
//! - **cut**: new connections are refused (closed at once) and open ones reset: a dead peer.
//!
//! The counters are the proof a fault took effect: a partition that dropped nothing did not
//! partition anything.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Which way bytes travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Client to server.
    Up,
    /// Server to client.
    Down,
}

/// Which directions a blackhole swallows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Blackhole {
    /// Nothing is swallowed.
    #[default]
    None,
    /// Client to server only.
    Up,
    /// Server to client only.
    Down,
    /// Both ways: a partition.
    Both,
}

impl Blackhole {
    fn swallows(self, dir: Direction) -> bool {
        matches!(
            (self, dir),
            (Blackhole::Both, _)
                | (Blackhole::Up, Direction::Up)
                | (Blackhole::Down, Direction::Down)
        )
    }
}

/// The faults a link applies now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Added to every chunk, both ways.
    pub latency: Duration,
    /// What is swallowed.
    pub blackhole: Blackhole,
    /// New connections are closed at once.
    pub refuse: bool,
}

/// What a link has done since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections accepted while blackholed, never connected upstream.
    pub held: u64,
    /// Connections closed at once because the link was cut.
    pub refused: u64,
    /// Connections reset by the harness (a reset fault, or a heal after lost bytes).
    pub resets: u64,
    /// Bytes delivered client to server.
    pub bytes_up: u64,
    /// Bytes delivered server to client.
    pub bytes_down: u64,
    /// Bytes swallowed client to server.
    pub dropped_up: u64,
    /// Bytes swallowed server to client.
    pub dropped_down: u64,
    /// Chunks delivered late because of added latency.
    pub delayed_chunks: u64,
}

#[derive(Default)]
struct AtomicCounters {
    accepted: AtomicU64,
    held: AtomicU64,
    refused: AtomicU64,
    resets: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    dropped_up: AtomicU64,
    dropped_down: AtomicU64,
    delayed_chunks: AtomicU64,
}

impl AtomicCounters {
    fn snapshot(&self) -> Counters {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counters {
            accepted: l(&self.accepted),
            held: l(&self.held),
            refused: l(&self.refused),
            resets: l(&self.resets),
            bytes_up: l(&self.bytes_up),
            bytes_down: l(&self.bytes_down),
            dropped_up: l(&self.dropped_up),
            dropped_down: l(&self.dropped_down),
            delayed_chunks: l(&self.delayed_chunks),
        }
    }

    fn delivered(&self, dir: Direction) -> &AtomicU64 {
        match dir {
            Direction::Up => &self.bytes_up,
            Direction::Down => &self.bytes_down,
        }
    }

    fn dropped(&self, dir: Direction) -> &AtomicU64 {
        match dir {
            Direction::Up => &self.dropped_up,
            Direction::Down => &self.dropped_down,
        }
    }
}

/// One open connection, as the link sees it.
struct Conn {
    /// Turning it true ends the connection's tasks.
    kill: watch::Sender<bool>,
    /// It lost bytes (or was held): reset it when the link heals.
    broken: Arc<AtomicBool>,
    /// Duplicates of its sockets, to close them with an RST.
    sockets: Vec<std::net::TcpStream>,
}

struct Shared {
    name: String,
    upstream: SocketAddr,
    faults: watch::Sender<Faults>,
    counters: AtomicCounters,
    conns: Mutex<HashMap<u64, Conn>>,
    next_id: AtomicU64,
}

/// The harness's handle on a link: set and clear faults, read the counters.
#[derive(Clone)]
pub struct Link {
    shared: Arc<Shared>,
}

impl Link {
    /// The link's name (for reports).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The faults now.
    pub fn faults(&self) -> Faults {
        *self.shared.faults.borrow()
    }

    /// Adds `latency` to every chunk, both ways.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.faults.send_modify(|f| f.latency = latency);
    }

    /// Swallows what travels in `blackhole`'s directions.
    pub fn blackhole(&self, blackhole: Blackhole) {
        self.shared.faults.send_modify(|f| f.blackhole = blackhole);
    }

    /// Refuses new connections and resets the open ones (a dead peer) until [`Link::heal`].
    pub fn cut(&self) {
        self.shared.faults.send_modify(|f| f.refuse = true);
        self.reset();
    }

    /// Clears every fault, then resets the connections that lost bytes.
    pub fn heal(&self) {
        self.shared.faults.send_replace(Faults::default());
        self.reset_where(|c| c.broken.load(Ordering::Relaxed));
    }

    /// Resets every open connection; returns how many.
    pub fn reset(&self) -> usize {
        self.reset_where(|_| true)
    }

    /// What the link has done since it started.
    pub fn counters(&self) -> Counters {
        self.shared.counters.snapshot()
    }

    fn reset_where(&self, pick: impl Fn(&Conn) -> bool) -> usize {
        let mut conns = self.shared.conns.lock().expect("proxy connections lock");
        let ids: Vec<u64> = conns
            .iter()
            .filter(|(_, c)| pick(c))
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            if let Some(c) = conns.remove(id) {
                for s in &c.sockets {
                    // Linger 0: the last close sends an RST instead of a FIN.
                    let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
                }
                let _ = c.kill.send(true);
                self.shared.counters.resets.fetch_add(1, Ordering::Relaxed);
            }
        }
        ids.len()
    }

    fn forget(&self, id: u64) {
        self.shared
            .conns
            .lock()
            .expect("proxy connections lock")
            .remove(&id);
    }
}

/// A running proxy: listens on 127.0.0.1, forwards to one upstream address.
pub struct Proxy {
    addr: SocketAddr,
    link: Link,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy named `name` in front of `upstream`.
    pub async fn start(name: impl Into<String>, upstream: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let link = Link {
            shared: Arc::new(Shared {
                name: name.into(),
                upstream,
                faults: watch::channel(Faults::default()).0,
                counters: AtomicCounters::default(),
                conns: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(0),
            }),
        };
        let task = tokio::spawn(accept_loop(listener, link.clone()));
        Ok(Self { addr, link, task })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The control handle.
    pub fn link(&self) -> Link {
        self.link.clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.link.reset();
    }
}

async fn accept_loop(listener: TcpListener, link: Link) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            return;
        };
        let link = link.clone();
        tokio::spawn(async move {
            if let Err(e) = serve(client, link.clone()).await {
                tracing::debug!(link = link.name(), error = %e, "proxied connection ended");
            }
        });
    }
}

/// Registers a connection; returns its id and kill switch.
fn register(
    link: &Link,
    sockets: Vec<std::net::TcpStream>,
) -> (u64, watch::Receiver<bool>, Arc<AtomicBool>) {
    let id = link.shared.next_id.fetch_add(1, Ordering::Relaxed);
    let (kill, killed) = watch::channel(false);
    let broken = Arc::new(AtomicBool::new(false));
    link.shared
        .conns
        .lock()
        .expect("proxy connections lock")
        .insert(
            id,
            Conn {
                kill,
                broken: broken.clone(),
                sockets,
            },
        );
    (id, killed, broken)
}

/// A tokio stream and a duplicate of its socket (for the RST on reset).
fn with_dup(stream: TcpStream) -> std::io::Result<(TcpStream, std::net::TcpStream)> {
    let std = stream.into_std()?;
    let dup = std.try_clone()?;
    Ok((TcpStream::from_std(std)?, dup))
}

async fn serve(client: TcpStream, link: Link) -> anyhow::Result<()> {
    let c = &link.shared.counters;
    c.accepted.fetch_add(1, Ordering::Relaxed);
    if link.faults().refuse {
        c.refused.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    }
    client.set_nodelay(true)?;
    let (client, client_dup) = with_dup(client)?;
    if link.faults().blackhole.swallows(Direction::Up) {
        c.held.fetch_add(1, Ordering::Relaxed);
        let (id, killed, broken) = register(&link, vec![client_dup]);
        broken.store(true, Ordering::Relaxed);
        let (read, _write) = client.into_split();
        swallow(read, &link, killed).await;
        link.forget(id);
        return Ok(());
    }
    let upstream = TcpStream::connect(link.shared.upstream).await?;
    upstream.set_nodelay(true)?;
    let (upstream, upstream_dup) = with_dup(upstream)?;
    let (id, killed, broken) = register(&link, vec![client_dup, upstream_dup]);
    let (cr, cw) = client.into_split();
    let (ur, uw) = upstream.into_split();
    let up = tokio::spawn(pump(
        cr,
        uw,
        Direction::Up,
        link.clone(),
        killed.clone(),
        broken.clone(),
    ));
    let down = tokio::spawn(pump(ur, cw, Direction::Down, link.clone(), killed, broken));
    let _ = tokio::join!(up, down);
    link.forget(id);
    Ok(())
}

/// Reads and discards until killed (a held connection).
async fn swallow(mut read: OwnedReadHalf, link: &Link, mut killed: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        tokio::select! {
            _ = killed.wait_for(|k| *k) => return,
            r = read.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    link.shared.counters.dropped_up.fetch_add(n as u64, Ordering::Relaxed);
                }
            },
        }
    }
}

/// Moves bytes one way, applying the link's faults to each chunk read.
async fn pump(
    mut src: OwnedReadHalf,
    dst: OwnedWriteHalf,
    dir: Direction,
    link: Link,
    mut killed: watch::Receiver<bool>,
    broken: Arc<AtomicBool>,
) {
    let (tx, rx) = mpsc::channel::<(Instant, Bytes)>(256);
    let writer = tokio::spawn(deliver(rx, dst, dir, link.clone(), killed.clone()));
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = tokio::select! {
            _ = killed.wait_for(|k| *k) => break,
            r = src.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
        };
        let faults = link.faults();
        if faults.blackhole.swallows(dir) {
            link.shared
                .counters
                .dropped(dir)
                .fetch_add(n as u64, Ordering::Relaxed);
            broken.store(true, Ordering::Relaxed);
            continue;
        }
        if !faults.latency.is_zero() {
            link.shared
                .counters
                .delayed_chunks
                .fetch_add(1, Ordering::Relaxed);
        }
        let due = Instant::now() + faults.latency;
        if tx
            .send((due, Bytes::copy_from_slice(&buf[..n])))
            .await
            .is_err()
        {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// Writes each chunk when it is due; on the end of the source, half-closes the destination.
async fn deliver(
    mut rx: mpsc::Receiver<(Instant, Bytes)>,
    mut dst: OwnedWriteHalf,
    dir: Direction,
    link: Link,
    mut killed: watch::Receiver<bool>,
) {
    loop {
        let next = tokio::select! {
            _ = killed.wait_for(|k| *k) => return,
            n = rx.recv() => n,
        };
        let Some((due, chunk)) = next else {
            let _ = dst.shutdown().await;
            return;
        };
        tokio::select! {
            _ = killed.wait_for(|k| *k) => return,
            _ = tokio::time::sleep_until(due) => {}
        }
        if dst.write_all(&chunk).await.is_err() {
            return;
        }
        link.shared
            .counters
            .delivered(dir)
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
}
