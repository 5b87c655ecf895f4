//! What only the leader does: fix the cluster's fingerprint seed once, and propose expiry prunes
//! with their cutoff inside the command (its own time minus the prune grace), so every replica
//! prunes identically and nothing a verifier could still accept is dropped.

use std::time::Duration;

use recall_core::Command;
use tokio::sync::watch;

use super::clock::Clock;
use super::raft::{Raft, Request, StateMachine};
use super::writer::Writer;

/// Runs the leader's duties until `stopped` turns true. Followers idle.
pub async fn run(
    raft: Raft,
    sm: StateMachine,
    writer: Writer,
    clock: Clock,
    prune_interval: Duration,
    prune_grace: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let grace_ms = i64::try_from(prune_grace.as_millis()).unwrap_or(i64::MAX);
    let tick = prune_interval
        .min(Duration::from_millis(200))
        .max(Duration::from_millis(10));
    let mut since_prune = Duration::ZERO;
    loop {
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(tick) => {}
        }
        since_prune += tick;
        let leads = {
            let m = raft.metrics().borrow().clone();
            m.current_leader == Some(m.id)
        };
        if !leads {
            continue;
        }
        if !sm.seeded()
            && let Err(e) = writer.propose_system(writer.init_request()).await
        {
            tracing::debug!(error = %e, "seed proposal failed; will retry");
        }
        carry_out_approved_membership(&raft, &sm, &writer).await;
        if since_prune >= prune_interval {
            since_prune = Duration::ZERO;
            // Verifiers accept a token until `exp` plus their leeway: its revocation holds as
            // long, so only what expired more than the grace ago goes.
            let now = clock().plus_millis(-grace_ms);
            if sm.with_set(|s| s.has_expired(now)) {
                match writer
                    .propose_system(Request::Command(Command::Prune { now }))
                    .await
                {
                    Ok(r) => tracing::info!(
                        version = r.version,
                        removed = r.removed,
                        "pruned expired entries"
                    ),
                    Err(e) => tracing::warn!(error = %e, "prune failed; will retry"),
                }
            }
        }
    }
}

/// Carries out the oldest membership change a second admin approved, then records that it was
/// carried out (an entry every replica applies, so the next leader does not repeat it). A change
/// Raft refuses is logged and not retried: the history shows it was approved, the log why it did
/// not take effect.
async fn carry_out_approved_membership(raft: &Raft, sm: &StateMachine, writer: &Writer) {
    use super::raft::Node;
    use super::stepup::MembershipOp;
    let Some((version, change)) = sm.with_governance(|g| {
        g.approved_membership
            .first_key_value()
            .map(|(v, c)| (*v, c.clone()))
    }) else {
        return;
    };
    let outcome = match change.op {
        // Not blocking: a learner that never catches up must not hold up the leader's duties.
        MembershipOp::AddLearner { node, address } => raft
            .add_learner(node, Node { addr: address }, false)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        MembershipOp::Voters {
            voters,
            keep_removed_as_learners,
        } => raft
            .change_membership(voters, keep_removed_as_learners)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
    };
    match outcome {
        Ok(()) => tracing::info!(version, "carried out an approved membership change"),
        Err(e) => tracing::warn!(version, error = %e, "an approved membership change was refused"),
    }
    if let Err(e) = writer
        .propose_system(Request::MembershipDone { version })
        .await
    {
        tracing::debug!(error = %e, "recording the membership change failed; will retry");
    }
}
