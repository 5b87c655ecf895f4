//! The wave chart of one scenario: each subscriber's fraction of the wave's revocations held,
//! over the seconds since the first write, one thin line per subscriber in its system's colour.
//! A subscriber that fell behind (partitioned, paused, restarted) shows as the line that
//! flattens and climbs later; one that lost updates never reaches 1.

use std::path::Path;

use plotters::prelude::*;

use super::{draw_error, finish, systems};
use crate::report::model::{RunReport, SubscriberRun};

/// Writes the SVG chart of `scenario` to `path`.
pub fn svg(run: &RunReport, scenario: &str, path: &Path) -> anyhow::Result<()> {
    let systems = systems(run, scenario)?;
    let end_s = systems
        .iter()
        .flat_map(|(r, _)| {
            r.subscribers
                .iter()
                .flat_map(|s| s.held.last().map(|(t, _)| *t))
                .chain([r.write_ms])
        })
        .fold(0.0_f64, f64::max)
        / 1e3;
    let x_max = (end_s * 1.1).max(0.01);

    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{scenario}: fraction of the wave each subscriber holds"),
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
        .y_desc("fraction of the revocations held")
        .x_label_formatter(&|x| format!("{x:.1}"))
        .y_label_formatter(&|y| format!("{y:.1}"))
        .draw()
        .map_err(draw_error)?;

    for (r, colour) in systems {
        let style = ShapeStyle::from(colour.mix(0.7)).stroke_width(1);
        let legend = ShapeStyle::from(colour).stroke_width(2);
        for (i, s) in r.subscribers.iter().enumerate() {
            let series = chart
                .draw_series(LineSeries::new(line(s, x_max), style))
                .map_err(draw_error)?;
            if i == 0 {
                series
                    .label(format!(
                        "{} ({} subscribers)",
                        r.system,
                        r.subscribers.len()
                    ))
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], legend));
            }
        }
    }
    finish(&mut chart, &root, SeriesLabelPosition::LowerRight, path)
}

/// One subscriber's step line: (seconds, fraction held), each level kept until the next point,
/// the last one until `x_max`.
fn line(s: &SubscriberRun, x_max: f64) -> Vec<(f64, f64)> {
    let mut points: Vec<(f64, f64)> = Vec::with_capacity(s.held.len() * 2 + 1);
    for &(ms, fraction) in &s.held {
        let t = ms / 1e3;
        if let Some(&(_, last)) = points.last() {
            points.push((t, last));
        }
        points.push((t, fraction));
    }
    let last = points.last().map_or(0.0, |p| p.1);
    points.push((x_max, last));
    points
}

#[cfg(test)]
mod tests {
    use super::super::tests::texts;
    use super::*;
    use crate::report::table::tests::sample;

    #[test]
    fn a_line_per_subscriber_and_a_legend_per_system() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("held-sidecar-partition.svg");
        svg(&sample(), "sidecar-partition", &path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let texts = texts(&text);
        for want in [
            "sidecar-partition: fraction of the wave each subscriber holds",
            "recall (3 subscribers)",
            "etcd (3 subscribers)",
            "redis (3 subscribers)",
        ] {
            assert!(texts.iter().any(|t| t == want), "no {want:?} in {texts:?}");
        }
        // Three subscribers' thin lines per system, in its colour.
        for colour in ["#1F77B4", "#2CA02C", "#D62728"] {
            let thin = format!("stroke=\"{colour}\" stroke-width=\"1\"");
            assert_eq!(text.matches(&thin).count(), 3, "{colour}: {text}");
        }
    }

    #[test]
    fn a_level_holds_until_the_next_point_and_the_last_until_the_end() {
        let s = SubscriberRun {
            id: "s".into(),
            converged_ms: None,
            cluster_view_ms: None,
            missing: 10,
            held: vec![(0.0, 0.0), (500.0, 0.5), (1500.0, 0.9)],
        };
        assert_eq!(
            line(&s, 3.0),
            [
                (0.0, 0.0),
                (0.5, 0.0),
                (0.5, 0.5),
                (1.5, 0.5),
                (1.5, 0.9),
                (3.0, 0.9)
            ]
        );
    }
}
