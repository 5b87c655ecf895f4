//! The live-history section of the markdown summary: per recall scenario, what the checkers
//! asked, what broke the rules, and the exposure windows; then the earliest violations with
//! their times. Formatting only.

use std::fmt::Write;

use super::model::{HistoryReport, RunReport};
use crate::history::exposure::Windows;

/// The section, or nothing when no result carries a history.
pub fn section(run: &RunReport) -> String {
    let rows: Vec<(&str, &HistoryReport)> = run
        .results
        .iter()
        .filter_map(|r| Some((r.scenario.as_str(), r.history.as_ref()?)))
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "\n## Live history (every answer while the wave landed)\n\n\
         | scenario | bound ms | answers | revoked / never / lifted | stale | unanswered | lifts \
         | violations | exposure (checks) p50 / p99 / max ms |\n\
         |---|--:|--:|---|--:|--:|--:|---|---|\n",
    );
    for (scenario, h) in &rows {
        let a = &h.answers;
        let v = &h.violations;
        let violations = if v.total() == 0 {
            "0".to_string()
        } else {
            format!(
                "**{}** (bound {}, monotonic {}, versioned {}, never-revoked {}, policy {})",
                v.total(),
                v.bound,
                v.monotonic,
                v.versioned,
                v.never_revoked,
                v.policy
            )
        };
        let _ = writeln!(
            out,
            "| {scenario} | {:.0} | {} | {} / {} / {} | {} | {} | {} | {violations} | {} |",
            h.bound_ms,
            a.total,
            a.revoked,
            a.never_revoked,
            a.lifted,
            a.stale,
            h.unanswered,
            h.lifts,
            windows(&h.exposure_checks, "revocations"),
        );
    }
    for (scenario, h) in rows.iter().filter(|(_, h)| !h.first.is_empty()) {
        let _ = writeln!(out, "\nFirst violations in {scenario}:\n");
        for v in &h.first {
            let _ = writeln!(
                out,
                "- {:.1}–{:.1} ms, {} on {} (token {}, version {}{}): {}",
                v.sent_ms,
                v.received_ms,
                v.rule.name(),
                v.sidecar,
                v.token,
                v.version,
                if v.stale { ", stale" } else { "" },
                v.detail
            );
        }
    }
    out
}

/// "12.0 / 48.0 / 51.0 (80 revocations)", with the unenforced ones named; `what` names what
/// was sampled.
pub(crate) fn windows(w: &Windows, what: &str) -> String {
    let p = w.ms.map_or("—".to_string(), |p| {
        format!("{:.1} / {:.1} / {:.1}", p.p50, p.p99, p.max)
    });
    if w.enforced == w.sampled {
        format!("{p} ({} {what})", w.sampled)
    } else {
        format!("{p} ({} of {} enforced everywhere)", w.enforced, w.sampled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::check::{AnswerCounts, Rule, RuleCounts};
    use crate::report::model::{Percentiles, ViolationRecord};

    fn report(violations: RuleCounts, first: Vec<ViolationRecord>) -> HistoryReport {
        HistoryReport {
            bound_ms: 10_000.0,
            period_ms: 10.0,
            answers: AnswerCounts {
                total: 900,
                revoked: 500,
                never_revoked: 300,
                lifted: 100,
                stale: 0,
                stale_refusals: 0,
            },
            unanswered: 2,
            lifts: 4,
            violations,
            first,
            exposure_checks: Windows {
                sampled: 40,
                enforced: 40,
                ms: Percentiles::of(&[10.0, 20.0, 60.0]),
                windows_ms: vec![10.0, 20.0, 60.0],
            },
        }
    }

    #[test]
    fn a_row_per_scenario_and_the_first_violations_with_their_times() {
        let mut run = crate::report::table::tests::sample();
        run.results[0].history = Some(report(RuleCounts::default(), Vec::new()));
        run.results[1].history = Some(report(
            RuleCounts {
                bound: 1,
                ..RuleCounts::default()
            },
            vec![ViolationRecord {
                rule: Rule::Bound,
                sidecar: "sidecar-2".into(),
                token: "abc".into(),
                sent_ms: 12_345.0,
                received_ms: 12_346.5,
                version: 7,
                stale: false,
                detail: "allowed 12000 ms after the revocation was acknowledged".into(),
            }],
        ));
        let md = section(&run);
        assert!(
            md.contains("| 0 | 20.0 / 60.0 / 60.0 (40 revocations) |"),
            "{md}"
        );
        assert!(md.contains("**1** (bound 1,"), "{md}");
        assert!(
            md.contains(
                "- 12345.0–12346.5 ms, bound on sidecar-2 (token abc, version 7): allowed 12000 ms"
            ),
            "{md}"
        );
        run.results.iter_mut().for_each(|r| r.history = None);
        assert_eq!(section(&run), "");
    }
}
