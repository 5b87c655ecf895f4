//! What a relay tells its upstream about the subscribers behind it: on each stream it follows,
//! first every one of them, then what changed (applied versions, arrivals, departures), in
//! messages within the upstream's 64 KiB limit, so the cluster's convergence counts them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use recall_stream::{Downstream, Report};

use crate::node::subscribe::Registry;
use crate::subscriber::held::Reporter;
use crate::wire::report::MAX_REPORT;

/// The bytes of subscriber entries one report message carries at most (the upstream refuses
/// messages over 64 KiB).
const REPORT_BYTES: usize = 48 << 10;

/// The subscribers a relay serves, and what it last reported of them.
pub struct Downstreams {
    registry: Arc<Registry>,
    last: Mutex<HashMap<String, Downstream>>,
}

impl Downstreams {
    /// Reports what `registry` holds.
    pub fn new(registry: Arc<Registry>) -> Self {
        Self {
            registry,
            last: Mutex::default(),
        }
    }
}

impl Reporter for Downstreams {
    fn report(&self, full: bool) -> Vec<Report> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if full {
            last.clear();
        }
        let now: HashMap<String, Downstream> = self
            .registry
            .list()
            .into_iter()
            .map(|s| {
                let d = Downstream {
                    id: s.id.clone(),
                    mode: s.mode,
                    applied: s.applied,
                    via: s.via,
                };
                (s.id, d)
            })
            .collect();
        let mut changed: Vec<&Downstream> = now
            .values()
            .filter(|d| last.get(&d.id) != Some(d))
            .collect();
        changed.sort_by(|a, b| a.id.cmp(&b.id));
        let mut gone: Vec<String> = last
            .keys()
            .filter(|id| !now.contains_key(*id))
            .cloned()
            .collect();
        gone.sort();

        let mut out = Vec::new();
        let mut cur = Report::default();
        let mut bytes = 0;
        for d in changed {
            let size = d.id.len() + d.mode.len() + d.via.len() + 16;
            if cur.subscribers.len() == MAX_REPORT || bytes + size > REPORT_BYTES {
                out.push(std::mem::take(&mut cur));
                bytes = 0;
            }
            bytes += size;
            cur.subscribers.push(d.clone());
        }
        for id in gone {
            if cur.gone.len() == MAX_REPORT || bytes + id.len() + 4 > REPORT_BYTES {
                out.push(std::mem::take(&mut cur));
                bytes = 0;
            }
            bytes += id.len() + 4;
            cur.gone.push(id);
        }
        if !cur.subscribers.is_empty() || !cur.gone.is_empty() {
            out.push(cur);
        }
        *last = now;
        out
    }
}
