//! `recall import FILE`: revoke every key of a CSV or JSON-lines file.
//!
//! Formats (chosen by `--format`, else by the extension: `.csv`, `.jsonl`/`.ndjson`):
//! - CSV with a header row `kind,namespace,value[,expires_at]`;
//! - JSON lines: `{"kind":"token","namespace":"https://iss","value":"jti-1","expires_at":"now+1h"}`.
//!
//! `expires_at` takes RFC 3339, unix seconds or `now±DURATION`, and may be empty. Every line is
//! checked first; any bad line is reported with its line number and nothing is sent, unless
//! `--skip-invalid`. Re-running an import is safe: what is already revoked is counted, not
//! revoked twice.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use recall_core::{Kind, Revocation, RevocationKey, Timestamp};
use serde::Deserialize;

use super::ClusterArgs;
use super::client::{status_error, with_retries};
use super::convergence::print_convergence;
use super::time;
use super::write::Why;
use crate::proto as pb;
use crate::wire;

/// Items per streamed chunk.
const CHUNK: usize = 10_000;

/// `recall import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    why: Why,
    #[command(flatten)]
    wait: super::write::Wait,
    /// The file to import.
    file: PathBuf,
    /// csv or jsonl (default: from the file's extension).
    #[arg(long)]
    format: Option<Format>,
    /// Import the valid lines and report the invalid ones, instead of refusing the whole file.
    #[arg(long)]
    skip_invalid: bool,
    /// Do not show a progress bar.
    #[arg(long)]
    quiet: bool,
}

/// An import file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Comma-separated with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    kind: String,
    namespace: String,
    value: String,
    #[serde(default)]
    expires_at: Option<serde_json::Value>,
}

/// A line that cannot be imported.
#[derive(Debug)]
pub struct BadLine {
    /// 1-based line number in the file.
    pub line: usize,
    /// What is wrong.
    pub problem: String,
}

fn expires(v: Option<serde_json::Value>) -> Result<Option<Timestamp>, String> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) => n
            .as_i64()
            .map(|s| Some(Timestamp::from_secs(s)))
            .ok_or_else(|| format!("expires_at {n} is not whole unix seconds")),
        Some(serde_json::Value::String(s)) if s.is_empty() => Ok(None),
        Some(serde_json::Value::String(s)) => time::parse(&s)
            .map(Some)
            .map_err(|e| format!("expires_at: {e}")),
        Some(other) => Err(format!("expires_at {other} is not a time")),
    }
}

fn to_revocation(line: Line, now: Timestamp) -> Result<Revocation, String> {
    let kind: Kind = line.kind.parse().map_err(|e| format!("kind: {e}"))?;
    let r = Revocation {
        key: RevocationKey::new(kind, line.namespace, line.value),
        expires_at: expires(line.expires_at)?,
    };
    // The cluster's own limits decide; the defaults catch what every cluster refuses.
    let limits = recall_core::Limits::default();
    recall_core::validate::validate_revocation(&r, now, &limits).map_err(|e| e.to_string())?;
    Ok(r)
}

/// Reads and checks every line of `path`.
pub fn read(
    path: &std::path::Path,
    format: Format,
) -> anyhow::Result<(Vec<Revocation>, Vec<BadLine>)> {
    let now = time::now();
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    match format {
        Format::Csv => {
            let mut reader = csv::ReaderBuilder::new()
                .flexible(true)
                .trim(csv::Trim::All)
                .from_reader(file);
            for (i, row) in reader.deserialize::<Line>().enumerate() {
                let line = i + 2; // the header is line 1
                match row
                    .map_err(|e| e.to_string())
                    .and_then(|l| to_revocation(l, now))
                {
                    Ok(r) => good.push(r),
                    Err(problem) => bad.push(BadLine { line, problem }),
                }
            }
        }
        Format::Jsonl => {
            use std::io::BufRead;
            for (i, text) in std::io::BufReader::new(file).lines().enumerate() {
                let text = text.with_context(|| format!("reading {}", path.display()))?;
                if text.trim().is_empty() {
                    continue;
                }
                let parsed = serde_json::from_str::<Line>(&text).map_err(|e| e.to_string());
                match parsed.and_then(|l| to_revocation(l, now)) {
                    Ok(r) => good.push(r),
                    Err(problem) => bad.push(BadLine {
                        line: i + 1,
                        problem,
                    }),
                }
            }
        }
    }
    Ok((good, bad))
}

fn format_of(args: &ImportArgs) -> anyhow::Result<Format> {
    if let Some(f) = args.format {
        return Ok(f);
    }
    match args.file.extension().and_then(|e| e.to_str()) {
        Some("csv") => Ok(Format::Csv),
        Some("jsonl" | "ndjson" | "json") => Ok(Format::Jsonl),
        _ => bail!(
            "cannot tell the format of {} from its extension: pass --format csv|jsonl",
            args.file.display()
        ),
    }
}

/// Runs `recall import`.
pub async fn run(args: ImportArgs) -> anyhow::Result<()> {
    let format = format_of(&args)?;
    let (items, bad) = read(&args.file, format)?;
    for b in bad.iter().take(50) {
        eprintln!("{}:{}: {}", args.file.display(), b.line, b.problem);
    }
    if bad.len() > 50 {
        eprintln!("... and {} more bad lines", bad.len() - 50);
    }
    if !bad.is_empty() && !args.skip_invalid {
        bail!(
            "{} of {} lines are invalid; nothing was imported (fix them, or pass --skip-invalid)",
            bad.len(),
            bad.len() + items.len()
        );
    }
    let total = items.len() as u64;
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} revocations  {per_sec}  eta {eta}")
            .expect("a valid progress template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let (actor, reason) = (args.why.actor.clone(), args.why.reason.clone());
    let chunks: Vec<pb::ImportChunk> = items
        .chunks(CHUNK)
        .map(|c| pb::ImportChunk {
            items: c
                .iter()
                .map(|r| pb::Revocation {
                    key: Some(wire::key_to_wire(&r.key)),
                    expires_at_ms: r.expires_at.map(|t| t.as_millis()),
                })
                .collect(),
            actor: actor.clone(),
            reason: reason.clone(),
        })
        .collect();
    let started = std::time::Instant::now();
    let attempts = std::sync::atomic::AtomicU32::new(0);
    // A node that fails mid-import (or a leader change) sends the whole import to the next
    // node: what was committed is counted as already revoked there, never revoked twice.
    let r = with_retries(&args.cluster, |mut client| {
        let (chunks, progress) = (chunks.clone(), bar.clone());
        if attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed) > 0 {
            progress.set_position(0);
        }
        async move {
            let stream =
                futures::stream::iter(chunks).inspect(move |c| progress.inc(c.items.len() as u64));
            client.import(stream).await
        }
    })
    .await?
    .into_inner();
    let tries = attempts.load(std::sync::atomic::Ordering::Relaxed);
    if tries > 1 {
        println!(
            "the import was sent {tries} times (a node failed or the leader changed mid-way); \
             lines committed by an earlier try are counted as already revoked below"
        );
    }

    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "imported {total} lines in {secs:.2}s ({:.0}/s): {} new, {} already revoked, {} skipped as \
         invalid; committed at version {}",
        total as f64 / secs.max(1e-9),
        r.added,
        r.already_present,
        bad.len(),
        r.version
    );
    if let Some(timeout) = args.wait.wait_converged {
        let mut client = super::client::connect(&args.cluster).await?;
        let min = args.wait.expect_subscribers;
        let c = wait_converged(&mut client, r.version, timeout, min).await?;
        print_convergence(&c)?;
    }
    Ok(())
}

/// Polls the cluster's convergence towards `version` until every member answers and every live
/// subscriber, at least `min` of them, has it.
async fn wait_converged(
    client: &mut crate::proto::operator_client::OperatorClient<tonic::transport::Channel>,
    version: u64,
    timeout: Duration,
    min: u32,
) -> anyhow::Result<pb::Convergence> {
    let started = std::time::Instant::now();
    loop {
        let s = client
            .status(pb::StatusRequest {
                version: Some(version),
                local_only: false,
            })
            .await
            .map_err(status_error)?
            .into_inner();
        let mut c = s.convergence.unwrap_or_default();
        c.elapsed_ms = started.elapsed().as_millis() as u64;
        c.min_subscribers = min;
        c.converged &= c.subscribers_applied >= min;
        if c.converged || started.elapsed() >= timeout {
            return Ok(c);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
