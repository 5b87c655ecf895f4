//! The export file and its offline verification. `recall audit export` writes JSON lines: the
//! key bindings the cluster knows (for reference only), every record with the command it
//! covers, and every witnessed checkpoint. `recall audit verify --file` checks it with no server
//! against keys the verifier trusts from its own copy: every link, every command hash, every
//! signature and quorum, and that replaying the commands from the genesis gives the set digest a
//! quorum signed. It names the first version that fails and why.

use std::collections::BTreeMap;

use recall_core::{Digest, RevocationSet};
use serde::{Deserialize, Serialize};

use super::body::Body;
use super::checkpoint::Witnessed;
use crate::node::audit::{AuditRecord, GENESIS, Verifier};

/// One line of an export file.
#[allow(clippy::large_enum_variant)] // records are nearly every line; boxing them buys nothing
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Line {
    /// The checkpoint keys the exporting node knows, by node id (hex). For reference: a
    /// verifier trusts the keys it got on its own, never these.
    Keys(BTreeMap<u64, String>),
    /// One audit record and the command its `command_hash` covers.
    Record {
        /// The record.
        record: AuditRecord,
        /// Its command.
        body: Body,
    },
    /// A checkpoint a quorum of nodes signed.
    Checkpoint(Witnessed),
}

/// Parses a trust file: one `NODE_ID HEX_ED25519_KEY` per line (`#` starts a comment), as
/// `recall audit keys` prints.
pub fn parse_trust(text: &str) -> Result<BTreeMap<u64, [u8; 32]>, String> {
    let mut keys = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let bad = |why: &str| format!("line {}: {why}; expected `NODE_ID HEX_KEY`", n + 1);
        let mut parts = line.split_whitespace();
        let (Some(id), Some(key), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("two fields"));
        };
        let id: u64 = id.parse().map_err(|_| bad("the node id is a number"))?;
        let key: [u8; 32] = hex::decode(key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("the key is 64 hex digits"))?;
        keys.insert(id, key);
    }
    if keys.is_empty() {
        return Err("the trust file names no keys".into());
    }
    Ok(keys)
}

/// What an export that verified covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Records checked.
    pub records: u64,
    /// The first and last record's versions (0 when there are none).
    pub first: u64,
    /// See `first`.
    pub last: u64,
    /// Witnessed checkpoints checked.
    pub checkpoints: usize,
    /// The latest version a quorum of trusted nodes signed, if any.
    pub witnessed: Option<u64>,
    /// Whether the commands were replayed from the genesis (an export that starts later cannot
    /// be: its digests are not checked).
    pub replayed: bool,
}

/// The first thing in an export that does not hold.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("version {version}: {reason}")]
pub struct Failure {
    /// The first version at fault.
    pub version: u64,
    /// What is wrong there.
    pub reason: String,
}

/// Verifies an export against the `trust`ed node keys (a quorum is a majority of them).
pub fn verify(lines: &[Line], trust: &BTreeMap<u64, [u8; 32]>) -> Result<Report, Failure> {
    let mut failures: Vec<Failure> = Vec::new();
    let records: Vec<(&AuditRecord, &Body)> = lines
        .iter()
        .filter_map(|l| match l {
            Line::Record { record, body } => Some((record, body)),
            _ => None,
        })
        .collect();
    let mut checkpoints: Vec<&Witnessed> = lines
        .iter()
        .filter_map(|l| match l {
            Line::Checkpoint(w) => Some(w),
            _ => None,
        })
        .collect();
    checkpoints.sort_by_key(|w| w.version);

    let from_genesis = records.first().is_none_or(|(r, _)| r.prev == GENESIS);
    let mut chain = match records.first() {
        Some((r, _)) if !from_genesis => Verifier::anchored(r.prev),
        _ => Verifier::new(),
    };
    let mut set: Option<RevocationSet> = None;
    let mut replayed = from_genesis;
    let mut heads: BTreeMap<u64, [u8; 32]> = BTreeMap::new();
    let mut digests: BTreeMap<u64, Digest> = BTreeMap::new();
    for (record, body) in &records {
        let fail = |reason: String| Failure {
            version: record.version,
            reason,
        };
        if let Err(b) = chain.push(record) {
            failures.push(Failure {
                version: b.version,
                reason: b.reason,
            });
            break;
        }
        if body.hash() != record.command_hash {
            failures.push(fail(
                "the command kept with this record does not hash to the record's command_hash: \
                 the command was changed"
                    .into(),
            ));
            break;
        }
        if let Some(p) = body.summary_prefix()
            && !record.summary.starts_with(p)
        {
            failures.push(fail(format!(
                "the record says {:?}, but its command is of another kind",
                record.summary
            )));
            break;
        }
        heads.insert(record.version, record.hash);
        if replayed {
            match (body, &mut set) {
                (Body::Bootstrap { seed, .. }, None) => {
                    let mut s = RevocationSet::new(*seed);
                    let _ = s.advance(record.version);
                    set = Some(s);
                }
                (b, Some(s)) => {
                    let step = match b.replayed() {
                        Some(cmd) => s.apply(record.version, cmd).map(|_| ()),
                        None => s.advance(record.version),
                    };
                    if let Err(e) = step {
                        failures.push(fail(format!("the command does not replay: {e}")));
                        break;
                    }
                }
                (_, None) => replayed = false,
            }
            if let Some(s) = &set {
                digests.insert(record.version, s.digest());
            }
        }
    }

    // Checkpoints after the first broken record prove nothing more: it is what fails.
    let broken_at = failures.first().map_or(u64::MAX, |f| f.version);
    let mut last_good: Option<u64> = None;
    for w in checkpoints.iter().filter(|w| w.version < broken_at) {
        let fail = |reason: String| Failure {
            version: w.version,
            reason,
        };
        if let Err(why) = w.verify_quorum(trust) {
            failures.push(fail(why));
            break;
        }
        let since = last_good.map_or_else(
            || "since the start of the export".to_string(),
            |v| format!("after version {v}, the last checkpoint that holds"),
        );
        match heads.get(&w.version) {
            Some(h) if *h != w.head => {
                failures.push(fail(format!(
                    "the record here is not the one a quorum signed: the history was rewritten \
                     at or before this version ({since})"
                )));
                break;
            }
            None if records.first().is_some_and(|(r, _)| {
                (r.version..=records[records.len() - 1].0.version).contains(&w.version)
            }) =>
            {
                failures.push(fail(format!(
                    "a quorum signed a record at this version, which the export lacks: a record \
                     was removed ({since})"
                )));
                break;
            }
            _ => {}
        }
        if let Some(d) = digests.get(&w.version)
            && *d != w.digest
        {
            failures.push(fail(format!(
                "replaying the commands up to here gives set digest {:016x}, but a quorum signed \
                 {:016x}",
                d.0, w.digest.0
            )));
            break;
        }
        last_good = Some(w.version);
    }
    if let Some(first) = failures.into_iter().min_by_key(|f| f.version) {
        return Err(first);
    }
    let v = chain.finish();
    Ok(Report {
        records: v.records,
        first: records.first().map_or(0, |(r, _)| r.version),
        last: v.last_version,
        checkpoints: checkpoints.len(),
        witnessed: last_good,
        replayed: replayed && set.is_some(),
    })
}
