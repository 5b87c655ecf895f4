//! Real processes: started with their output in a log file, killed with SIGKILL and restarted
//! with the same command, paused with SIGSTOP and resumed with SIGCONT. Each fault returns the
//! evidence that it took effect (the exit status, the process state), so a scenario can fail
//! when a fault did not happen.

use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The ports [`free_port`] hands out: below Linux's ephemeral range (32768 and up), so no
/// outgoing connection or `bind(0)` of this or another process takes one between the check and
/// the child's own bind.
const PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A free port on 127.0.0.1 for a child process to listen on. Each call hands out a different
/// port (checked bindable, then released for the child).
pub fn free_port() -> anyhow::Result<u16> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let span = u32::from(PORTS.end - PORTS.start);
    // Start at a place that differs between runs, so parallel runs rarely probe the same ports.
    let offset = std::process::id() * 7919;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = PORTS.start + ((n + offset) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port on 127.0.0.1 in {PORTS:?}")
}

/// A process the harness owns. Dropping it kills it.
pub struct Proc {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
    starts: u32,
}

impl Proc {
    /// Starts `program args`, appending its stdout and stderr to `log_dir/NAME.log`.
    pub fn spawn(
        name: impl Into<String>,
        program: &Path,
        args: Vec<String>,
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        Self::spawn_with_env(name, program, args, Vec::new(), log_dir)
    }

    /// [`Proc::spawn`] with extra environment variables (kept for every restart).
    pub fn spawn_with_env(
        name: impl Into<String>,
        program: &Path,
        args: Vec<String>,
        env: Vec<(String, String)>,
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        let name = name.into();
        let mut p = Self {
            log: log_dir.join(format!("{name}.log")),
            name,
            program: program.to_path_buf(),
            args,
            env,
            child: None,
            starts: 0,
        };
        p.start()?;
        Ok(p)
    }

    fn start(&mut self) -> anyhow::Result<()> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let mut command = Command::new(&self.program);
        // A child is configured by its flags alone: recall reads RECALL_* variables (a CA, a
        // certificate, a config file) for every flag not given, and the harness's environment
        // must not choose them.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("RECALL_") {
                command.env_remove(&key);
            }
        }
        let child = command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .env("RUST_LOG", "warn,recall=info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .spawn()
            .with_context(|| format!("starting {} ({})", self.name, self.program.display()))?;
        self.child = Some(child);
        self.starts += 1;
        Ok(())
    }

    /// The name it was started under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Its pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Fails if it has exited (with the tail of its log).
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        let Some(child) = self.child.as_mut() else {
            bail!("{} is not running", self.name);
        };
        if let Some(status) = child.try_wait()? {
            bail!(
                "{} exited ({status}); the end of {}:\n{}",
                self.name,
                self.log.display(),
                tail(&self.log, 20)
            );
        }
        Ok(())
    }

    /// SIGKILL, then waits for it; the proof is the exit status.
    pub fn kill(&mut self) -> anyhow::Result<String> {
        let Some(mut child) = self.child.take() else {
            bail!("{} is not running", self.name);
        };
        let pid = child.id();
        child
            .kill()
            .with_context(|| format!("SIGKILL {}", self.name))?;
        let status = child.wait()?;
        match status.signal() {
            Some(9) => Ok(format!("pid {pid} exited by signal 9 (SIGKILL)")),
            _ => bail!(
                "{} (pid {pid}) ended with {status}, not by SIGKILL",
                self.name
            ),
        }
    }

    /// Starts it again with the same command; returns the new pid.
    pub fn restart(&mut self) -> anyhow::Result<u32> {
        if self.child.is_some() {
            bail!("{} is still running", self.name);
        }
        self.start()?;
        Ok(self.pid().expect("just started"))
    }

    /// SIGSTOP; the proof is the state the kernel reports.
    pub fn pause(&self) -> anyhow::Result<String> {
        let pid = self.signal(Signal::SIGSTOP)?;
        wait_state(pid, |s| s == 'T' || s == 't', Duration::from_secs(2))
            .map(|s| format!("pid {pid} in state {s} (stopped)"))
    }

    /// SIGCONT; the proof is the state the kernel reports.
    pub fn resume(&self) -> anyhow::Result<String> {
        let pid = self.signal(Signal::SIGCONT)?;
        wait_state(pid, |s| s != 'T' && s != 't', Duration::from_secs(2))
            .map(|s| format!("pid {pid} in state {s} (running)"))
    }

    fn signal(&self, sig: Signal) -> anyhow::Result<u32> {
        let pid = self
            .pid()
            .with_context(|| format!("{} is not running", self.name))?;
        kill(Pid::from_raw(pid as i32), sig).with_context(|| format!("{sig} {}", self.name))?;
        Ok(pid)
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub fn terminate(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGCONT);
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The scheduler state of `pid` (`R`, `S`, `T`, ...), from `/proc/PID/stat`.
fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: the state follows the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

fn wait_state(pid: u32, ok: impl Fn(char) -> bool, within: Duration) -> anyhow::Result<char> {
    let deadline = Instant::now() + within;
    loop {
        match state(pid) {
            Some(s) if ok(s) => return Ok(s),
            Some(s) if Instant::now() >= deadline => {
                bail!("pid {pid} stayed in state {s}")
            }
            None => bail!("pid {pid} is gone"),
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// The last `n` lines of a log file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
