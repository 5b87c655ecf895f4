//! How the wave landed, by the sidecars' own reports (each sidecar's applied version and when):
//! per acknowledged write, the time until every sidecar held it (its exposure window), and per
//! sidecar, the fraction of the wave it held over time. Pure: the reports and the writer's
//! acknowledgements in, the measures out.

use std::collections::HashMap;

use crate::history::exposure::{Windows, from_reports};
use crate::observe::Seen;
use crate::workload::Ack;

/// The wave's writes: each acknowledgement with the version it named, from the writer.
pub struct Wave<'a> {
    /// The acknowledgements, in the order they arrived.
    pub acks: &'a [Ack],
    /// Each write's first index → the version it was acknowledged at.
    pub versions: &'a HashMap<usize, u64>,
    /// The writes' origin (the first write) as an instant.
    pub started: tokio::time::Instant,
    /// The same origin in Unix milliseconds (the sidecars stamp their reports so).
    pub t0: i64,
}

impl Wave<'_> {
    /// Exposure windows of every acknowledged write over the sidecars' `timelines`.
    pub fn exposure(&self, timelines: &[Vec<Seen>]) -> Windows {
        let acks: Vec<(f64, u64)> = self
            .acks
            .iter()
            .filter_map(|a| {
                let at = a.at.saturating_duration_since(self.started);
                Some((at.as_secs_f64() * 1e3, *self.versions.get(&a.range.start)?))
            })
            .collect();
        let lines: Vec<Vec<(u64, f64)>> = timelines
            .iter()
            .map(|line| {
                line.iter()
                    .map(|s| (s.version, (s.at_ms - self.t0) as f64))
                    .collect()
            })
            .collect();
        from_reports(&acks, &lines)
    }

    /// The fraction of the wave a sidecar held over its `timeline`: from (0, 0), a point at each
    /// version it reported, holding every write acknowledged at that version or below.
    pub fn held(&self, timeline: &[Seen]) -> Vec<(f64, f64)> {
        let mut by_version: Vec<(u64, usize)> = self
            .acks
            .iter()
            .filter_map(|a| Some((*self.versions.get(&a.range.start)?, a.range.len())))
            .collect();
        by_version.sort_unstable();
        let total: usize = self.acks.iter().map(|a| a.range.len()).sum();
        let mut prefix = Vec::with_capacity(by_version.len());
        let mut sum = 0;
        for (v, n) in &by_version {
            sum += n;
            prefix.push((*v, sum));
        }
        let mut points = vec![(0.0, 0.0)];
        for seen in timeline {
            let upto = prefix.partition_point(|(v, _)| *v <= seen.version);
            let held = if upto == 0 { 0 } else { prefix[upto - 1].1 };
            let at = ((seen.at_ms - self.t0) as f64).max(0.0);
            points.push((at, held as f64 / total.max(1) as f64));
        }
        points
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::{Duration, Instant};

    #[test]
    fn a_sidecar_holds_every_write_at_or_below_the_version_it_reported() {
        let started = Instant::now();
        let acks = vec![
            Ack {
                range: 1000..2000,
                at: started + Duration::from_millis(40),
            },
            Ack {
                range: 0..1000,
                at: started + Duration::from_millis(50),
            },
            Ack {
                range: 2000..2500,
                at: started + Duration::from_millis(60),
            },
        ];
        let versions = HashMap::from([(0, 7), (1000, 5), (2000, 9)]);
        let wave = Wave {
            acks: &acks,
            versions: &versions,
            started,
            t0: 10_000,
        };
        let seen = |version, at_ms| Seen { version, at_ms };
        // Version 3 predates the wave; 5 holds the second batch; 8 both; 9 all.
        let line = [
            seen(3, 9_990),
            seen(5, 10_045),
            seen(8, 10_070),
            seen(9, 10_100),
        ];
        assert_eq!(
            wave.held(&line),
            [
                (0.0, 0.0),
                (0.0, 0.0),
                (45.0, 0.4),
                (70.0, 0.8),
                (100.0, 1.0)
            ]
        );
        // Windows: write at 5 acked at 40, held at 45 (5 ms); 7 at 50 → 70 (20); 9 at 60 → 100.
        let w = wave.exposure(&[line.to_vec()]);
        assert_eq!(w.windows_ms, [5.0, 20.0, 40.0]);
    }
}
