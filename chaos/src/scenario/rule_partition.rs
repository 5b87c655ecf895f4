//! A not-before mass recall during a partition: one sidecar is cut off mid-recall, and while it
//! is, a rule recalls every token of a second issuer issued before now. On heal the sidecar must
//! hold the rule as well as every revocation. Evidence: the bytes its proxies swallowed, and
//! the rule's version.

use super::FaultCtx;
use super::sidecar_partition::partition;
use crate::report::model::FaultRecord;

/// The issuer the rule recalls.
pub const RULE_ISSUER: &str = "https://rule.chaos.recall.invalid";

/// Partitions the victim once `ctx.after` revocations are acknowledged, writes the rule while
/// it is cut off, heals after the hold.
pub async fn inject(ctx: &FaultCtx) -> anyhow::Result<Vec<FaultRecord>> {
    ctx.progress.reached(ctx.after).await;
    let written = std::sync::Mutex::new(None);
    let mut record = partition(ctx, || async {
        // The victim's links are blackholed already: recall the issuer now.
        let not_before = crate::observe::now_ms();
        let r = ctx.writer.recall_issuer(RULE_ISSUER, not_before).await;
        *written.lock().expect("rule lock") = Some(r.map(|v| (v, not_before)));
    })
    .await;
    let (version, not_before) = written
        .into_inner()
        .expect("rule lock")
        .expect("the rule write ran")?;
    *ctx.rule.lock().expect("rule lock") = Some((version, not_before));
    record.what = format!(
        "{} with a not-before rule on {RULE_ISSUER} written meanwhile",
        record.what
    );
    record.proof = format!("{}; the rule committed at version {version}", record.proof);
    Ok(vec![record])
}
