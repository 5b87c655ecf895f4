//! How the CLI shows a convergence report: the laggards, the members that did not answer (whose
//! subscribers are unknown), and "converged" only when the report says so.

use crate::proto as pb;

/// At most this many laggards are printed.
const SHOWN: usize = 20;

/// The members that did not answer, as "node 3" or "nodes 2, 3".
fn silent_nodes(c: &pb::Convergence) -> String {
    let ids: Vec<String> = c.silent_nodes.iter().map(u64::to_string).collect();
    match ids.len() {
        1 => format!("node {}", ids[0]),
        _ => format!("nodes {}", ids.join(", ")),
    }
}

/// The laggards and silent members, one line each.
fn print_details(c: &pb::Convergence) {
    for l in c.laggards.iter().take(SHOWN) {
        let path = if l.via.is_empty() {
            format!("node {}", l.node_id)
        } else {
            format!("node {} > {}", l.node_id, l.via)
        };
        println!(
            "  lagging: {} (via {path}) at version {}, {} behind",
            l.subscriber_id, l.applied_version, l.behind
        );
    }
    for id in &c.silent_nodes {
        println!("  no answer: node {id} (its subscribers are unknown)");
    }
}

/// Prints a write's convergence report; an error if it did not converge.
pub fn print_convergence(c: &pb::Convergence) -> anyhow::Result<()> {
    if c.converged {
        println!(
            "converged: {}/{} live subscribers applied version {} in {} ms",
            c.subscribers_applied, c.subscribers_total, c.target_version, c.elapsed_ms
        );
        return Ok(());
    }
    print_details(c);
    if !c.silent_nodes.is_empty() {
        anyhow::bail!(
            "not converged after {} ms: {} did not answer, so whether its subscribers applied \
             version {} is unknown ({}/{} live subscribers of the members that answered did); \
             check it with `recall status --version {}`",
            c.elapsed_ms,
            silent_nodes(c),
            c.target_version,
            c.subscribers_applied,
            c.subscribers_total,
            c.target_version
        );
    }
    if c.laggards.is_empty() && c.subscribers_applied < c.min_subscribers {
        anyhow::bail!(
            "not converged after {} ms: {} live subscribers applied version {}, of the {} you \
             expect; the others are connected to no node now (between streams, or down): find \
             them with `recall status --version {}`",
            c.elapsed_ms,
            c.subscribers_applied,
            c.target_version,
            c.min_subscribers,
            c.target_version
        );
    }
    anyhow::bail!(
        "not converged after {} ms: {}/{} live subscribers applied version {}; see the laggards \
         above, or wait with `recall status --version {}`",
        c.elapsed_ms,
        c.subscribers_applied,
        c.subscribers_total,
        c.target_version,
        c.target_version
    )
}

/// Prints the subscriber part of `recall status`.
pub fn print_status(c: &pb::Convergence) {
    let of = if c.silent_nodes.is_empty() {
        ""
    } else {
        " (of the members that answered)"
    };
    println!(
        "subscribers: {} live, {} at version {} or later{of}",
        c.subscribers_total, c.subscribers_applied, c.target_version
    );
    print_details(c);
    if c.converged {
        println!("version {}: converged", c.target_version);
    } else if c.silent_nodes.is_empty() {
        println!("version {}: not converged", c.target_version);
    } else {
        println!(
            "version {}: not converged, unknown for the subscribers of {}",
            c.target_version,
            silent_nodes(c)
        );
    }
}

/// The report as JSON, for `recall status --json`.
pub fn json(c: &pb::Convergence) -> serde_json::Value {
    let laggards: Vec<serde_json::Value> = c
        .laggards
        .iter()
        .map(|l| {
            serde_json::json!({"id": l.subscriber_id, "node": l.node_id, "via": l.via,
                "applied_version": l.applied_version, "behind": l.behind})
        })
        .collect();
    serde_json::json!({
        "converged": c.converged, "target_version": c.target_version,
        "subscribers_total": c.subscribers_total, "subscribers_applied": c.subscribers_applied,
        "laggards": laggards, "silent_nodes": c.silent_nodes,
    })
}
