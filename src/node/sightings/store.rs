//! The sightings one node holds, within a bound, and members' lists merged into one.
//!
//! A report costs the node O(its sightings) however full the table is: a held sighting is
//! found without copying its fields, and a full table makes room a tenth at a time by dropping
//! the rows seen least recently in one pass, without copying any key. Reports keep coming when
//! services are shown revoked credentials in bulk (a replay of stolen tokens), and what they
//! cost is taken from the node's Raft and streams.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::proto as pb;

/// What a sighting is of: a revocation at a service.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    rule: bool,
    kind: String,
    namespace: String,
    value: String,
    service: String,
}

impl Key {
    fn of(s: &pb::Sighting) -> Self {
        Self {
            rule: s.rule,
            kind: s.kind.clone(),
            namespace: s.namespace.clone(),
            value: s.value.clone(),
            service: s.service.clone(),
        }
    }

    /// The key of `s`, taking its fields rather than copying them.
    fn take(s: &mut pb::Sighting) -> Self {
        Self {
            rule: s.rule,
            kind: std::mem::take(&mut s.kind),
            namespace: std::mem::take(&mut s.namespace),
            value: std::mem::take(&mut s.value),
            service: std::mem::take(&mut s.service),
        }
    }

    fn sighting(&self, row: &Row) -> pb::Sighting {
        pb::Sighting {
            rule: self.rule,
            kind: self.kind.clone(),
            namespace: self.namespace.clone(),
            value: self.value.clone(),
            service: self.service.clone(),
            count: row.count,
            first_seen_ms: row.first_ms,
            last_seen_ms: row.last_ms,
            subscriber_id: row.subscriber.clone(),
        }
    }
}

/// The counts of one sighting.
#[derive(Clone, Debug)]
struct Row {
    count: u64,
    first_ms: i64,
    last_ms: i64,
    /// The subscriber that reported the last denial.
    subscriber: String,
}

impl Row {
    /// Widens this row by `other`'s denials (reported by `subscriber`).
    fn add(&mut self, count: u64, first_ms: i64, last_ms: i64, subscriber: &str) {
        self.count = self.count.saturating_add(count);
        self.first_ms = self.first_ms.min(first_ms);
        if last_ms >= self.last_ms {
            self.last_ms = last_ms;
            if self.subscriber != subscriber {
                self.subscriber = subscriber.to_owned();
            }
        }
    }
}

/// The sightings one node holds.
#[derive(Debug)]
pub struct Store {
    max: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    rows: HashMap<Key, Row>,
    /// Denials subscribers could not count (their tables were full), as they reported.
    dropped: u64,
    /// Rows dropped, least recently seen first, to stay within the bound.
    evicted: u64,
}

impl Store {
    /// A store of at most `max` sightings.
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            inner: Mutex::default(),
        }
    }

    /// Keeps a validated report of `subscriber`; how many sightings it held.
    pub fn record(&self, subscriber: &str, req: pb::ReportSightingsRequest) -> u32 {
        let n = req.sightings.len() as u32;
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.dropped = inner.dropped.saturating_add(req.dropped);
        for mut s in req.sightings {
            let key = Key::take(&mut s);
            if let Some(row) = inner.rows.get_mut(&key) {
                row.add(s.count, s.first_seen_ms, s.last_seen_ms, subscriber);
                continue;
            }
            if inner.rows.len() >= self.max {
                inner.evict(self.max);
            }
            inner.rows.insert(
                key,
                Row {
                    count: s.count,
                    first_ms: s.first_seen_ms,
                    last_ms: s.last_seen_ms,
                    subscriber: subscriber.to_owned(),
                },
            );
        }
        n
    }

    /// How many sightings it holds.
    pub fn held(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .rows
            .len()
    }

    /// The sightings last seen at or after `since_ms`, the most recent first, at most `limit`.
    pub fn list(&self, since_ms: i64, limit: u32) -> pb::NodeSightingsReply {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut rows: Vec<(&Key, &Row)> = inner
            .rows
            .iter()
            .filter(|(_, r)| r.last_ms >= since_ms)
            .collect();
        let limit = limit as usize;
        let truncated = rows.len() > limit;
        if truncated {
            rows.select_nth_unstable_by_key(limit, |(_, r)| std::cmp::Reverse(r.last_ms));
            rows.truncate(limit);
        }
        let mut sightings: Vec<pb::Sighting> =
            rows.into_iter().map(|(k, r)| k.sighting(r)).collect();
        sort(&mut sightings);
        pb::NodeSightingsReply {
            node_id: 0,
            sightings,
            dropped: inner.dropped,
            evicted: inner.evicted,
            truncated,
        }
    }
}

impl Inner {
    /// Drops the least recently seen tenth of a full table (at least one), at once, so a steady
    /// stream of new sightings evicts in batches rather than scanning the table for each: the
    /// cut-off time is found among the rows' times alone, then one pass drops what is older
    /// (and as many as needed of those seen at the cut-off itself).
    fn evict(&mut self, max: usize) {
        let n = (max / 10).max(1).min(self.rows.len());
        if n == 0 {
            return;
        }
        let mut times: Vec<i64> = self.rows.values().map(|r| r.last_ms).collect();
        let cutoff = *times.select_nth_unstable(n - 1).1;
        let older = times.iter().filter(|t| **t < cutoff).count();
        let mut at_cutoff = n - older;
        let before = self.rows.len();
        self.rows.retain(|_, r| {
            if r.last_ms < cutoff {
                return false;
            }
            if r.last_ms == cutoff && at_cutoff > 0 {
                at_cutoff -= 1;
                return false;
            }
            true
        });
        self.evicted = self
            .evicted
            .saturating_add((before - self.rows.len()) as u64);
    }
}

/// The most recently seen first; ties in a stable order.
fn sort(sightings: &mut [pb::Sighting]) {
    sightings.sort_by(|a, b| {
        b.last_seen_ms
            .cmp(&a.last_seen_ms)
            .then_with(|| a.service.cmp(&b.service))
            .then_with(|| a.kind.cmp(&b.kind))
            .then_with(|| a.namespace.cmp(&b.namespace))
            .then_with(|| a.value.cmp(&b.value))
            .then_with(|| a.rule.cmp(&b.rule))
    });
}

/// Members' lists merged into one (counts summed per revocation and service, times widened, the
/// subscriber of the latest denial), the most recent first, at most `limit`.
pub fn merge(
    parts: Vec<pb::NodeSightingsReply>,
    silent: Vec<u64>,
    limit: u32,
) -> pb::ListSightingsReply {
    let mut rows: HashMap<Key, Row> = HashMap::new();
    let (mut dropped, mut evicted, mut truncated) = (0u64, 0u64, false);
    for part in parts {
        dropped = dropped.saturating_add(part.dropped);
        evicted = evicted.saturating_add(part.evicted);
        truncated |= part.truncated;
        for s in part.sightings {
            let key = Key::of(&s);
            match rows.get_mut(&key) {
                Some(row) => row.add(s.count, s.first_seen_ms, s.last_seen_ms, &s.subscriber_id),
                None => {
                    rows.insert(
                        key,
                        Row {
                            count: s.count,
                            first_ms: s.first_seen_ms,
                            last_ms: s.last_seen_ms,
                            subscriber: s.subscriber_id,
                        },
                    );
                }
            }
        }
    }
    let total = rows.len() as u64;
    let mut sightings: Vec<pb::Sighting> = rows.iter().map(|(k, r)| k.sighting(r)).collect();
    sort(&mut sightings);
    if sightings.len() > limit as usize {
        sightings.truncate(limit as usize);
        truncated = true;
    }
    pb::ListSightingsReply {
        sightings,
        silent_nodes: silent,
        dropped,
        evicted,
        total,
        truncated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(value: &str, service: &str, count: u64, first: i64, last: i64) -> pb::Sighting {
        pb::Sighting {
            rule: false,
            kind: "token".into(),
            namespace: "https://idp".into(),
            value: value.into(),
            service: service.into(),
            count,
            first_seen_ms: first,
            last_seen_ms: last,
            subscriber_id: String::new(),
        }
    }

    fn report(s: Vec<pb::Sighting>) -> pb::ReportSightingsRequest {
        pb::ReportSightingsRequest {
            sightings: s,
            dropped: 0,
        }
    }

    #[test]
    fn reports_of_one_revocation_at_one_service_add_up() {
        let store = Store::new(100);
        store.record("sc-1", report(vec![seen("t1", "api", 2, 10, 20)]));
        store.record(
            "sc-2",
            report(vec![
                seen("t1", "api", 3, 5, 30),
                seen("t1", "web", 1, 7, 7),
            ]),
        );
        let l = store.list(0, 10);
        assert_eq!(l.sightings.len(), 2);
        let api = &l.sightings[0];
        assert_eq!(
            (
                api.service.as_str(),
                api.count,
                api.first_seen_ms,
                api.last_seen_ms
            ),
            ("api", 5, 5, 30)
        );
        assert_eq!(
            api.subscriber_id, "sc-2",
            "the subscriber of the latest denial"
        );
        assert_eq!(l.sightings[1].service, "web");
        assert!(!l.truncated);
        assert_eq!(
            store.list(8, 10).sightings.len(),
            1,
            "since_ms filters by the last denial"
        );
    }

    #[test]
    fn a_full_store_evicts_the_least_recently_seen_and_counts_them() {
        let store = Store::new(20);
        let many: Vec<_> = (0..25)
            .map(|i| seen(&format!("t{i}"), "api", 1, 1, 100 + i))
            .collect();
        store.record("sc", report(many));
        assert!(store.held() <= 20);
        let l = store.list(0, 100);
        assert_eq!(l.evicted, 25 - store.held() as u64);
        assert_eq!(l.sightings[0].value, "t24", "the newest are kept");
        assert!(
            l.sightings.iter().all(|s| s.value != "t0"),
            "the oldest went first"
        );
    }

    #[test]
    fn a_full_store_makes_room_a_tenth_at_a_time_even_when_every_time_ties() {
        let store = Store::new(100);
        let at = |from: usize, n: usize| {
            report(
                (from..from + n)
                    .map(|i| seen(&format!("t{i}"), "api", 1, 5, 5))
                    .collect(),
            )
        };
        store.record("sc", at(0, 100));
        assert_eq!(store.held(), 100);
        store.record("sc", at(100, 1));
        assert_eq!(store.held(), 91, "ten dropped, then the new one kept");
        let l = store.list(0, 1000);
        assert_eq!(l.evicted, 10);
        assert!(l.sightings.iter().any(|s| s.value == "t100"));
        // A held sighting is counted, not added, however full the table.
        store.record("sc", at(100, 1));
        assert_eq!(store.held(), 91);
        let t100 = store.list(0, 1000);
        let t100 = t100.sightings.iter().find(|s| s.value == "t100").unwrap();
        assert_eq!(t100.count, 2);
    }

    #[test]
    fn a_list_returns_the_most_recent_within_its_limit() {
        let store = Store::new(100);
        store.record(
            "sc",
            report(
                (0..10)
                    .map(|i| seen(&format!("t{i}"), "api", 1, 1, i + 1))
                    .collect(),
            ),
        );
        let l = store.list(0, 3);
        let values: Vec<_> = l.sightings.iter().map(|s| s.value.as_str()).collect();
        assert_eq!(values, ["t9", "t8", "t7"]);
        assert!(l.truncated);
    }

    #[test]
    fn merging_members_sums_counts_and_keeps_the_silent_named() {
        let a = pb::NodeSightingsReply {
            node_id: 1,
            sightings: vec![pb::Sighting {
                subscriber_id: "sc-1".into(),
                ..seen("t1", "api", 2, 10, 20)
            }],
            dropped: 1,
            evicted: 0,
            truncated: false,
        };
        let b = pb::NodeSightingsReply {
            node_id: 2,
            sightings: vec![pb::Sighting {
                subscriber_id: "sc-2".into(),
                ..seen("t1", "api", 4, 15, 40)
            }],
            dropped: 2,
            evicted: 3,
            truncated: false,
        };
        let m = merge(vec![a, b], vec![3], 10);
        assert_eq!(m.sightings.len(), 1);
        let s = &m.sightings[0];
        assert_eq!((s.count, s.first_seen_ms, s.last_seen_ms), (6, 10, 40));
        assert_eq!(s.subscriber_id, "sc-2");
        assert_eq!((m.dropped, m.evicted, m.total), (3, 3, 1));
        assert_eq!(m.silent_nodes, [3]);
    }
}
