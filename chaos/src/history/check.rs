//! The rules a history must keep, as one pure function ([`check`]): every answer is judged
//! against the writes the writer was told about and against the sidecar's own earlier answers.
//!
//! | rule | an answer violates it when |
//! | --- | --- |
//! | `bound` | it allows a credential whose revocation was acknowledged more than the staleness bound before the check was sent, with no lift sent meanwhile, and it is not stale under fail-open |
//! | `monotonic` | it allows a credential the same sidecar refused, fresh, at a version ≤ this one, with no lift committed in between |
//! | `versioned` | its version is at or past the write that last decided the credential, and it disagrees: allowed after a revocation (unless stale under fail-open), refused (fresh) after a lift |
//! | `never-revoked` | full mode: it refuses, fresh, a credential no write ever named |
//! | `policy` | it is stale under fail-closed and allows |
//!
//! A stale answer under fail-open says it cannot vouch for its state and that the policy chose
//! availability: only the policy rule judges it. Credentials here are named by entries only (no
//! not-before rule covers them), so the writes decide every verdict.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

use super::{Answer, Cred, History, Policy, Write, WriteKind};

/// How many violations a judgement lists (the earliest, by the time the check was sent).
pub const FIRST: usize = 20;

/// A rule of the history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// Allowed past the staleness bound after the revocation's acknowledgement.
    Bound,
    /// Allowed after the same sidecar refused at a version at most this one.
    Monotonic,
    /// Disagrees with the write its version includes.
    Versioned,
    /// Refused a credential never revoked.
    NeverRevoked,
    /// Allowed while stale under fail-closed.
    Policy,
}

impl Rule {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Rule::Bound => "bound",
            Rule::Monotonic => "monotonic",
            Rule::Versioned => "versioned",
            Rule::NeverRevoked => "never-revoked",
            Rule::Policy => "policy",
        }
    }
}

/// One answer that broke one rule.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Violation {
    /// The rule.
    pub rule: Rule,
    /// The answer.
    #[serde(skip)]
    pub answer: Answer,
    /// What was wrong, in words (times in ms since the origin).
    pub detail: String,
}

/// Violations per rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RuleCounts {
    /// [`Rule::Bound`].
    pub bound: u64,
    /// [`Rule::Monotonic`].
    pub monotonic: u64,
    /// [`Rule::Versioned`].
    pub versioned: u64,
    /// [`Rule::NeverRevoked`].
    pub never_revoked: u64,
    /// [`Rule::Policy`].
    pub policy: u64,
}

impl RuleCounts {
    fn add(&mut self, rule: Rule) {
        *match rule {
            Rule::Bound => &mut self.bound,
            Rule::Monotonic => &mut self.monotonic,
            Rule::Versioned => &mut self.versioned,
            Rule::NeverRevoked => &mut self.never_revoked,
            Rule::Policy => &mut self.policy,
        } += 1;
    }

    /// Every violation.
    pub fn total(&self) -> u64 {
        self.bound + self.monotonic + self.versioned + self.never_revoked + self.policy
    }
}

/// What the answers were, by the credential's history.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AnswerCounts {
    /// Every answer.
    pub total: u64,
    /// For credentials revoked (and never lifted).
    pub revoked: u64,
    /// For credentials no write named.
    pub never_revoked: u64,
    /// For credentials lifted.
    pub lifted: u64,
    /// Answers that said they were stale.
    pub stale: u64,
    /// Refusals of never-revoked credentials by stale answers (the fail-closed policy at work,
    /// not a violation).
    pub stale_refusals: u64,
}

/// The judgement of a history.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Judged {
    /// What was answered.
    pub answers: AnswerCounts,
    /// Violations per rule.
    pub violations: RuleCounts,
    /// The earliest [`FIRST`] violations, by the time the check was sent.
    pub first: Vec<Violation>,
}

/// Judges `history` by every rule.
pub fn check(history: &History) -> Judged {
    let index = WriteIndex::new(&history.writes, &history.answers);
    let refused = fresh_refusals(&history.answers);
    let mut judged = Judged::default();
    let mut all = Vec::new();
    for a in &history.answers {
        let writes = index.of(a.cred);
        count(&mut judged.answers, a, &writes);
        let found = [
            (Rule::Policy, policy(a)),
            (Rule::NeverRevoked, never_revoked(history, a, &writes)),
            (Rule::Bound, bound(history.bound, a, &writes)),
            (Rule::Monotonic, monotonic(a, &refused, &writes)),
            (Rule::Versioned, versioned(a, &writes)),
        ];
        for (rule, detail) in found {
            if let Some(detail) = detail {
                judged.violations.add(rule);
                all.push(Violation {
                    rule,
                    answer: *a,
                    detail,
                });
            }
        }
    }
    all.sort_by_key(|v| (v.answer.sent, v.answer.sidecar, v.answer.cred));
    all.truncate(FIRST);
    judged.first = all;
    judged
}

fn count(c: &mut AnswerCounts, a: &Answer, writes: &[&Write]) {
    c.total += 1;
    if writes.is_empty() {
        c.never_revoked += 1;
        if a.stale && a.verdict.refuses() {
            c.stale_refusals += 1;
        }
    } else if writes.iter().any(|w| w.kind == WriteKind::Lift) {
        c.lifted += 1;
    } else {
        c.revoked += 1;
    }
    if a.stale {
        c.stale += 1;
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn policy(a: &Answer) -> Option<String> {
    (a.stale && a.policy == Policy::FailClosed && !a.verdict.refuses())
        .then(|| "allowed by a stale answer under fail-closed".into())
}

fn never_revoked(h: &History, a: &Answer, writes: &[&Write]) -> Option<String> {
    (h.full_mode && writes.is_empty() && a.verdict.refuses() && !a.stale).then(|| {
        format!(
            "refused a never-revoked credential, fresh, at version {}",
            a.version
        )
    })
}

/// Whether lift `l` may have undone revocation `r` by the time `a` was answered: it was sent
/// before the answer arrived, and it is not known to have committed before the revocation.
fn may_undo(l: &Write, r: &Write, a: &Answer) -> bool {
    let not_before = match (l.version, r.version) {
        (Some(lv), Some(rv)) => lv > rv,
        _ => l.acked.is_none_or(|la| la > r.sent),
    };
    l.kind == WriteKind::Lift && l.sent < a.received && not_before
}

fn bound(bound: Duration, a: &Answer, writes: &[&Write]) -> Option<String> {
    if a.verdict.refuses() || a.open_stale() {
        return None;
    }
    let lifts: Vec<&Write> = writes
        .iter()
        .copied()
        .filter(|w| w.kind == WriteKind::Lift)
        .collect();
    writes
        .iter()
        .filter(|r| r.kind == WriteKind::Revoke)
        .filter_map(|r| Some((r, r.acked?)))
        .filter(|(r, at)| *at + bound < a.sent && !lifts.iter().any(|l| may_undo(l, r, a)))
        .min_by_key(|(_, at)| *at)
        .map(|(_, at)| {
            format!(
                "allowed {:.0} ms after the revocation was acknowledged (bound {:.0} ms), at version {}{}",
                ms(a.sent - at),
                ms(bound),
                a.version,
                if a.stale { ", stale" } else { "" }
            )
        })
}

fn monotonic(
    a: &Answer,
    refused: &HashMap<(u16, Cred), Vec<u64>>,
    writes: &[&Write],
) -> Option<String> {
    if a.verdict.refuses() || a.open_stale() {
        return None;
    }
    let versions = refused.get(&(a.sidecar, a.cred))?;
    // The latest refusal at or below this version: if a lift committed after it, it also
    // committed after every earlier one.
    let i = versions.partition_point(|v| *v <= a.version);
    let floor = *versions.get(i.checked_sub(1)?)?;
    let lifted = writes.iter().any(|l| {
        l.kind == WriteKind::Lift
            && match l.version {
                Some(lv) => floor < lv && lv <= a.version,
                None => l.sent < a.received,
            }
    });
    (!lifted).then(|| {
        format!(
            "allowed at version {} after refusing, fresh, at version {floor}, with no lift in between",
            a.version
        )
    })
}

fn versioned(a: &Answer, writes: &[&Write]) -> Option<String> {
    let mut known = Vec::with_capacity(writes.len());
    for w in writes {
        // A write of unknown version may be anywhere in the log: no claim.
        known.push((w.version?, w.kind));
    }
    let (v, kind) = known
        .into_iter()
        .filter(|(v, _)| *v <= a.version)
        .max_by_key(|(v, _)| *v)?;
    match kind {
        WriteKind::Revoke if !a.verdict.refuses() && !a.open_stale() => Some(format!(
            "allowed at version {}, which includes the revocation (version {v})",
            a.version
        )),
        WriteKind::Lift if a.verdict.refuses() && !a.stale => Some(format!(
            "refused, fresh, at version {}, which includes the lift (version {v})",
            a.version
        )),
        _ => None,
    }
}

/// Per (sidecar, credential): the versions of fresh refusals, sorted.
fn fresh_refusals(answers: &[Answer]) -> HashMap<(u16, Cred), Vec<u64>> {
    let mut m: HashMap<(u16, Cred), Vec<u64>> = HashMap::new();
    for a in answers.iter().filter(|a| a.verdict.refuses() && !a.stale) {
        m.entry((a.sidecar, a.cred)).or_default().push(a.version);
    }
    for v in m.values_mut() {
        v.sort_unstable();
    }
    m
}

/// The writes naming each answered credential, found without a scan per answer.
pub(crate) struct WriteIndex<'a> {
    by_cred: HashMap<Cred, Vec<&'a Write>>,
}

impl<'a> WriteIndex<'a> {
    pub(crate) fn new(writes: &'a [Write], answers: &[Answer]) -> Self {
        let mut creds: Vec<Cred> = answers.iter().map(|a| a.cred).collect();
        creds.sort_unstable();
        creds.dedup();
        let mut by_cred: HashMap<Cred, Vec<&Write>> = HashMap::new();
        for w in writes {
            let lo = creds.partition_point(|c| *c < w.creds.start);
            let hi = creds.partition_point(|c| *c < w.creds.end);
            for c in &creds[lo..hi] {
                by_cred.entry(*c).or_default().push(w);
            }
        }
        Self { by_cred }
    }

    pub(crate) fn of(&self, cred: Cred) -> Vec<&'a Write> {
        self.by_cred.get(&cred).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::history::Verdict;

    pub(crate) const BOUND: Duration = Duration::from_secs(2);

    pub(crate) fn t(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    pub(crate) fn revoke(creds: std::ops::Range<Cred>, acked_ms: u64, version: u64) -> Write {
        Write {
            kind: WriteKind::Revoke,
            creds,
            sent: t(acked_ms.saturating_sub(5)),
            acked: Some(t(acked_ms)),
            version: Some(version),
        }
    }

    pub(crate) fn lift(cred: Cred, sent_ms: u64, version: Option<u64>) -> Write {
        Write {
            kind: WriteKind::Lift,
            creds: cred..cred + 1,
            sent: t(sent_ms),
            acked: version.map(|_| t(sent_ms + 5)),
            version,
        }
    }

    /// A fresh fail-closed answer of sidecar 0, sent at `at_ms`, received 1 ms later.
    pub(crate) fn answer(cred: Cred, at_ms: u64, verdict: Verdict, version: u64) -> Answer {
        Answer {
            sidecar: 0,
            cred,
            sent: t(at_ms),
            received: t(at_ms + 1),
            verdict,
            version,
            stale: false,
            policy: Policy::FailClosed,
        }
    }

    pub(crate) fn history(writes: Vec<Write>, answers: Vec<Answer>) -> History {
        History {
            bound: BOUND,
            full_mode: true,
            writes,
            answers,
        }
    }

    fn rules(j: &Judged) -> Vec<Rule> {
        j.first.iter().map(|v| v.rule).collect()
    }

    use Verdict::{Allowed, Revoked};

    #[test]
    fn a_history_that_keeps_every_rule_has_no_violation() {
        let h = history(
            vec![revoke(0..10, 100, 5), lift(7, 500, Some(8))],
            vec![
                // Before the revocation reached it, within the bound.
                answer(3, 50, Allowed, 3),
                answer(3, 150, Allowed, 4),
                answer(3, 160, Revoked, 5),
                answer(3, 5_000, Revoked, 9),
                // Revoked, then lifted: allowed again once the lift committed.
                answer(7, 200, Revoked, 6),
                answer(7, 600, Allowed, 8),
                // Never revoked.
                answer(42, 200, Allowed, 6),
            ],
        );
        let j = check(&h);
        assert_eq!(j.violations.total(), 0, "{:?}", j.first);
        assert_eq!(
            j.answers,
            AnswerCounts {
                total: 7,
                revoked: 4,
                never_revoked: 1,
                lifted: 2,
                stale: 0,
                stale_refusals: 0,
            }
        );
    }

    #[test]
    fn allowing_past_the_bound_breaks_the_bound_rule() {
        // Acknowledged at 100 ms; the sidecar, stuck at version 4, allows it at 2101 ms.
        let h = history(
            vec![revoke(0..10, 100, 5)],
            vec![answer(3, 2_100, Allowed, 4), answer(3, 2_101, Allowed, 4)],
        );
        let j = check(&h);
        assert_eq!(j.violations.bound, 1, "{:?}", j.first);
        assert_eq!(j.violations.total(), 1);
        assert_eq!(j.first[0].answer.sent, t(2_101));
        assert!(
            j.first[0].detail.contains("2001 ms after"),
            "{}",
            j.first[0].detail
        );
    }

    #[test]
    fn a_stale_fail_open_answer_is_exempt_but_a_stale_fail_closed_one_must_refuse() {
        let open = Answer {
            stale: true,
            policy: Policy::FailOpen,
            ..answer(3, 9_000, Allowed, 4)
        };
        let closed = Answer {
            stale: true,
            ..answer(3, 9_000, Allowed, 4)
        };
        let j = check(&history(vec![revoke(0..10, 100, 5)], vec![open]));
        assert_eq!(j.violations.total(), 0, "{:?}", j.first);
        let j = check(&history(vec![revoke(0..10, 100, 5)], vec![closed]));
        assert_eq!(rules(&j), [Rule::Policy, Rule::Bound]);
    }

    #[test]
    fn allowing_after_refusing_at_a_lower_version_breaks_monotonicity() {
        // The batch's last entry is version 9; the credential was in entry 7. Refused at 7,
        // allowed at 8: no lift, so the state went backwards.
        let h = history(
            vec![revoke(0..10, 100, 9)],
            vec![answer(3, 150, Revoked, 7), answer(3, 160, Allowed, 8)],
        );
        let j = check(&h);
        assert_eq!(rules(&j), [Rule::Monotonic]);
        // Allowed at a lower version (an older state, e.g. another sidecar's) is not a breach.
        let h = history(
            vec![revoke(0..10, 100, 9)],
            vec![answer(3, 150, Revoked, 7), answer(3, 160, Allowed, 6)],
        );
        assert_eq!(check(&h).violations.total(), 0);
    }

    #[test]
    fn a_lift_committed_in_between_excuses_an_allow_and_only_then() {
        let answers = vec![answer(3, 150, Revoked, 7), answer(3, 400, Allowed, 8)];
        let between = history(
            vec![revoke(0..10, 100, 7), lift(3, 300, Some(8))],
            answers.clone(),
        );
        assert_eq!(check(&between).violations.total(), 0);
        // The lift committed at 10: version 8 should still refuse.
        let later = history(
            vec![revoke(0..10, 100, 7), lift(3, 300, Some(10))],
            answers.clone(),
        );
        assert_eq!(rules(&check(&later)), [Rule::Monotonic, Rule::Versioned]);
        // A lift whose version is unknown excuses what was answered after it was sent.
        let unknown = history(vec![revoke(0..10, 100, 9), lift(3, 300, None)], answers);
        assert_eq!(check(&unknown).violations.total(), 0);
    }

    #[test]
    fn an_answer_at_a_version_past_a_write_must_agree_with_it() {
        // Allowed at version 6 ≥ 5 within the bound: the state included the revocation.
        let h = history(
            vec![revoke(0..10, 100, 5)],
            vec![answer(3, 200, Allowed, 6)],
        );
        assert_eq!(rules(&check(&h)), [Rule::Versioned]);
        // Refused, fresh, at version 9 ≥ the lift's 8.
        let h = history(
            vec![revoke(0..10, 100, 5), lift(3, 300, Some(8))],
            vec![answer(3, 400, Revoked, 9)],
        );
        assert_eq!(rules(&check(&h)), [Rule::Versioned]);
        // A stale refusal after a lift is the fail-closed policy, not the state.
        let h = history(
            vec![revoke(0..10, 100, 5), lift(3, 300, Some(8))],
            vec![Answer {
                stale: true,
                ..answer(3, 400, Revoked, 9)
            }],
        );
        assert_eq!(check(&h).violations.total(), 0);
    }

    #[test]
    fn a_fresh_refusal_of_a_never_revoked_credential_breaks_full_mode_only() {
        let answers = vec![
            answer(42, 100, Revoked, 3),
            Answer {
                stale: true,
                ..answer(43, 100, Revoked, 3)
            },
        ];
        let j = check(&history(vec![revoke(0..10, 100, 5)], answers.clone()));
        assert_eq!(rules(&j), [Rule::NeverRevoked]);
        assert_eq!(j.first[0].answer.cred, 42);
        assert_eq!(j.answers.stale_refusals, 1);
        let lite = History {
            full_mode: false,
            ..history(vec![], answers)
        };
        assert_eq!(check(&lite).violations.total(), 0);
    }

    #[test]
    fn a_lift_sent_before_the_answer_excuses_an_allow_past_the_bound() {
        let h = history(
            vec![revoke(0..10, 100, 5), lift(3, 10_000, Some(8))],
            vec![
                // Before the lift was sent, long past the bound: a breach.
                answer(3, 9_000, Allowed, 4),
                // After it was sent: the lift may have taken effect.
                answer(3, 10_003, Allowed, 8),
            ],
        );
        let j = check(&h);
        assert_eq!(rules(&j), [Rule::Bound]);
        assert_eq!(j.first[0].answer.sent, t(9_000));
    }

    #[test]
    fn the_first_violations_are_the_earliest_and_the_counts_are_complete() {
        let answers: Vec<Answer> = (0..(FIRST as u64 + 10))
            .rev()
            .map(|i| answer(100 + i as Cred, 1_000 + i, Revoked, 3))
            .collect();
        let j = check(&history(vec![], answers));
        assert_eq!(j.violations.never_revoked, FIRST as u64 + 10);
        assert_eq!(j.first.len(), FIRST);
        assert_eq!(j.first[0].answer.sent, t(1_000));
        assert!(
            j.first
                .windows(2)
                .all(|w| w[0].answer.sent <= w[1].answer.sent)
        );
    }
}
