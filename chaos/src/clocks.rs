//! Wall clocks the harness can skew: processes started under libfaketime (Debian's `faketime`
//! package, which `scripts/deps.sh` installs) read their offset from a file of their own, so a
//! scenario moves one process's wall clock while it runs. Only `CLOCK_REALTIME` is faked
//! (`FAKETIME_DONT_FAKE_MONOTONIC=1`): a host whose clock is wrong still has a monotonic clock
//! that ticks at the right rate, and that is the case the clock-skew scenario tests (timers,
//! timeouts and staleness run on the monotonic clock; stamps and expiries on the wall clock).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Where Debian's libfaketime lives: its variant for threaded programs (it serialises the
/// library's cached state; recall runs many threads).
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// How often (seconds) a faked process reads its offset file again.
pub const REREAD_S: u64 = 1;

/// How long a new offset may take to reach a running process: libfaketime rereads the file
/// only once more than [`REREAD_S`] whole seconds have passed since it last read it.
pub const TAKES_EFFECT: std::time::Duration = std::time::Duration::from_secs(2 * REREAD_S + 1);

/// The offset files of one scenario's processes.
pub struct Clocks {
    dir: PathBuf,
}

impl Clocks {
    /// Offset files under `dir`, every one at true time; fails with what to do when libfaketime
    /// is not installed.
    pub fn new(dir: &Path) -> anyhow::Result<Self> {
        if !Path::new(LIBFAKETIME).is_file() {
            bail!(
                "{LIBFAKETIME} is missing: the clock-skew scenario runs a node under libfaketime; \
                 install it with `bash scripts/deps.sh` (Debian package `faketime`)"
            );
        }
        let dir = dir.join("clocks");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self { dir })
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.faketime"))
    }

    /// The environment that starts process `name` under libfaketime at true time.
    pub fn env(&self, name: &str) -> anyhow::Result<Vec<(String, String)>> {
        self.set(name, 0)?;
        Ok(vec![
            ("LD_PRELOAD".into(), LIBFAKETIME.into()),
            (
                "FAKETIME_TIMESTAMP_FILE".into(),
                self.file(name).display().to_string(),
            ),
            ("FAKETIME_CACHE_DURATION".into(), REREAD_S.to_string()),
            ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
        ])
    }

    /// Sets process `name`'s wall clock `offset_s` seconds ahead of true time (behind when
    /// negative); it takes effect within [`TAKES_EFFECT`].
    pub fn set(&self, name: &str, offset_s: i64) -> anyhow::Result<()> {
        let path = self.file(name);
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{offset_s:+}\n"))
            .and_then(|()| std::fs::rename(&tmp, &path))
            .with_context(|| format!("writing {}", path.display()))
    }
}
