//! The duty every node runs to witness the history: bind its checkpoint key, check the history
//! it stores against what it applied, and sign checkpoints of its chain head and set digest,
//! which the leader turns into entries that count towards a quorum.
//!
//! A node raises the history alarm (and stops serving subscriber streams) when its stored
//! records no longer chain, when the stored record at its head differs from the one it applied
//! (someone changed its disk), or when a quorum witnessed a head its own records do not have
//! (checked when the checkpoint entry is applied). It signs what it *stores*, so the others see
//! a node whose disk was rewritten disagree with the quorum, and `recall status` names it.

use std::time::Duration;

use ed25519_dalek::SigningKey;
use tokio::sync::watch;

use super::checkpoint::{Checkpoint, Signed};
use crate::node::audit::{AuditHead, Verifier};
use crate::node::clock::Clock;
use crate::node::raft::StateMachine;
use crate::node::writer::{Write, Writer};

/// How many stored records one verification step reads at a time.
const PAGE: usize = 10_000;

/// Runs until `stop` turns true: every `interval`, binds the key if the cluster does not have
/// it, verifies newly stored records, and signs a checkpoint when the head moved.
pub async fn run(
    node: u64,
    key: SigningKey,
    sm: StateMachine,
    writer: Writer,
    clock: Clock,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let public = key.verifying_key().to_bytes();
    let mut verifier = Verifier::new();
    let mut verified = AuditHead::default();
    let mut signed_at = 0u64;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        if !sm.seeded() {
            continue;
        }
        if sm.with_witnesses(|w| w.keys.get(&node) != Some(&public)) {
            if let Err(e) = writer
                .write_whole(Write::NodeKey { node, key: public })
                .await
            {
                tracing::debug!(error = %e, "binding the checkpoint key failed; retrying");
            }
            continue;
        }
        let (head, digest) = sm.checkpoint_state();
        if head.version == 0 {
            continue;
        }
        // The stored chain, from where the last check ended up to the head.
        while verified.version < head.version {
            let page = match sm.audit_log(verified.version + 1, PAGE).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the stored history");
                    break;
                }
            };
            if page.is_empty() {
                break;
            }
            for record in &page {
                if let Err(b) = verifier.push(record) {
                    sm.raise_alarm(format!("the stored audit history does not verify: {b}"));
                    break;
                }
                verified = AuditHead {
                    version: record.version,
                    hash: record.hash,
                };
            }
        }
        if head.version == signed_at {
            continue;
        }
        // The state machine updates its head before it commits the batch's records, so the
        // record at the head may not be stored yet: sign it on a later tick, never alarm on it.
        let stored = match sm.audit_log(head.version, 1).await {
            Ok(r) => r.into_iter().find(|r| r.version == head.version),
            Err(_) => None,
        };
        let Some(stored) = stored.map(|r| r.hash) else {
            continue;
        };
        if stored != head.hash {
            sm.raise_alarm(format!(
                "the audit record this node stores at version {} differs from the one it \
                 applied: the history on its disk was changed",
                head.version
            ));
        }
        let checkpoint = Checkpoint {
            version: head.version,
            head: stored,
            digest,
            at: clock(),
        };
        let signed = Signed::sign(node, checkpoint, &key);
        match writer.write_whole(Write::Witness(signed)).await {
            Ok(_) => signed_at = head.version,
            Err(e) => tracing::debug!(error = %e, "a checkpoint did not commit; signing again"),
        }
    }
}
