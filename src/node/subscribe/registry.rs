//! The subscribers a node serves and the versions they have applied: what convergence is
//! computed from, and how long each change took to land at them ([`Waves`]). A newer stream with
//! the same id replaces the older one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use recall_core::{Digest, Timestamp};
use tokio::sync::watch;

use super::waves::{Landed, Waves};

/// What a node knows of one live subscriber.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriberInfo {
    /// The subscriber's id.
    pub id: String,
    /// "full" or "lite", as it said.
    pub mode: String,
    /// The version it last acked.
    pub applied: u64,
    /// The digest it last acked.
    pub digest: Digest,
    /// When it last acked (node clock).
    pub last_ack: Timestamp,
}

struct Entry {
    stream: u64,
    info: SubscriberInfo,
    /// Turned true to end the stream (replaced by a newer one).
    replaced: watch::Sender<bool>,
}

/// A node already serves as many subscribers as it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this node already serves {max} subscribers; connect to another node")]
pub struct Full {
    /// The limit.
    pub max: usize,
}

/// The live subscribers of one node.
#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next: u64,
    map: HashMap<String, Entry>,
    waves: Waves,
}

impl Inner {
    fn applied(map: &HashMap<String, Entry>) -> Vec<u64> {
        map.values().map(|e| e.info.applied).collect()
    }
}

/// A registration; dropping it removes the subscriber (if it was not replaced meanwhile).
pub struct Registration {
    registry: Arc<Registry>,
    id: String,
    stream: u64,
    /// Turns true when a newer stream with the same id replaced this one.
    pub replaced: watch::Receiver<bool>,
}

impl Registry {
    /// Registers a stream for `id`, replacing (and ending) an older stream with the same id.
    /// A new id is refused when `max` subscribers are live already: the check and the insert
    /// happen under one lock, so concurrent streams cannot overshoot it.
    pub fn register(
        self: &Arc<Self>,
        id: &str,
        mode: &str,
        now: Timestamp,
        max: usize,
    ) -> Result<Registration, Full> {
        let mut guard = self.inner.lock().expect("registry lock");
        let Inner { next, map, waves } = &mut *guard;
        if !map.contains_key(id) && map.len() >= max {
            return Err(Full { max });
        }
        *next += 1;
        let stream = *next;
        let (tx, rx) = watch::channel(false);
        let entry = Entry {
            stream,
            info: SubscriberInfo {
                id: id.to_string(),
                mode: mode.to_string(),
                applied: 0,
                digest: Digest::default(),
                last_ack: now,
            },
            replaced: tx,
        };
        waves.joined(0);
        if let Some(old) = map.insert(id.to_string(), entry) {
            let _ = old.replaced.send(true);
            waves.left(old.info.applied, &|| Inner::applied(map));
        }
        Ok(Registration {
            registry: Arc::clone(self),
            id: id.to_string(),
            stream,
            replaced: rx,
        })
    }

    /// The live subscribers.
    pub fn list(&self) -> Vec<SubscriberInfo> {
        let guard = self.inner.lock().expect("registry lock");
        let mut out: Vec<SubscriberInfo> = guard.map.values().map(|e| e.info.clone()).collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// How many subscribers are live.
    pub fn len(&self) -> usize {
        self.inner.lock().expect("registry lock").map.len()
    }

    /// Whether no subscriber is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// This node applied a change at `version` (at `now`, node clock): a wave starts landing.
    pub fn changed(&self, version: u64, now: Timestamp) {
        let mut guard = self.inner.lock().expect("registry lock");
        let Inner { map, waves, .. } = &mut *guard;
        waves.changed(version, now, &|| Inner::applied(map));
    }

    /// The most recent waves that landed at every live subscriber, oldest first.
    pub fn landed(&self) -> Vec<Landed> {
        self.inner.lock().expect("registry lock").waves.recent()
    }

    /// The histogram of landed waves, for the node's metrics.
    pub fn wave_histogram(&self) -> prometheus::Histogram {
        self.inner.lock().expect("registry lock").waves.histogram()
    }

    /// Waves still landing, and waves given up because too many were waiting.
    pub fn waves_waiting(&self) -> (usize, u64) {
        let guard = self.inner.lock().expect("registry lock");
        (guard.waves.pending(), guard.waves.abandoned())
    }
}

impl Registration {
    /// Records an ack.
    pub fn ack(&self, applied: u64, digest: Digest, now: Timestamp) {
        let mut guard = self.registry.inner.lock().expect("registry lock");
        let Inner { map, waves, .. } = &mut *guard;
        if let Some(e) = map.get_mut(&self.id).filter(|e| e.stream == self.stream) {
            let old = e.info.applied;
            e.info.applied = old.max(applied);
            e.info.digest = digest;
            e.info.last_ack = now;
            let new = e.info.applied;
            waves.acked(old, new, &|| Inner::applied(map));
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut guard = self.registry.inner.lock().expect("registry lock");
        let Inner { map, waves, .. } = &mut *guard;
        if map.get(&self.id).is_some_and(|e| e.stream == self.stream)
            && let Some(gone) = map.remove(&self.id)
        {
            waves.left(gone.info.applied, &|| Inner::applied(map));
        }
    }
}
