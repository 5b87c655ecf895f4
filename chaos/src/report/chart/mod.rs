//! The charts of a scenario, one SVG each, every system of the scenario on it in its own colour:
//! [`convergence`] (the fraction of subscribers holding everything over time), [`held`] (each
//! subscriber's fraction of the wave over time) and [`exposure`] (the distribution of the
//! windows from a write's acknowledgement until every subscriber held it). Drawn with plotters'
//! SVG backend and no TTF fonts (text is emitted as SVG `<text>` elements).

pub mod convergence;
pub mod exposure;
pub mod held;

use std::path::Path;

use anyhow::{Context, bail};
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::model::{RunReport, SystemRun};

/// The order and colours of the systems; others follow in grey.
const SYSTEMS: [(&str, RGBColor); 3] = [
    ("recall", RGBColor(31, 119, 180)),
    ("etcd", RGBColor(44, 160, 44)),
    ("redis", RGBColor(214, 39, 40)),
];

/// The results of `scenario` with their colours, recall, etcd and Redis first; an error when
/// there are none.
fn systems<'a>(
    run: &'a RunReport,
    scenario: &str,
) -> anyhow::Result<Vec<(&'a SystemRun, RGBColor)>> {
    let mut systems: Vec<(&SystemRun, RGBColor)> = Vec::new();
    for (name, colour) in SYSTEMS {
        if let Some(r) = find(run, name, scenario) {
            systems.push((r, colour));
        }
    }
    for r in run.results.iter().filter(|r| r.scenario == scenario) {
        if !systems.iter().any(|(s, _)| s.system == r.system) {
            systems.push((r, RGBColor(127, 127, 127)));
        }
    }
    if systems.is_empty() {
        bail!("no results for scenario {scenario:?}");
    }
    Ok(systems)
}

/// The first result of `system` in `scenario`.
fn find<'a>(run: &'a RunReport, system: &str, scenario: &str) -> Option<&'a SystemRun> {
    run.results
        .iter()
        .find(|r| r.system == system && r.scenario == scenario)
}

/// Draws the legend of `chart` at `position` and writes the SVG of `root` to `path`.
fn finish<'a, X: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, RangedCoordf64>>,
    root: &DrawingArea<SVGBackend<'a>, Shift>,
    position: SeriesLabelPosition,
    path: &Path,
) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 16))
        .draw()
        .map_err(draw_error)?;
    root.present()
        .map_err(draw_error)
        .with_context(|| format!("writing {}", path.display()))
}

/// A plotters error as an `anyhow` error.
fn draw_error<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the chart: {e}")
}

#[cfg(test)]
pub(crate) mod tests {
    /// The contents of the `<text>` elements, trimmed.
    pub(crate) fn texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| {
                let body = &t[t.find('>')? + 1..];
                Some(body[..body.find("</text>")?].trim().to_string())
            })
            .collect()
    }
}
