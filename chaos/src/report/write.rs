//! Writes a run's outputs to a directory: `results.json`, `results.md` and per scenario
//! `convergence-<scenario>.svg`, `held-<scenario>.svg` and, when it measured exposure windows,
//! `exposure-<scenario>.svg`. It writes files and nothing else: no measuring, no judging.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::model::RunReport;
use super::{chart, table};

/// Creates `dir` and writes every output of `run` into it; returns the paths written.
pub fn write_all(run: &RunReport, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();

    let json = dir.join("results.json");
    let text = serde_json::to_string_pretty(run).context("serializing the run")?;
    std::fs::write(&json, text + "\n").with_context(|| format!("writing {}", json.display()))?;
    written.push(json);

    let md = dir.join("results.md");
    std::fs::write(&md, table::markdown(run))
        .with_context(|| format!("writing {}", md.display()))?;
    written.push(md);

    for scenario in table::scenarios(run) {
        let name = file_name(scenario);
        let svg = dir.join(format!("convergence-{name}.svg"));
        chart::convergence::svg(run, scenario, &svg)?;
        written.push(svg);
        let svg = dir.join(format!("held-{name}.svg"));
        chart::held::svg(run, scenario, &svg)?;
        written.push(svg);
        if chart::exposure::has_windows(run, scenario) {
            let svg = dir.join(format!("exposure-{name}.svg"));
            chart::exposure::svg(run, scenario, &svg)?;
            written.push(svg);
        }
    }
    Ok(written)
}

/// A scenario name made safe for a file name.
fn file_name(scenario: &str) -> String {
    scenario
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::table::tests::sample;

    #[test]
    fn writes_json_markdown_and_a_chart_per_scenario() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("report");
        let mut run = sample();
        run.results[0].exposure = Some(crate::history::exposure::Windows {
            sampled: 2,
            enforced: 2,
            ms: crate::report::model::Percentiles::of(&[3.0, 4.0]),
            windows_ms: vec![3.0, 4.0],
        });
        let paths = write_all(&run, &out).unwrap();
        let names: Vec<String> = paths
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "results.json",
                "results.md",
                "convergence-no-fault.svg",
                "held-no-fault.svg",
                "exposure-no-fault.svg",
                "convergence-sidecar-partition.svg",
                "held-sidecar-partition.svg"
            ]
        );
        assert!(paths.iter().all(|p| p.starts_with(&out) && p.is_file()));
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&paths[0]).unwrap()).unwrap();
        assert_eq!(json["seed"], 42);
        assert_eq!(json["results"].as_array().unwrap().len(), 6);
    }
}
