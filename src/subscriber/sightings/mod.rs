//! Sightings: each denial of a revoked credential, counted per (revocation, service) with its
//! first and last time, in a table of bounded size, and reported to a node of the cluster in
//! batches, so an incident responder sees which revoked credentials are still being presented
//! (`recall sightings`). Only checks that an entry or a rule answered `revoked` are counted; an
//! allowed, stale or unconfirmed answer is not a sighting.
//!
//! The table holds what was counted since the last report. When it is full, a denial of a
//! revocation not yet in it is counted as dropped (and reported as such), never at the cost of the
//! check: noting a sighting takes one short lock, and only on the denial path.

mod report;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use recall_core::{Kind, Match, Namespace, ScopeKind, TokenFacts};

use crate::proto as pb;

pub use report::report;

/// The most sightings one report carries (the node refuses more).
pub const MAX_PER_REPORT: usize = 4096;
/// The longest kind name a node takes.
pub const MAX_KIND: usize = 32;
/// The longest namespace or value a node takes (no entry or rule names a longer one).
pub const MAX_VALUE: usize = 256;
/// The longest service name.
pub const MAX_SERVICE: usize = 128;

/// How a subscriber counts and reports sightings.
#[derive(Clone, Debug)]
pub struct SightingsConfig {
    /// The name of the service whose denials these are (empty: the subscriber's id).
    pub service: String,
    /// How often the counts are sent to the cluster (zero: never; nothing is counted).
    pub interval: Duration,
    /// The most distinct (revocation, service) pairs held between two reports.
    pub max: usize,
}

impl Default for SightingsConfig {
    fn default() -> Self {
        Self {
            service: String::new(),
            interval: Duration::from_secs(5),
            max: 10_000,
        }
    }
}

impl SightingsConfig {
    /// Refuses a configuration that cannot work, naming the field.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.service.len() > MAX_SERVICE {
            anyhow::bail!("service: at most {MAX_SERVICE} bytes");
        }
        if !self.interval.is_zero() && self.interval < Duration::from_millis(100) {
            anyhow::bail!("sightings interval: at least 100 ms (or 0 to turn sightings off)");
        }
        if self.max == 0 && !self.interval.is_zero() {
            anyhow::bail!("sightings max: at least 1 (or an interval of 0 to turn them off)");
        }
        Ok(())
    }
}

/// Which revocation refused a token.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Revocation {
    /// A not-before rule (`true`) or a revoked entry.
    pub rule: bool,
    /// The entry's kind, or the rule's scope.
    pub kind: &'static str,
    /// The issuer or tenant it matched under.
    pub namespace: String,
    /// The revoked value; for a rule, the subject, client or key it names (empty for an issuer-
    /// or tenant-wide rule).
    pub value: String,
}

impl Revocation {
    /// What `m` matched in the token `facts` describe; `None` for a lite-mode hit that is not
    /// certain, or a fact the token lacks.
    pub fn of(m: &Match, facts: &TokenFacts<'_>) -> Option<Self> {
        match *m {
            Match::Entry { exact: false, .. } => None,
            Match::Entry { kind, under, .. } => {
                let value = match kind {
                    Kind::Token => facts.jti,
                    Kind::Session => facts.sid,
                    Kind::ApiKey => facts.api_key,
                    Kind::Subject => facts.sub,
                    Kind::Client => facts.client,
                    Kind::Key => facts.kid,
                }?;
                let namespace = match under {
                    Namespace::Issuer => facts.iss,
                    Namespace::Tenant => facts.tenant?,
                };
                Some(Self {
                    rule: false,
                    kind: kind.name(),
                    namespace: namespace.into(),
                    value: value.into(),
                })
            }
            Match::Rule { scope, .. } => {
                let (namespace, value) = match scope {
                    ScopeKind::Issuer => (facts.iss, ""),
                    ScopeKind::Tenant => (facts.tenant?, ""),
                    ScopeKind::Subject => (facts.iss, facts.sub?),
                    ScopeKind::Client => (facts.iss, facts.client?),
                    ScopeKind::Key => (facts.iss, facts.kid?),
                };
                Some(Self {
                    rule: true,
                    kind: scope.name(),
                    namespace: namespace.into(),
                    value: value.into(),
                })
            }
        }
    }

    /// Whether a node takes it (no entry or rule names a longer value).
    fn fits(&self) -> bool {
        !self.namespace.is_empty()
            && self.namespace.len() <= MAX_VALUE
            && self.value.len() <= MAX_VALUE
    }

    /// A person's reading: `token abc under https://idp`, `subject rule alice under ...`.
    pub fn describe(&self) -> String {
        describe(self.rule, self.kind, &self.namespace, &self.value)
    }
}

/// A person's reading of a revocation: `token abc under https://idp`, `issuer rule
/// https://idp`, `subject rule alice under https://idp`.
pub fn describe(rule: bool, kind: &str, namespace: &str, value: &str) -> String {
    match (rule, value.is_empty()) {
        (false, _) => format!("{kind} {value} under {namespace}"),
        (true, true) => format!("{kind} rule {namespace}"),
        (true, false) => format!("{kind} rule {value} under {namespace}"),
    }
}

/// Denials of one revocation since the last report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tally {
    /// How many.
    pub count: u64,
    /// Unix milliseconds of the first and the last.
    pub first_ms: i64,
    /// See `first_ms`.
    pub last_ms: i64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.count = self.count.saturating_add(other.count);
        self.first_ms = self.first_ms.min(other.first_ms);
        self.last_ms = self.last_ms.max(other.last_ms);
    }
}

/// Counts, for metrics.
#[derive(Debug, Default)]
pub struct SightingCounts {
    /// Denials counted in a sighting.
    pub noted: AtomicU64,
    /// Denials not counted because the table was full.
    pub dropped: AtomicU64,
    /// Reports a node took.
    pub reports_sent: AtomicU64,
    /// Reports no node took (their counts wait for the next one).
    pub reports_failed: AtomicU64,
}

/// The table of sightings since the last report.
#[derive(Debug)]
pub struct Sightings {
    service: String,
    max: usize,
    on: bool,
    table: Mutex<Table>,
    /// What was counted and sent.
    pub counts: SightingCounts,
}

#[derive(Debug, Default)]
struct Table {
    tallies: HashMap<Revocation, Tally>,
    /// Denials dropped since the last report.
    dropped: u64,
}

impl Sightings {
    /// A table for the subscriber `id` with `config`.
    pub fn new(id: &str, config: &SightingsConfig) -> Self {
        let service = match config.service.as_str() {
            "" => id.to_owned(),
            s => s.to_owned(),
        };
        Self {
            service,
            max: config.max,
            on: !config.interval.is_zero(),
            table: Mutex::default(),
            counts: SightingCounts::default(),
        }
    }

    /// The service name the sightings are reported under.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Counts a denial of the token `facts` describe, which `matches` revoked, at `now_ms`.
    pub fn note(&self, facts: &TokenFacts<'_>, matches: &[Match], now_ms: i64) {
        if !self.on {
            return;
        }
        for m in matches {
            if let Some(r) = Revocation::of(m, facts) {
                self.note_one(r, now_ms);
            }
        }
    }

    /// Counts a denial of `revocation` at `now_ms`.
    pub fn note_one(&self, revocation: Revocation, now_ms: i64) {
        if !self.on || !revocation.fits() {
            return;
        }
        let one = Tally {
            count: 1,
            first_ms: now_ms,
            last_ms: now_ms,
        };
        let mut t = self.table.lock().expect("sightings lock");
        let len = t.tallies.len();
        match t.tallies.get_mut(&revocation) {
            Some(tally) => tally.add(one),
            None if len < self.max => {
                t.tallies.insert(revocation, one);
            }
            None => {
                t.dropped += 1;
                self.counts.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        self.counts.noted.fetch_add(1, Ordering::Relaxed);
    }

    /// Everything counted since the last report, and the denials dropped; the table is empty
    /// afterwards.
    pub fn take(&self) -> (Vec<(Revocation, Tally)>, u64) {
        let mut t = self.table.lock().expect("sightings lock");
        let taken = std::mem::take(&mut *t);
        (taken.tallies.into_iter().collect(), taken.dropped)
    }

    /// Puts back what a report could not deliver, merged with what was counted meanwhile (within
    /// the bound: the rest is counted as dropped).
    pub fn put_back(&self, batch: Vec<(Revocation, Tally)>, dropped: u64) {
        let mut t = self.table.lock().expect("sightings lock");
        t.dropped += dropped;
        for (r, tally) in batch {
            let len = t.tallies.len();
            match t.tallies.get_mut(&r) {
                Some(have) => have.add(tally),
                None if len < self.max => {
                    t.tallies.insert(r, tally);
                }
                None => t.dropped += tally.count,
            }
        }
    }

    /// The report of `batch` (at most [`MAX_PER_REPORT`] items).
    fn request(&self, batch: &[(Revocation, Tally)], dropped: u64) -> pb::ReportSightingsRequest {
        pb::ReportSightingsRequest {
            sightings: batch
                .iter()
                .map(|(r, t)| pb::Sighting {
                    rule: r.rule,
                    kind: r.kind.into(),
                    namespace: r.namespace.clone(),
                    value: r.value.clone(),
                    service: self.service.clone(),
                    count: t.count,
                    first_seen_ms: t.first_ms,
                    last_seen_ms: t.last_ms,
                    subscriber_id: String::new(),
                })
                .collect(),
            dropped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use recall_core::Timestamp;

    fn table(max: usize) -> Sightings {
        Sightings::new(
            "sidecar-1",
            &SightingsConfig {
                max,
                ..Default::default()
            },
        )
    }

    fn facts() -> TokenFacts<'static> {
        TokenFacts {
            iss: "https://idp",
            tenant: Some("acme"),
            jti: Some("t-1"),
            sub: Some("alice"),
            ..Default::default()
        }
    }

    const JTI: Match = Match::Entry {
        kind: Kind::Token,
        under: Namespace::Issuer,
        exact: true,
    };

    #[test]
    fn denials_are_counted_per_revocation_with_first_and_last_time() {
        let s = table(10);
        s.note(&facts(), &[JTI], 100);
        s.note(&facts(), &[JTI], 300);
        let rule = Match::Rule {
            scope: ScopeKind::Subject,
            not_before: Timestamp::from_millis(5),
        };
        s.note(&facts(), &[JTI, rule], 200);
        let (mut batch, dropped) = s.take();
        batch.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(dropped, 0);
        assert_eq!(batch.len(), 2);
        let (jti, t) = &batch[0];
        assert_eq!(jti.describe(), "token t-1 under https://idp");
        assert_eq!((t.count, t.first_ms, t.last_ms), (3, 100, 300));
        assert_eq!(
            batch[1].0.describe(),
            "subject rule alice under https://idp"
        );
        assert_eq!(s.service(), "sidecar-1");
        assert!(s.take().0.is_empty(), "taking empties the table");
    }

    #[test]
    fn an_uncertain_lite_hit_is_not_a_sighting() {
        let s = table(10);
        let hit = Match::Entry {
            kind: Kind::Token,
            under: Namespace::Issuer,
            exact: false,
        };
        s.note(&facts(), &[hit], 1);
        assert!(s.take().0.is_empty());
    }

    #[test]
    fn a_full_table_counts_new_revocations_as_dropped_and_keeps_counting_the_others() {
        let s = table(2);
        for i in 0..5 {
            let jti = format!("t-{i}");
            let f = TokenFacts {
                jti: Some(&jti),
                ..facts()
            };
            s.note(&f, &[JTI], 10);
        }
        s.note(&facts(), &[JTI], 20); // t-1: already held
        let (batch, dropped) = s.take();
        assert_eq!(batch.len(), 2);
        assert_eq!(dropped, 3);
        assert_eq!(s.counts.dropped.load(Ordering::Relaxed), 3);
        // Put back into a table that filled meanwhile: what does not fit is dropped, counted.
        s.note(&facts(), &[JTI], 30);
        s.put_back(batch, dropped);
        let (again, dropped) = s.take();
        assert_eq!(again.len(), 2);
        assert_eq!(again.iter().map(|(_, t)| t.count).sum::<u64>() + dropped, 7);
    }

    #[test]
    fn an_interval_of_zero_counts_nothing() {
        let s = Sightings::new(
            "x",
            &SightingsConfig {
                interval: Duration::ZERO,
                ..Default::default()
            },
        );
        s.note(&facts(), &[JTI], 1);
        assert!(s.take().0.is_empty());
    }
}
