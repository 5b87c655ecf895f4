//! A test cluster of `recall server` processes (the real binary): killed with SIGKILL and
//! restarted on the same data directory and port, or frozen with SIGSTOP and thawed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::fixture::{Client, ELECTION_TIMEOUT, HEARTBEAT, Nodes, client, pki};

/// One `recall server` process of [`Procs`].
struct Proc {
    /// The client port.
    addr: String,
    /// The peer port.
    peer: String,
    /// The HTTP listener (`/metrics`).
    http: String,
    dir: PathBuf,
    log: PathBuf,
    client: Client,
    child: Option<Child>,
}

/// `recall server` processes (the real binary), each with its own port and data directory;
/// their output goes to `node-N.log` in the temporary directory. Dropping it kills them.
pub struct Procs {
    members: BTreeMap<u64, Proc>,
    peers: String,
    flags: Vec<String>,
    _root: TempDir,
}

/// A free loopback port (bound, read, released: the process binds it again with
/// SO_REUSEADDR), never one handed out before in this test run, so two clusters (or a cluster
/// and a sidecar) of tests running side by side never pick the same one.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
        let port = l.local_addr().expect("bound").port();
        if HANDED_OUT
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(port)
        {
            return port;
        }
    }
}

/// How many times a cluster is started again on new ports when a node could not bind one (a
/// listener of another test took it between [`free_port`] and the node's bind).
const START_ATTEMPTS: usize = 3;

impl Procs {
    /// Spawns an `n`-node cluster of processes with `flags`, and the test heartbeat and election
    /// timeout unless `flags` set them; once every node listens, or after [`START_ATTEMPTS`]
    /// tries on new ports.
    pub fn start(n: u64, flags: &[&str]) -> Self {
        for attempt in 1..START_ATTEMPTS {
            let mut procs = Self::spawn_all(n, flags);
            match (1..=n).find(|&id| !procs.listens(id)) {
                None => return procs,
                Some(id) => eprintln!(
                    "node {id} could not start (attempt {attempt}), starting the cluster again \
                     on new ports; its log:\n{}",
                    procs.log(id)
                ),
            }
        }
        Self::spawn_all(n, flags)
    }

    /// Waits until node `id` listens on its three ports, or has exited (false). Past a
    /// deadline it is taken as started: the test's own waits then say what is wrong.
    fn listens(&mut self, id: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        let p = self.members.get_mut(&id).expect("a member");
        loop {
            if let Some(child) = p.child.as_mut()
                && matches!(child.try_wait(), Ok(Some(_)))
            {
                return false;
            }
            if [&p.addr, &p.peer, &p.http]
                .iter()
                .all(|a| TcpStream::connect(a.as_str()).is_ok())
                || Instant::now() > deadline
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn spawn_all(n: u64, flags: &[&str]) -> Self {
        let root = tempfile::tempdir().expect("a temporary directory");
        let members: BTreeMap<u64, Proc> = (1..=n)
            .map(|id| {
                let addr = format!("127.0.0.1:{}", free_port());
                let proc = Proc {
                    client: client(&addr),
                    addr,
                    peer: format!("127.0.0.1:{}", free_port()),
                    http: format!("127.0.0.1:{}", free_port()),
                    dir: root.path().join(format!("node-{id}")),
                    log: root.path().join(format!("node-{id}.log")),
                    child: None,
                };
                (id, proc)
            })
            .collect();
        let peers = members
            .iter()
            .map(|(id, p)| format!("{id}={}", p.peer))
            .collect::<Vec<_>>()
            .join(",");
        let mut flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        for (flag, default) in [
            ("--heartbeat-ms", HEARTBEAT),
            ("--election-timeout-ms", ELECTION_TIMEOUT),
        ] {
            if !flags.iter().any(|f| f == flag) {
                flags.extend([flag.to_string(), default.as_millis().to_string()]);
            }
        }
        let mut procs = Self {
            members,
            peers,
            flags,
            _root: root,
        };
        for id in 1..=n {
            procs.spawn(id, &[]);
        }
        procs
    }

    fn spawn(&mut self, id: u64, env: &[(&str, &str)]) {
        let p = self.members.get_mut(&id).expect("a member");
        assert!(p.child.is_none(), "node {id} is not running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p.log)
            .expect("opens the log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_recall"));
        cmd.arg("server")
            .args(["--id", &id.to_string(), "--listen", &p.addr])
            .args(["--peer-listen", &p.peer])
            .args(["--http-listen", &p.http])
            .arg("--data-dir")
            .arg(&p.dir)
            .arg("--pki")
            .arg(pki().dir.path())
            .args(["--peers", &self.peers])
            .args(&self.flags)
            .args(if self.flags.iter().any(|f| f.starts_with("--step-up")) {
                &[][..]
            } else {
                &["--step-up", "none"][..]
            })
            .env("RUST_LOG", "info,openraft=warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clones the log file"))
            .stderr(log);
        p.child = Some(cmd.spawn().expect("spawns recall server"));
    }

    /// Every node's id, running or not.
    pub fn ids(&self) -> Vec<u64> {
        self.members.keys().copied().collect()
    }

    /// A client of node `id`.
    pub fn client(&self, id: u64) -> Client {
        self.members[&id].client.clone()
    }

    /// Node `id`'s client port.
    pub fn addr(&self, id: u64) -> &str {
        &self.members[&id].addr
    }

    /// Node `id`'s HTTP listener (`/metrics`).
    pub fn http(&self, id: u64) -> &str {
        &self.members[&id].http
    }

    /// Kills node `id` with SIGKILL (no chance to flush or close anything) and reaps it.
    pub fn kill(&mut self, id: u64) {
        let p = self.members.get_mut(&id).expect("a member");
        let mut child = p.child.take().expect("the node is running");
        child.kill().expect("SIGKILL delivered");
        child.wait().expect("reaped");
    }

    /// Starts node `id` again on its data directory and port.
    pub fn restart(&mut self, id: u64) {
        self.spawn(id, &[]);
    }

    /// Freezes node `id` with SIGSTOP: it keeps its sockets open (connections are still
    /// accepted by the kernel) but answers nothing, like a node stuck in a long pause.
    pub fn pause(&self, id: u64) {
        self.signal(id, "-STOP");
    }

    /// Lets node `id` run again after [`Procs::pause`] (SIGCONT).
    pub fn resume(&self, id: u64) {
        self.signal(id, "-CONT");
    }

    fn signal(&self, id: u64, signal: &str) {
        let child = self.members[&id].child.as_ref();
        let pid = child.unwrap_or_else(|| panic!("node {id} is running")).id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("runs kill");
        assert!(status.success(), "kill {signal} {pid} (node {id}) failed");
    }

    /// Starts node `id` again with extra environment variables (e.g. `RUST_LOG`).
    pub fn restart_with_env(&mut self, id: u64, env: &[(&str, &str)]) {
        self.spawn(id, env);
    }

    /// Everything node `id` has logged so far, across restarts.
    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(&self.members[&id].log).unwrap_or_default()
    }

    /// The last lines of every node's log, for a failure message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for id in self.ids() {
            let log = self.log(id);
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(80)..];
            out.push_str(&format!(
                "--- node {id}, last lines of its log:\n{}\n",
                tail.join("\n")
            ));
        }
        out
    }
}

impl Nodes for Procs {
    fn running(&self) -> Vec<(u64, Client)> {
        let running = self.members.iter().filter(|(_, p)| p.child.is_some());
        running.map(|(id, p)| (*id, p.client.clone())).collect()
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        // A failing test shows what the nodes said, whichever assertion failed.
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        for p in self.members.values_mut() {
            if let Some(mut child) = p.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
