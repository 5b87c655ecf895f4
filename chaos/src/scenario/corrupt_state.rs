//! One sidecar is SIGKILLed mid-recall and its persisted state file (the subscriber's view,
//! checksummed) is cut to half its length before it is restarted; once it is ready again it is
//! killed once more and restarted from the same file with bytes in its middle flipped. Each time
//! it must refuse the file, say why in its log, and start cold: resync from the cluster, and
//! never answer from what it read (the live history judges every answer it gives after each
//! restart; a cold sidecar answers stale until it has synced). Evidence: the exit statuses, the
//! sizes of the damaged files, and the reasons the sidecar logged for refusing each.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use recall::subscriber::persist;
use tokio::time::Instant;

use super::FaultCtx;
use crate::fleet::Sidecar;
use crate::report::model::FaultRecord;

/// What the sidecar logs when it refuses a state file it cannot read.
const REFUSED: &str = "cannot read the persisted state; starting empty";

/// What the sidecar logs when it starts from a state file: it must not, from a damaged one.
const WARM: &str = "warm start from the persisted state";

/// How the file is damaged.
#[derive(Clone, Copy)]
enum Damage {
    /// Cut to half its length.
    Truncate,
    /// 64 bytes in its middle flipped.
    Corrupt,
}

impl Damage {
    fn words(self) -> &'static str {
        match self {
            Damage::Truncate => "truncated to half",
            Damage::Corrupt => "64 bytes in the middle flipped",
        }
    }

    /// Damages the file at `path`; its new length.
    fn apply(self, path: &Path) -> anyhow::Result<usize> {
        let mut bytes =
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        if bytes.len() < 256 {
            bail!(
                "{} holds only {} bytes: no state to damage",
                path.display(),
                bytes.len()
            );
        }
        match self {
            Damage::Truncate => bytes.truncate(bytes.len() / 2),
            Damage::Corrupt => {
                let mid = bytes.len() / 2;
                for b in &mut bytes[mid..mid + 64] {
                    *b ^= 0xA5;
                }
            }
        }
        std::fs::write(path, &bytes).with_context(|| format!("writing {}", path.display()))?;
        Ok(bytes.len())
    }
}

/// Kills the victim once `ctx.after` revocations are acknowledged, damages its state file and
/// restarts it: truncated first, then corrupted.
pub async fn inject(ctx: &FaultCtx) -> anyhow::Result<Vec<FaultRecord>> {
    ctx.progress.reached(ctx.after).await;
    let sidecar = &ctx.fleet.sidecars[ctx.victim];
    let mut records = Vec::new();
    for damage in [Damage::Truncate, Damage::Corrupt] {
        // There must be a state worth damaging: revocations it persisted (after the first
        // restart, ones it fetched from the cluster again).
        wait_persisted(sidecar, Duration::from_secs(30)).await?;
        records.push(restart_damaged(ctx, sidecar, damage).await?);
    }
    Ok(records)
}

async fn restart_damaged(
    ctx: &FaultCtx,
    sidecar: &Sidecar,
    damage: Damage,
) -> anyhow::Result<FaultRecord> {
    let file = persist::path(&sidecar.data_dir);
    let at_ms = ctx.elapsed_ms();
    let exit = sidecar.proc.lock().expect("sidecar process lock").kill()?;
    let log = sidecar
        .proc
        .lock()
        .expect("sidecar process lock")
        .log()
        .to_owned();
    let refusals_before = count(&log, REFUSED);
    let warm_before = count(&log, WARM);
    let len = damage.apply(&file);
    ctx.progress.release();
    let len = len?;
    let pid = ctx.fleet.restart_after(sidecar, ctx.hold).await?;
    let refused = count(&log, REFUSED) > refusals_before;
    let warm = count(&log, WARM) > warm_before;
    let reason = last_line_with(&log, REFUSED).unwrap_or_else(|| "nothing".into());
    let start = if warm {
        "and then started warm from it"
    } else {
        "and no warm start"
    };
    Ok(FaultRecord {
        what: format!(
            "SIGKILL {}, its state file {}, restart after {} ms",
            sidecar.id,
            damage.words(),
            ctx.hold.as_millis()
        ),
        at_ms,
        healed_ms: Some(ctx.elapsed_ms()),
        proof: format!(
            "{exit}; {} now {len} bytes; restarted as pid {pid}, ready again; it logged: {reason}, {start}",
            file.display()
        ),
        // It refused the file and did not load it anyway.
        took_effect: refused && !warm,
    })
}

/// Waits until the sidecar's state file loads and holds revocations.
async fn wait_persisted(sidecar: &Sidecar, within: Duration) -> anyhow::Result<()> {
    let file = persist::path(&sidecar.data_dir);
    let deadline = Instant::now() + within;
    loop {
        let f = file.clone();
        let loaded = tokio::task::spawn_blocking(move || persist::load(&f)).await?;
        if matches!(loaded, Ok(Some(v)) if !v.fingerprints.is_empty()) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{} persisted no revocations to {} within {within:?}",
                sidecar.id,
                file.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn count(log: &Path, needle: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches(needle)
        .count()
}

/// The last line of `log` that holds `needle`, from the needle on, without terminal colours.
fn last_line_with(log: &Path, needle: &str) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = plain(text.lines().rev().find(|l| l.contains(needle))?);
    Some(line[line.find(needle)?..].trim().to_string())
}

/// `line` without ANSI escape sequences (`ESC [ ... letter`).
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::plain;

    #[test]
    fn strips_terminal_colours() {
        assert_eq!(
            plain(
                "\u{1b}[33m WARN\u{1b}[0m cannot read \u{1b}[3merror\u{1b}[0m\u{1b}[2m=\u{1b}[0mx"
            ),
            " WARN cannot read error=x"
        );
    }
}
