//! `recall sightings`: which revoked credentials are still being presented, where and when last,
//! from every member of the cluster; a member that did not answer is named, and the command
//! fails after printing, since what its subscribers reported is missing.

use std::time::Duration;

use anyhow::{Context, bail};

use super::ClusterArgs;
use crate::proto as pb;
use crate::proto::sightings_client::SightingsClient;
use crate::subscriber::sightings::describe;
use crate::transport::Expect;

/// `recall sightings`.
#[derive(Debug, clap::Args)]
pub struct SightingsArgs {
    /// Only sightings last seen since then: a duration back from now (`1h`, `15m`), or a time
    /// (`now-2h`, RFC 3339, unix seconds). Default: every sighting the nodes hold.
    #[arg(long)]
    since: Option<String>,
    /// At most this many, the most recently seen first (1..5000).
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// The time `--since` names, in Unix milliseconds (0: no bound).
fn since_ms(since: Option<&str>) -> anyhow::Result<i64> {
    let Some(s) = since else { return Ok(0) };
    if let Ok(d) = humantime::parse_duration(s.trim()) {
        let back = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        return Ok(super::time::now().plus_millis(-back).as_millis());
    }
    Ok(super::time::parse(s)
        .context("--since: give a duration (1h) or a time (now-1h, RFC 3339, unix seconds)")?
        .as_millis())
}

/// Asks the first node that answers for the merged list.
async fn fetch(
    cluster: &ClusterArgs,
    req: pb::ListSightingsRequest,
) -> anyhow::Result<pb::ListSightingsReply> {
    let dialer = super::client::dialer(cluster)?.with_connect_timeout(Duration::from_secs(3));
    let mut errors = Vec::new();
    for addr in &cluster.cluster {
        let ch = match dialer.connect(addr, Expect::AnyNode).await {
            Ok(ch) => ch,
            Err(e) => {
                errors.push(format!("{e:#}"));
                continue;
            }
        };
        let mut client = SightingsClient::new(ch).max_decoding_message_size(16 << 20);
        match client.list(req).await {
            Ok(r) => return Ok(r.into_inner()),
            Err(s) if s.code() == tonic::Code::Unavailable => {
                errors.push(format!("{addr}: {}", s.message()))
            }
            Err(s) => return Err(super::client::status_error(s)),
        }
    }
    bail!(
        "no node of the cluster answered ({}); is `recall server` running? (set --cluster or \
         RECALL_CLUSTER)",
        errors.join("; ")
    )
}

/// Runs `recall sightings`.
pub async fn run(a: SightingsArgs) -> anyhow::Result<()> {
    if !(1..=5000).contains(&a.limit) {
        bail!("--limit {}: give 1 to 5000", a.limit);
    }
    let req = pb::ListSightingsRequest {
        since_ms: since_ms(a.since.as_deref())?,
        limit: a.limit,
    };
    let r = fetch(&a.cluster, req).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&json(&r))?);
    } else {
        print_table(&r);
    }
    if !r.silent_nodes.is_empty() {
        let ids: Vec<String> = r.silent_nodes.iter().map(u64::to_string).collect();
        bail!(
            "incomplete: node {} did not answer, so what its subscribers reported is missing; \
             ask again, or check it with `recall status`",
            ids.join(", node ")
        );
    }
    Ok(())
}

/// The list as a table, with what it leaves out said under it.
fn print_table(r: &pb::ListSightingsReply) {
    if r.sightings.is_empty() {
        println!("no sightings: no subscriber reported a revoked credential being presented");
    } else {
        println!(
            "{:<24}  {:>8}  {:<20}  {:<20}  REVOKED",
            "LAST SEEN (UTC)", "DENIALS", "SERVICE", "SUBSCRIBER"
        );
        for s in &r.sightings {
            println!(
                "{:<24}  {:>8}  {:<20}  {:<20}  {} (first seen {})",
                show(s.last_seen_ms),
                s.count,
                s.service,
                s.subscriber_id,
                describe(s.rule, &s.kind, &s.namespace, &s.value),
                show(s.first_seen_ms),
            );
        }
    }
    if r.truncated {
        println!(
            "showing the {} most recent of {} or more: raise --limit or narrow --since",
            r.sightings.len(),
            r.total.max(r.sightings.len() as u64)
        );
    }
    if r.dropped > 0 {
        println!(
            "{} denials were not counted: a subscriber's table was full (raise its \
             --sightings-max)",
            r.dropped
        );
    }
    if r.evicted > 0 {
        println!(
            "{} older sightings were dropped by nodes at their bound",
            r.evicted
        );
    }
    for id in &r.silent_nodes {
        println!("no answer: node {id} (what its subscribers reported is missing)");
    }
}

/// A Unix-milliseconds time for people.
fn show(ms: i64) -> String {
    super::time::show(recall_core::Timestamp::from_millis(ms))
}

/// The list as JSON.
fn json(r: &pb::ListSightingsReply) -> serde_json::Value {
    let sightings: Vec<serde_json::Value> = r
        .sightings
        .iter()
        .map(|s| {
            serde_json::json!({
                "rule": s.rule, "kind": s.kind, "namespace": s.namespace, "value": s.value,
                "service": s.service, "count": s.count, "first_seen_ms": s.first_seen_ms,
                "last_seen_ms": s.last_seen_ms, "subscriber": s.subscriber_id,
            })
        })
        .collect();
    serde_json::json!({
        "sightings": sightings, "silent_nodes": r.silent_nodes, "dropped": r.dropped,
        "evicted": r.evicted, "total": r.total, "truncated": r.truncated,
        "complete": r.silent_nodes.is_empty(),
    })
}
