//! The exposure window of a revocation: from the moment the writer was told "revoked" until
//! every sidecar refuses the credential. Two measures, both pure:
//! - [`from_answers`]: from the live checks of sampled revocations; a sidecar enforces from the
//!   arrival of its first refusal after its last allowing answer (an upper bound: the checks'
//!   period is the resolution).
//! - [`from_reports`]: from the sidecars' own reports of when they applied each version; a
//!   sidecar enforces a write once it applied the write's version.
//! - [`from_receipts`]: the same measure for the baselines' subscribers (etcd watchers, Redis
//!   subscribers), which enforce a write once they received every key it wrote.
//!
//! A revocation some sidecar never enforced while it was observed has no window: it is counted,
//! never rounded into the percentiles.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

use super::check::WriteIndex;
use super::{Answer, Cred, History, WriteKind};
use crate::report::model::Percentiles;

/// Exposure windows over a set of revocations.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Windows {
    /// Revocations measured.
    pub sampled: u64,
    /// Of those, revocations every sidecar was seen to enforce.
    pub enforced: u64,
    /// The windows of the enforced ones, in milliseconds.
    pub ms: Option<Percentiles>,
    /// Every window of an enforced one, in milliseconds, smallest first (the distribution the
    /// report draws).
    pub windows_ms: Vec<f64>,
}

impl Windows {
    fn of(sampled: u64, windows: &[f64]) -> Self {
        let mut sorted = windows.to_vec();
        sorted.sort_by(f64::total_cmp);
        Self {
            sampled,
            enforced: windows.len() as u64,
            ms: Percentiles::of(windows),
            windows_ms: sorted,
        }
    }
}

impl Windows {
    /// How many of the sampled writes some subscriber did not hold within `bound_ms` of their
    /// acknowledgement: a longer window, or none (never held everywhere).
    pub fn past(&self, bound_ms: f64) -> u64 {
        let late = self.windows_ms.iter().filter(|w| **w > bound_ms).count() as u64;
        late + (self.sampled - self.enforced)
    }
}

/// The window of a write acknowledged at `ack` whose subscribers enforced it at `times` (all
/// in ms since the same origin): until the last of them, 0 for one that had it before the
/// writer heard of it; `None` if one never did.
fn slowest(ack: f64, times: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    times
        .into_iter()
        .try_fold(0f64, |worst, at| Some(worst.max(at? - ack)))
}

/// The windows of the `sampled` revocations over `sidecars` sidecars, from `history`'s answers.
/// A sampled credential without an acknowledged revocation, or lifted, is skipped.
pub fn from_answers(history: &History, sampled: &[Cred], sidecars: u16) -> Windows {
    let mut by: HashMap<(u16, Cred), Vec<&Answer>> = HashMap::new();
    let wanted: std::collections::HashSet<Cred> = sampled.iter().copied().collect();
    for a in history.answers.iter().filter(|a| wanted.contains(&a.cred)) {
        by.entry((a.sidecar, a.cred)).or_default().push(a);
    }
    let index = WriteIndex::new(&history.writes, &history.answers);
    let mut windows = Vec::new();
    let mut measured = 0;
    for &c in sampled {
        let writes = index.of(c);
        if writes.iter().any(|w| w.kind == WriteKind::Lift) {
            continue;
        }
        let Some(ack) = writes
            .iter()
            .filter(|w| w.kind == WriteKind::Revoke)
            .filter_map(|w| w.acked)
            .min()
        else {
            continue;
        };
        measured += 1;
        let mut worst = Some(Duration::ZERO);
        for s in 0..sidecars {
            let enforced = by.get_mut(&(s, c)).and_then(|answers| {
                answers.sort_by_key(|a| a.sent);
                let after = answers
                    .iter()
                    .rposition(|a| !a.verdict.refuses())
                    .map_or(0, |i| i + 1);
                answers.get(after).map(|a| a.received)
            });
            worst = match (worst, enforced) {
                (Some(w), Some(e)) => Some(w.max(e.saturating_sub(ack))),
                _ => None,
            };
        }
        if let Some(w) = worst {
            windows.push(w.as_secs_f64() * 1e3);
        }
    }
    Windows::of(measured, &windows)
}

/// The windows of acknowledged writes `acks` (acknowledgement time in ms since the origin, and
/// version) over the sidecars' `timelines` (per sidecar, the versions it reported applying and
/// when, in ms since the origin, in order). A sidecar that applied a version before the writer
/// heard of it counts 0.
pub fn from_reports(acks: &[(f64, u64)], timelines: &[Vec<(u64, f64)>]) -> Windows {
    let windows: Vec<f64> = acks
        .iter()
        .filter_map(|&(ack, version)| {
            slowest(
                ack,
                timelines
                    .iter()
                    .map(|line| line.iter().find(|(v, _)| *v >= version).map(|(_, at)| *at)),
            )
        })
        .collect();
    Windows::of(acks.len() as u64, &windows)
}

/// The windows of acknowledged writes `acks` (acknowledgement time in ms since the origin, and
/// the write's index) over the baselines' subscribers: `held[s][w]` is when subscriber `s`
/// first held every key of write `w`, in ms since the origin, or `None` if it never did.
pub fn from_receipts(acks: &[(f64, usize)], held: &[Vec<Option<f64>>]) -> Windows {
    let windows: Vec<f64> = acks
        .iter()
        .filter_map(|&(ack, write)| {
            slowest(ack, held.iter().map(|s| s.get(write).copied().flatten()))
        })
        .collect();
    Windows::of(acks.len() as u64, &windows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Verdict::{Allowed, Revoked};
    use crate::history::check::tests::{answer, history, lift, revoke};

    fn on(sidecar: u16, a: Answer) -> Answer {
        Answer { sidecar, ..a }
    }

    #[test]
    fn the_window_ends_when_the_last_sidecar_refuses_for_good() {
        // Acknowledged at 100 ms. Sidecar 0 refuses from 120 (received 121); sidecar 1 allows
        // at 130 and refuses from 150 (received 151).
        let h = history(
            vec![revoke(0..10, 100, 5)],
            vec![
                on(0, answer(3, 120, Revoked, 5)),
                on(1, answer(3, 110, Allowed, 4)),
                on(1, answer(3, 130, Allowed, 4)),
                on(1, answer(3, 150, Revoked, 5)),
                on(1, answer(3, 160, Revoked, 5)),
            ],
        );
        let w = from_answers(&h, &[3], 2);
        assert_eq!((w.sampled, w.enforced), (1, 1));
        assert_eq!(w.ms.unwrap().max, 51.0);
    }

    #[test]
    fn a_sidecar_that_never_refused_leaves_the_revocation_without_a_window() {
        let h = history(
            vec![revoke(0..10, 100, 5)],
            vec![
                on(0, answer(3, 120, Revoked, 5)),
                on(1, answer(3, 130, Allowed, 4)),
                // Sidecar 1 refused, then allowed again: not enforced at the end.
                on(0, answer(4, 120, Revoked, 5)),
                on(1, answer(4, 120, Revoked, 5)),
                on(1, answer(4, 140, Allowed, 4)),
                // Sidecar 1 was never asked about 5.
                on(0, answer(5, 120, Revoked, 5)),
            ],
        );
        let w = from_answers(&h, &[3, 4, 5], 2);
        assert_eq!((w.sampled, w.enforced, w.ms), (3, 0, None));
    }

    #[test]
    fn lifted_and_unacknowledged_credentials_are_not_measured() {
        let h = history(
            vec![revoke(0..10, 100, 5), lift(3, 300, Some(8))],
            vec![answer(3, 120, Revoked, 5), answer(42, 120, Allowed, 5)],
        );
        let w = from_answers(&h, &[3, 42], 1);
        assert_eq!(w, Windows::default());
    }

    #[test]
    fn reports_give_a_window_per_write_from_the_slowest_sidecar() {
        let timelines = vec![
            vec![(3, 10.0), (5, 90.0), (9, 300.0)],
            vec![(5, 140.0), (9, 250.0)],
        ];
        // Version 5 acknowledged at 100: sidecar 0 had it first, sidecar 1 40 ms later.
        // Version 9 at 200: 100 ms. Version 12: never.
        let w = from_reports(&[(100.0, 5), (200.0, 9), (210.0, 12)], &timelines);
        assert_eq!((w.sampled, w.enforced), (3, 2));
        let p = w.ms.unwrap();
        assert_eq!((p.p50, p.max), (40.0, 100.0));
        assert_eq!(w.windows_ms, [40.0, 100.0]);
    }

    #[test]
    fn receipts_give_a_window_per_write_from_the_last_subscriber_to_hold_all_its_keys() {
        // Write 0 acknowledged at 100: held at 90 (before the ack: 0) and 130. Write 1 at 50:
        // held at 300 and 60. Write 2 at 200: one subscriber never held all of it.
        let held = vec![
            vec![Some(90.0), Some(300.0), Some(250.0)],
            vec![Some(130.0), Some(60.0), None],
        ];
        let w = from_receipts(&[(100.0, 0), (50.0, 1), (200.0, 2)], &held);
        assert_eq!((w.sampled, w.enforced), (3, 2));
        assert_eq!(w.windows_ms, [30.0, 250.0]);
        // Past a 100 ms bound: the 250 ms window and the write never held everywhere.
        assert_eq!((w.past(100.0), w.past(250.0), w.past(10.0)), (2, 1, 3));
        // A subscriber that had everything before every ack.
        let w = from_receipts(&[(100.0, 0)], &[vec![Some(10.0)]]);
        assert_eq!(w.windows_ms, [0.0]);
    }
}
