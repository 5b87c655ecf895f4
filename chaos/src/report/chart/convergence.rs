//! The convergence chart of one scenario: for each system, the fraction of subscribers that hold
//! every revocation, over the seconds since the first write. A subscriber that never converged
//! never raises its system's line, and the legend says what that system lost.

use std::path::Path;

use plotters::prelude::*;

use super::{draw_error, finish, systems};
use crate::report::model::{RunReport, SystemRun};

/// Writes the SVG chart of `scenario` to `path`.
pub fn svg(run: &RunReport, scenario: &str, path: &Path) -> anyhow::Result<()> {
    let systems = systems(run, scenario)?;

    let end_s = systems
        .iter()
        .flat_map(|(r, _)| {
            r.subscribers
                .iter()
                .filter_map(|s| s.converged_ms)
                .chain([r.write_ms])
        })
        .fold(0.0_f64, f64::max)
        / 1e3;
    let x_max = (end_s * 1.1).max(0.01);

    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{scenario}: fraction of subscribers holding every revocation"),
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..x_max, 0.0..1.05)
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the first write")
        .y_desc("fraction of subscribers converged")
        .x_label_formatter(&|x| format!("{x:.1}"))
        .y_label_formatter(&|y| format!("{y:.1}"))
        .draw()
        .map_err(draw_error)?;

    for (r, colour) in systems {
        let style = ShapeStyle::from(colour).stroke_width(2);
        chart
            .draw_series(LineSeries::new(steps(r, x_max), style))
            .map_err(draw_error)?
            .label(label(r))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    finish(&mut chart, &root, SeriesLabelPosition::LowerRight, path)
}

/// The step line of one system: (seconds, fraction converged), from 0 to `x_max`.
fn steps(r: &SystemRun, x_max: f64) -> Vec<(f64, f64)> {
    let total = r.subscribers.len().max(1) as f64;
    let mut times: Vec<f64> = r
        .subscribers
        .iter()
        .filter_map(|s| s.converged_ms)
        .map(|ms| ms / 1e3)
        .collect();
    times.sort_by(f64::total_cmp);
    let mut points = vec![(0.0, 0.0)];
    for (i, t) in times.iter().enumerate() {
        points.push((*t, i as f64 / total));
        points.push((*t, (i + 1) as f64 / total));
    }
    points.push((x_max, times.len() as f64 / total));
    points
}

/// The legend label: the system, and what it lost if it did not converge.
fn label(r: &SystemRun) -> String {
    let short = r
        .subscribers
        .iter()
        .filter(|s| s.converged_ms.is_none())
        .count();
    match (r.lost, short) {
        (0, 0) => r.system.clone(),
        (0, n) => format!("{} ({n} never converged)", r.system),
        (lost, _) => format!("{} (lost {lost})", r.system),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::texts;
    use super::*;
    use crate::report::table::tests::sample;

    #[test]
    fn the_svg_names_the_scenario_and_every_system() {
        let dir = tempfile::tempdir().unwrap();
        let run = sample();
        let path = dir.path().join("convergence-sidecar-partition.svg");
        svg(&run, "sidecar-partition", &path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("<svg"), "{}", &text[..100.min(text.len())]);
        let texts = texts(&text);
        for want in [
            "sidecar-partition: fraction of subscribers holding every revocation",
            "recall",
            "etcd",
            "redis (lost 1234)",
        ] {
            assert!(
                texts.iter().any(|t| t == want),
                "no <text> {want:?} in {texts:?}"
            );
        }
        assert!(text.contains("<polyline"), "{text}");
    }

    #[test]
    fn a_scenario_without_results_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = svg(&sample(), "leader-kill", &dir.path().join("x.svg")).unwrap_err();
        assert!(err.to_string().contains("leader-kill"), "{err}");
    }

    #[test]
    fn a_subscriber_that_never_converged_never_raises_the_line() {
        let run = sample();
        let redis = super::super::find(&run, "redis", "sidecar-partition").unwrap();
        let line = steps(redis, 10.0);
        assert_eq!(line.first(), Some(&(0.0, 0.0)));
        assert_eq!(line.last(), Some(&(10.0, 2.0 / 3.0)));
        assert!(line.iter().all(|(_, y)| *y <= 2.0 / 3.0));
    }
}
