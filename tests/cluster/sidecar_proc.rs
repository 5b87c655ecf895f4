//! Real processes beside the cluster's: a `recall sidecar` following every node of a [`Procs`]
//! cluster, and any child killed when its test ends.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use recall::transport::{DEV_TRUST_DOMAIN, Identity};

use crate::fixture::{Procs, pki};
use crate::procs::free_port;

/// A child process killed on drop.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback address no one listens on now, never handed out before in this run.
pub fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// The recall binary run with `args` and the test PKI, its output (at `info`) written to `log`.
pub fn spawn_logged(args: &[&OsStr], log: &Path) -> Killed {
    let log = std::fs::File::create(log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_recall"))
        .args(args)
        .arg("--pki")
        .arg(pki().dir.path())
        .env("RUST_LOG", "info")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawns the recall binary");
    Killed(child)
}

/// Every node's client address, as `--cluster` takes them.
pub fn cluster(procs: &Procs) -> String {
    procs
        .ids()
        .iter()
        .map(|n| procs.addr(*n).to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// A `recall sidecar` process with its own certificate and data directory; its output (at
/// `info`) goes to `sidecar.log` there.
pub struct Sidecar {
    _child: Killed,
    /// Its HTTP check address.
    pub http: String,
    dir: tempfile::TempDir,
}

impl Sidecar {
    /// Starts sidecar `id` following every node of `procs`, with `args` added.
    pub fn spawn(procs: &Procs, id: &str, args: &[&str]) -> Self {
        pki()
            .ca
            .issue_into(
                pki().dir.path(),
                &Identity::subscriber(DEV_TRUST_DOMAIN, id),
            )
            .expect("issues the sidecar's certificate");
        let cluster = cluster(procs);
        let dir = tempfile::tempdir().unwrap();
        let http = free_addr();
        let data = dir.path().join("sidecar");
        let mut all: Vec<&OsStr> = [
            "sidecar",
            "--cluster",
            &cluster,
            "--id",
            id,
            "--http",
            &http,
        ]
        .into_iter()
        .map(OsStr::new)
        .collect();
        all.extend(args.iter().map(OsStr::new));
        all.extend([OsStr::new("--data-dir"), data.as_os_str()]);
        let child = spawn_logged(&all, &dir.path().join("sidecar.log"));
        Self {
            _child: child,
            http,
            dir,
        }
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sidecar.log")).unwrap_or_default()
    }
}
