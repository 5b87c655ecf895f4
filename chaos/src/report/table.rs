//! The markdown summary of a run: its settings, one row per (system, scenario), the failures,
//! and how recall's convergence compares with etcd's and Redis's per scenario. Formatting only:
//! it never decides whether a run passed (that is the scenario's `failures`).

use std::fmt::Write;

use super::model::{Checks, FaultRecord, Percentiles, RunReport, SystemRun};

/// What a missing value looks like in the table.
const NONE: &str = "—";

/// The run as a markdown document.
pub fn markdown(run: &RunReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# recall chaos run\n");
    let _ = writeln!(
        out,
        "seed {} · {} revocations × {} subscribers · batch {}, {} in flight · started {} · machine: {}  ",
        run.seed,
        run.revocations,
        run.subscribers,
        run.batch,
        run.in_flight,
        run.started,
        run.machine
    );
    let _ = writeln!(out, "command: `{}`\n", run.command);

    out.push_str(
        "| system | scenario | writes ms | converged | conv p50 | conv p99 | conv max \
         | view p50 | view p99 | view max | max \\|diff\\| | lost | checks | faults | result |\n",
    );
    out.push_str("|---|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|---|---|---|\n");
    for r in &run.results {
        let conv = percentiles(r.convergence_ms.as_ref());
        let view = percentiles(r.cluster_view_ms.as_ref());
        let cells = [
            r.system.clone(),
            r.scenario.clone(),
            ms(r.write_ms),
            if r.converged { "yes" } else { "no" }.into(),
            conv[0].clone(),
            conv[1].clone(),
            conv[2].clone(),
            view[0].clone(),
            view[1].clone(),
            view[2].clone(),
            r.views_max_diff_ms.map_or(NONE.into(), ms),
            r.lost.to_string(),
            r.checks.as_ref().map_or(NONE.into(), checks),
            faults(&r.faults),
            if r.failures.is_empty() {
                "PASS"
            } else {
                "FAIL"
            }
            .into(),
        ];
        let cells: Vec<String> = cells.iter().map(|c| cell(c)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }

    let failed: Vec<&SystemRun> = run
        .results
        .iter()
        .filter(|r| !r.failures.is_empty())
        .collect();
    if !failed.is_empty() {
        out.push_str("\n## Failures\n\n");
        for r in failed {
            for f in &r.failures {
                let _ = writeln!(out, "- {} / {}: {f}", r.system, r.scenario);
            }
        }
    }

    out.push_str(&super::history::section(run));
    out.push_str(&super::exposure::section(run));

    let ratios: Vec<String> = scenarios(run)
        .into_iter()
        .filter_map(|s| comparison(run, s))
        .collect();
    if !ratios.is_empty() {
        out.push_str("\n## recall against the baselines (max convergence)\n\n");
        for line in ratios {
            let _ = writeln!(out, "- {line}");
        }
    }
    out
}

/// The scenarios of a run, in the order they first appear.
pub fn scenarios(run: &RunReport) -> Vec<&str> {
    let mut seen: Vec<&str> = Vec::new();
    for r in &run.results {
        if !seen.contains(&r.scenario.as_str()) {
            seen.push(&r.scenario);
        }
    }
    seen
}

/// The first result of `system` in `scenario`.
fn find<'a>(run: &'a RunReport, system: &str, scenario: &str) -> Option<&'a SystemRun> {
    run.results
        .iter()
        .find(|r| r.system == system && r.scenario == scenario)
}

/// "**scenario**: recall 4.1× faster than etcd (…); redis did not converge (lost N)", or `None`
/// when the scenario has no recall result or no baseline.
fn comparison(run: &RunReport, scenario: &str) -> Option<String> {
    let recall = find(run, "recall", scenario)?;
    let parts: Vec<String> = ["etcd", "redis"]
        .into_iter()
        .filter_map(|b| find(run, b, scenario))
        .map(|other| versus(recall, other))
        .collect();
    if parts.is_empty() {
        return None;
    }
    Some(format!("**{scenario}**: {}", parts.join("; ")))
}

/// How recall compares with one baseline in the same scenario.
fn versus(recall: &SystemRun, other: &SystemRun) -> String {
    let name = &other.system;
    match (
        recall.convergence_ms.filter(|_| recall.converged),
        other.convergence_ms.filter(|_| other.converged),
    ) {
        (Some(r), Some(o)) if r.max > 0.0 && o.max > 0.0 => {
            let (factor, word) = if o.max >= r.max {
                (o.max / r.max, "faster")
            } else {
                (r.max / o.max, "slower")
            };
            format!(
                "recall {factor:.1}× {word} than {name} ({} ms vs {} ms)",
                ms(r.max),
                ms(o.max)
            )
        }
        (Some(_), Some(_)) => format!("recall and {name}: no comparable times"),
        (Some(_), None) => format!("{name} did not converge (lost {})", other.lost),
        (None, Some(_)) => format!("recall did not converge (lost {}), {name} did", recall.lost),
        (None, None) => format!(
            "neither converged (recall lost {}, {name} lost {})",
            recall.lost, other.lost
        ),
    }
}

/// Milliseconds with one decimal.
fn ms(v: f64) -> String {
    format!("{v:.1}")
}

/// p50, p99 and max as cells.
fn percentiles(p: Option<&Percentiles>) -> [String; 3] {
    match p {
        Some(p) => [ms(p.p50), ms(p.p99), ms(p.max)],
        None => [NONE.into(), NONE.into(), NONE.into()],
    }
}

/// "30000 revoked ok, 0/30000 FP, digests equal" (counts over every sidecar).
fn checks(c: &Checks) -> String {
    let mut parts = Vec::new();
    parts.push(if c.revoked_missed == 0 {
        format!("{} revoked ok", c.revoked_sampled)
    } else {
        format!("{}/{} revoked MISSED", c.revoked_missed, c.revoked_sampled)
    });
    let mut fp = format!("{}/{} FP", c.false_positives, c.clean_sampled);
    if c.false_positives > 0 {
        let _ = write!(fp, " (≤{} allowed)", c.false_positives_allowed);
    }
    parts.push(fp);
    if c.rule_sampled > 0 {
        parts.push(if c.rule_missed == 0 {
            format!("{} rule ok", c.rule_sampled)
        } else {
            format!("{}/{} rule MISSED", c.rule_missed, c.rule_sampled)
        });
    }
    parts.push(
        if c.digests_equal {
            "digests equal"
        } else {
            "digests DIFFER"
        }
        .into(),
    );
    parts.join(", ")
}

/// Each fault as "what @ t ms (proof)", the ones without effect marked.
fn faults(faults: &[FaultRecord]) -> String {
    if faults.is_empty() {
        return NONE.into();
    }
    faults
        .iter()
        .map(|f| {
            let healed = f
                .healed_ms
                .map(|h| format!("–{}", ms(h)))
                .unwrap_or_default();
            let mark = if f.took_effect { "" } else { " NO EFFECT" };
            format!(
                "{} @ {}{healed} ms ({}){mark}",
                f.what,
                ms(f.at_ms),
                f.proof
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A table cell: pipes escaped, on one line.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::report::model::SubscriberRun;

    fn sub(id: &str, converged_ms: Option<f64>, missing: u64) -> SubscriberRun {
        let held = match converged_ms {
            Some(t) => vec![(0.0, 0.0), (t / 2.0, 0.5), (t, 1.0)],
            None => vec![(0.0, 0.0), (300.0, 0.9)],
        };
        SubscriberRun {
            id: id.into(),
            converged_ms,
            cluster_view_ms: None,
            missing,
            held,
        }
    }

    fn system(system: &str, scenario: &str, times: &[Option<f64>], lost: u64) -> SystemRun {
        let subscribers: Vec<SubscriberRun> = times
            .iter()
            .enumerate()
            .map(|(i, t)| {
                sub(
                    &format!("{system}-{i}"),
                    *t,
                    if t.is_some() { 0 } else { lost },
                )
            })
            .collect();
        let converged = times.iter().all(Option::is_some);
        let values: Vec<f64> = times.iter().flatten().copied().collect();
        SystemRun {
            system: system.into(),
            scenario: scenario.into(),
            revocations: 10_000,
            write_ms: 812.345,
            exposure: None,
            converged,
            subscribers,
            convergence_ms: if converged {
                Percentiles::of(&values)
            } else {
                None
            },
            cluster_view_ms: None,
            views_max_diff_ms: None,
            lost,
            checks: None,
            history: None,
            faults: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// A run with recall, etcd and redis in two scenarios; redis loses 1234 in the partition.
    pub(crate) fn sample() -> RunReport {
        let mut recall = system(
            "recall",
            "no-fault",
            &[Some(100.0), Some(120.0), Some(150.0)],
            0,
        );
        recall.cluster_view_ms = Some(Percentiles {
            p50: 101.0,
            p99: 151.0,
            max: 151.0,
        });
        recall.views_max_diff_ms = Some(1.25);
        recall.checks = Some(Checks {
            revoked_sampled: 30_000,
            clean_sampled: 30_000,
            digests_equal: true,
            ..Checks::default()
        });
        let mut recall_part = system(
            "recall",
            "sidecar-partition",
            &[Some(200.0), Some(1500.0), Some(210.0)],
            0,
        );
        recall_part.faults.push(FaultRecord {
            what: "blackhole sidecar-1's links".into(),
            at_ms: 300.0,
            healed_ms: Some(1300.0),
            proof: "proxy dropped 10 B up, 2000 B down".into(),
            took_effect: true,
        });
        let mut etcd_part = system(
            "etcd",
            "sidecar-partition",
            &[Some(900.0), Some(3000.0), Some(950.0)],
            0,
        );
        etcd_part
            .failures
            .push("fault did not take effect: x (y)".into());
        RunReport {
            seed: 42,
            revocations: 10_000,
            subscribers: 3,
            batch: 500,
            in_flight: 4,
            staleness_bound_ms: 10_000.0,
            started: "2025-01-01T00:00:00Z".into(),
            machine: "2 cores, load 0.50".into(),
            command: "recall-chaos --seed 42".into(),
            results: vec![
                recall,
                system(
                    "etcd",
                    "no-fault",
                    &[Some(400.0), Some(500.0), Some(615.0)],
                    0,
                ),
                system(
                    "redis",
                    "no-fault",
                    &[Some(90.0), Some(95.0), Some(75.0)],
                    0,
                ),
                recall_part,
                etcd_part,
                system(
                    "redis",
                    "sidecar-partition",
                    &[Some(300.0), None, Some(310.0)],
                    1234,
                ),
            ],
        }
    }

    #[test]
    fn a_row_per_result_with_its_numbers() {
        let md = markdown(&sample());
        let rows: Vec<&str> = md
            .lines()
            .filter(|l| {
                l.starts_with("| recall") || l.starts_with("| etcd") || l.starts_with("| redis")
            })
            .collect();
        assert_eq!(rows.len(), 6, "{md}");
        assert!(md.contains("seed 42"), "{md}");
        assert!(md.contains("`recall-chaos --seed 42`"), "{md}");
        assert!(rows[0].contains("| 812.3 |"), "{}", rows[0]);
        assert!(rows[0].contains("| 120.0 | 150.0 | 150.0 |"), "{}", rows[0]);
        assert!(
            rows[0].contains("| 1.2 |") || rows[0].contains("| 1.3 |"),
            "{}",
            rows[0]
        );
        assert!(
            rows[0].contains("30000 revoked ok, 0/30000 FP, digests equal"),
            "{}",
            rows[0]
        );
        assert!(rows[0].ends_with("| PASS |"), "{}", rows[0]);
        assert!(
            rows[3].contains("blackhole sidecar-1's links @ 300.0–1300.0 ms"),
            "{}",
            rows[3]
        );
        assert!(rows[4].ends_with("| FAIL |"), "{}", rows[4]);
        assert!(rows[5].contains("| no | — | — | — |"), "{}", rows[5]);
        assert!(rows[5].contains("| 1234 |"), "{}", rows[5]);
        // Every row has as many cells as the header.
        let header = md.lines().find(|l| l.starts_with("| system")).unwrap();
        let cells = |l: &str| l.replace("\\|", "").matches('|').count();
        assert!(rows.iter().all(|r| cells(r) == cells(header)), "{md}");
    }

    #[test]
    fn failures_are_listed_below_the_table() {
        let md = markdown(&sample());
        assert!(
            md.contains(
                "## Failures\n\n- etcd / sidecar-partition: fault did not take effect: x (y)"
            ),
            "{md}"
        );
    }

    #[test]
    fn the_ratio_lines_compare_max_convergence() {
        let md = markdown(&sample());
        assert!(
            md.contains("**no-fault**: recall 4.1× faster than etcd (150.0 ms vs 615.0 ms); recall 1.6× slower than redis (150.0 ms vs 95.0 ms)"),
            "{md}"
        );
        assert!(
            md.contains("**sidecar-partition**: recall 2.0× faster than etcd (1500.0 ms vs 3000.0 ms); redis did not converge (lost 1234)"),
            "{md}"
        );
    }
}
