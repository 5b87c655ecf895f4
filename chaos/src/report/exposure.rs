//! The exposure section of the markdown summary: per scenario and system, the window from a
//! write's acknowledgement until every subscriber held it, by the subscribers' own reports.
//! Formatting only.

use std::fmt::Write;

use super::history::windows;
use super::model::RunReport;

/// The section, or nothing when no result measured its exposure.
pub fn section(run: &RunReport) -> String {
    let rows: Vec<_> = run
        .results
        .iter()
        .filter_map(|r| Some((r, r.exposure.as_ref()?)))
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "\n## Exposure windows (every write, from the subscribers' own reports)\n\n\
         From the writer's acknowledgement of a write until every subscriber held it: recall's \
         sidecars by the version they applied, etcd's and Redis's subscribers by the receipt of \
         every key of the write. A write some subscriber never held has no window and is \
         counted apart. Past the bound: writes some subscriber did not hold within the \
         staleness bound of their acknowledgement (a longer window, or none). An etcd or Redis \
         subscriber lets such a credential through; a recall sidecar that has not heard from a \
         node it can trust for longer than the bound answers stale and refuses (fail-closed), \
         and the live history above judges what it actually answered.\n\n",
    );
    let _ = writeln!(
        out,
        "| scenario | system | p50 / p99 / max ms | past the {:.0} ms bound |\n|---|---|---|--:|",
        run.staleness_bound_ms
    );
    for (r, w) in rows {
        let past = w.past(run.staleness_bound_ms);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            r.scenario,
            r.system,
            windows(w, "writes"),
            if past == 0 {
                "0".to_string()
            } else {
                format!("**{past}** of {}", w.sampled)
            }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::exposure::Windows;
    use crate::report::model::Percentiles;

    #[test]
    fn a_row_per_measured_result_naming_what_never_landed() {
        let mut run = crate::report::table::tests::sample();
        assert_eq!(section(&run), "");
        run.results[0].exposure = Some(Windows {
            sampled: 10,
            enforced: 10,
            ms: Percentiles::of(&[5.0, 7.0]),
            windows_ms: vec![5.0, 7.0],
        });
        run.results[5].exposure = Some(Windows {
            sampled: 10,
            enforced: 9,
            ms: Percentiles::of(&[50.0]),
            windows_ms: vec![50.0],
        });
        let md = section(&run);
        assert!(
            md.contains("| no-fault | recall | 5.0 / 7.0 / 7.0 (10 writes) | 0 |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| sidecar-partition | redis | 50.0 / 50.0 / 50.0 (9 of 10 enforced everywhere) | **1** of 10 |"
            ),
            "{md}"
        );
    }
}
