//! `recall audit export`, `recall audit keys` and `recall audit verify --file`: the history as
//! a file anyone can check with no server (see [`crate::node::history::export`]).

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::{Context, bail};
use futures::StreamExt;

use super::ClusterArgs;
use super::client::{connect, status_error};
use crate::node::history::export::{self, Line};
use crate::proto as pb;

/// Writes the export of `from..=to` to `output`.
pub async fn export(
    cluster: &ClusterArgs,
    from: u64,
    to: Option<u64>,
    output: &Path,
) -> anyhow::Result<()> {
    let mut stream = connect(cluster)
        .await?
        .audit_export(pb::AuditExportRequest {
            from_version: Some(from),
            to_version: to,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let tmp = output.with_extension("partial");
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?,
    );
    let (mut records, mut checkpoints) = (0u64, 0u64);
    while let Some(line) = stream.next().await {
        let line = line.map_err(status_error)?.line;
        if line.starts_with("{\"record\"") {
            records += 1;
        } else if line.starts_with("{\"checkpoint\"") {
            checkpoints += 1;
        }
        writeln!(file, "{line}").with_context(|| format!("writing {}", tmp.display()))?;
    }
    file.flush()
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, output).with_context(|| format!("renaming to {}", output.display()))?;
    println!(
        "wrote {records} records and {checkpoints} witnessed checkpoints to {}; check it \
         anywhere with `recall audit verify --file {} --trust KEYS`",
        output.display(),
        output.display()
    );
    Ok(())
}

/// Prints the nodes' checkpoint keys.
pub async fn keys(cluster: &ClusterArgs) -> anyhow::Result<()> {
    let r = connect(cluster)
        .await?
        .audit_keys(pb::AuditKeysRequest {})
        .await
        .map_err(status_error)?
        .into_inner();
    println!(
        "# checkpoint keys as this node knows them: compare with another node before trusting"
    );
    for line in r.lines {
        println!("{line}");
    }
    Ok(())
}

/// Verifies an export file with no server.
pub fn verify_offline(file: &Path, trust: Option<&Path>) -> anyhow::Result<()> {
    let trust = trust.context("--trust KEYS is needed with --file")?;
    let text = std::fs::read_to_string(trust)
        .with_context(|| format!("reading the trust file {}", trust.display()))?;
    let keys =
        export::parse_trust(&text).map_err(|e| anyhow::anyhow!("{}: {e}", trust.display()))?;
    let lines = read_export(file)?;
    match export::verify(&lines, &keys) {
        Ok(r) => {
            println!(
                "ok: {} records from version {} to {} link and match their commands; {} \
                 checkpoints verified, the latest witnessed at {}{}",
                r.records,
                r.first,
                r.last,
                r.checkpoints,
                r.witnessed.map_or(
                    "no version (none signed by a quorum of these keys)".into(),
                    |v| { format!("version {v} by a quorum of the {} trusted keys", keys.len()) }
                ),
                if r.replayed {
                    "; replaying the commands gives the signed set digests"
                } else {
                    "; the export does not start at the genesis, so set digests were not replayed"
                }
            );
            Ok(())
        }
        Err(f) => bail!("{}: the history does not verify at {f}", file.display()),
    }
}

/// Reads an export file, naming the line that does not parse.
pub fn read_export(file: &Path) -> anyhow::Result<Vec<Line>> {
    let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let mut lines = Vec::new();
    for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", file.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not an export line", file.display(), n + 1))?;
        lines.push(parsed);
    }
    Ok(lines)
}
