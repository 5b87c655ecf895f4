//! The exposure chart of one scenario: for each system, the fraction of its acknowledged writes
//! that every subscriber held within a given time of the acknowledgement (the distribution of
//! exposure windows, as a cumulative curve), on a logarithmic time axis. A write some subscriber
//! never held keeps its system's curve below 1, and the legend counts those writes.

use std::path::Path;

use anyhow::bail;
use plotters::prelude::*;

use super::{draw_error, finish, systems};
use crate::history::exposure::Windows;
use crate::report::model::{RunReport, SystemRun};

/// The time axis starts here: a window of 0 (held before the writer heard the acknowledgement)
/// is drawn at 1 ms.
const FLOOR_MS: f64 = 1.0;

/// Whether `scenario` has exposure windows to draw.
pub fn has_windows(run: &RunReport, scenario: &str) -> bool {
    run.results
        .iter()
        .any(|r| r.scenario == scenario && r.exposure.as_ref().is_some_and(|w| w.sampled > 0))
}

/// Writes the SVG chart of `scenario` to `path`; an error when it measured no windows.
pub fn svg(run: &RunReport, scenario: &str, path: &Path) -> anyhow::Result<()> {
    let systems: Vec<(&SystemRun, &Windows, RGBColor)> = systems(run, scenario)?
        .into_iter()
        .filter_map(|(r, c)| Some((r, r.exposure.as_ref().filter(|w| w.sampled > 0)?, c)))
        .collect();
    if systems.is_empty() {
        bail!("no exposure windows in scenario {scenario:?}");
    }
    let max_ms = systems
        .iter()
        .flat_map(|(_, w, _)| w.windows_ms.last().copied())
        .fold(FLOOR_MS, f64::max);
    let bound = run.staleness_bound_ms;
    let x_max = (max_ms * 2.0).max(bound * 1.5).max(10.0);

    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{scenario}: writes every subscriber held, by time since the acknowledgement"),
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d((FLOOR_MS..x_max).log_scale(), 0.0..1.05)
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .x_desc("exposure window, ms (log scale; 0 is drawn at 1 ms)")
        .y_desc("fraction of the acknowledged writes")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.1}"))
        .draw()
        .map_err(draw_error)?;

    // The staleness bound: a curve still below its top right of this line is writes some
    // subscriber held later than the bound, or never.
    if bound >= FLOOR_MS {
        let grey = ShapeStyle::from(RGBColor(90, 90, 90)).stroke_width(1);
        chart
            .draw_series(LineSeries::new([(bound, 0.0), (bound, 1.05)], grey))
            .map_err(draw_error)?
            .label(format!("staleness bound ({bound:.0} ms)"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], grey));
    }
    for (r, w, colour) in systems {
        let style = ShapeStyle::from(colour).stroke_width(2);
        chart
            .draw_series(LineSeries::new(cumulative(w, x_max), style))
            .map_err(draw_error)?
            .label(label(r, w))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    finish(&mut chart, &root, SeriesLabelPosition::UpperLeft, path)
}

/// The cumulative step curve of `w`: (ms, fraction of the sampled writes held everywhere within
/// it), from the floor to `x_max`.
fn cumulative(w: &Windows, x_max: f64) -> Vec<(f64, f64)> {
    let total = w.sampled.max(1) as f64;
    let mut points = vec![(FLOOR_MS, 0.0)];
    for (i, ms) in w.windows_ms.iter().enumerate() {
        let x = ms.max(FLOOR_MS);
        points.push((x, i as f64 / total));
        points.push((x, (i + 1) as f64 / total));
    }
    points.push((x_max, w.windows_ms.len() as f64 / total));
    points
}

/// "recall: p50 12 ms, p99 48 ms (1000 writes)", with the writes never held everywhere.
fn label(r: &SystemRun, w: &Windows) -> String {
    let p = w.ms.map_or("no write held everywhere".to_string(), |p| {
        format!("p50 {:.0} ms, p99 {:.0} ms", p.p50, p.p99)
    });
    let never = w.sampled - w.enforced;
    if never == 0 {
        format!("{}: {p} ({} writes)", r.system, w.sampled)
    } else {
        format!(
            "{}: {p} ({never} of {} writes never held everywhere)",
            r.system, w.sampled
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::texts;
    use super::*;
    use crate::report::model::Percentiles;
    use crate::report::table::tests::sample;

    fn windows(sampled: u64, ms: &[f64]) -> Windows {
        Windows {
            sampled,
            enforced: ms.len() as u64,
            ms: Percentiles::of(ms),
            windows_ms: ms.to_vec(),
        }
    }

    #[test]
    fn a_curve_per_measured_system_with_what_never_landed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exposure-sidecar-partition.svg");
        let mut run = sample();
        assert!(!has_windows(&run, "sidecar-partition"));
        assert!(svg(&run, "sidecar-partition", &path).is_err());
        run.results[3].exposure = Some(windows(4, &[0.0, 12.0, 30.0, 1400.0]));
        run.results[5].exposure = Some(windows(4, &[5.0, 9.0]));
        assert!(has_windows(&run, "sidecar-partition"));
        svg(&run, "sidecar-partition", &path).unwrap();
        let texts = texts(&std::fs::read_to_string(&path).unwrap());
        for want in [
            "staleness bound (10000 ms)",
            "recall: p50 12 ms, p99 1400 ms (4 writes)",
            "redis: p50 5 ms, p99 9 ms (2 of 4 writes never held everywhere)",
        ] {
            assert!(texts.iter().any(|t| t == want), "no {want:?} in {texts:?}");
        }
        assert!(!texts.iter().any(|t| t.starts_with("etcd")), "{texts:?}");
    }

    #[test]
    fn the_curve_climbs_a_step_per_write_and_stops_below_one_for_the_lost() {
        let c = cumulative(&windows(4, &[0.0, 20.0]), 100.0);
        assert_eq!(
            c,
            [
                (1.0, 0.0),
                (1.0, 0.0),
                (1.0, 0.25),
                (20.0, 0.25),
                (20.0, 0.5),
                (100.0, 0.5)
            ]
        );
    }
}
