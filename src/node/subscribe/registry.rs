//! The subscribers a node serves and the versions they have applied: what convergence is
//! computed from, and how long each change took to land at them ([`Waves`]). A newer stream with
//! the same id replaces the older one. A relay's stream also reports the subscribers behind it;
//! they count like the node's own, attached through the relay, until it reports them gone or its
//! stream ends, and never replace a subscriber attached directly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use recall_core::{Digest, Timestamp};
use recall_stream::Report;
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
    /// When it last acked (node clock; behind a relay: when the relay reported it).
    pub last_ack: Timestamp,
    /// The relays between this node and it, nearest first, joined by " > "; empty when it is
    /// attached to this node directly.
    pub via: String,
}

struct Entry {
    /// The stream it is attached by: its own, or the relay's that reported it.
    stream: u64,
    info: SubscriberInfo,
    /// Turned true to end the stream (replaced by a newer one); `None` behind a relay.
    replaced: Option<watch::Sender<bool>>,
}

impl Entry {
    fn relayed(&self) -> bool {
        self.replaced.is_none()
    }
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

/// A relay reports more subscribers behind it than the node counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "this node counts at most {max} subscribers behind relays; attach some relays to other \
     nodes, or raise the node's limit"
)]
pub struct TooManyRelayed {
    /// The limit.
    pub max: usize,
}

#[derive(Default)]
struct Inner {
    next: u64,
    map: HashMap<String, Entry>,
    /// How many entries of `map` are behind relays.
    relayed: usize,
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
        let Inner {
            next,
            map,
            waves,
            relayed,
        } = &mut *guard;
        let direct = map.len() - *relayed;
        if map.get(id).is_none_or(|e| e.relayed()) && direct >= max {
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
                via: String::new(),
            },
            replaced: Some(tx),
        };
        waves.joined(0);
        if let Some(old) = map.insert(id.to_string(), entry) {
            match &old.replaced {
                Some(tx) => drop(tx.send(true)),
                None => *relayed -= 1,
            }
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

impl Registration {
    /// Records what a relay on this stream reported of the subscribers behind it (at `now`,
    /// node clock). Refused, changing nothing, when it would take the node past `max`
    /// subscribers behind relays.
    pub fn report(&self, r: &Report, now: Timestamp, max: usize) -> Result<(), TooManyRelayed> {
        let mut guard = self.registry.inner.lock().expect("registry lock");
        let Inner {
            map,
            waves,
            relayed,
            ..
        } = &mut *guard;
        let new = r
            .subscribers
            .iter()
            .filter(|d| !map.contains_key(&d.id))
            .count();
        if *relayed + new > max {
            return Err(TooManyRelayed { max });
        }
        for id in &r.gone {
            if map
                .get(id)
                .is_some_and(|e| e.relayed() && e.stream == self.stream)
                && let Some(gone) = map.remove(id)
            {
                *relayed -= 1;
                waves.left(gone.info.applied, &|| Inner::applied(map));
            }
        }
        for d in &r.subscribers {
            let via = if d.via.is_empty() {
                self.id.clone()
            } else {
                format!("{} > {}", self.id, d.via)
            };
            let info = SubscriberInfo {
                id: d.id.clone(),
                mode: d.mode.clone(),
                applied: d.applied,
                digest: Digest::default(),
                last_ack: now,
                via,
            };
            match map.get_mut(&d.id) {
                // Attached here directly: what this node sees itself wins.
                Some(e) if !e.relayed() => {}
                Some(e) => {
                    let old = e.info.applied;
                    e.stream = self.stream;
                    e.info = info;
                    if d.applied >= old {
                        waves.acked(old, d.applied, &|| Inner::applied(map));
                    } else {
                        // Moved to another relay and not caught up there yet.
                        waves.left(old, &|| Inner::applied(map));
                        waves.joined(d.applied);
                    }
                }
                None => {
                    map.insert(
                        d.id.clone(),
                        Entry {
                            stream: self.stream,
                            info,
                            replaced: None,
                        },
                    );
                    *relayed += 1;
                    waves.joined(d.applied);
                }
            }
        }
        Ok(())
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut guard = self.registry.inner.lock().expect("registry lock");
        let Inner {
            map,
            waves,
            relayed,
            ..
        } = &mut *guard;
        // This stream's own entry, and every subscriber its relay reported.
        let gone: Vec<String> = map
            .iter()
            .filter(|(id, e)| e.stream == self.stream && (e.relayed() || **id == self.id))
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            if let Some(e) = map.remove(&id) {
                if e.relayed() {
                    *relayed -= 1;
                }
                waves.left(e.info.applied, &|| Inner::applied(map));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use recall_stream::Downstream;

    use super::*;

    fn behind(id: &str, applied: u64, via: &str) -> Downstream {
        Downstream {
            id: id.into(),
            mode: "full".into(),
            applied,
            via: via.into(),
        }
    }

    fn report(subscribers: Vec<Downstream>, gone: &[&str]) -> Report {
        Report {
            subscribers,
            gone: gone.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn paths(r: &Registry) -> Vec<(String, u64, String)> {
        r.list()
            .into_iter()
            .map(|s| (s.id, s.applied, s.via))
            .collect()
    }

    #[test]
    fn a_relay_reports_the_subscribers_behind_it_until_they_go_or_its_stream_ends() {
        let r = Arc::new(Registry::default());
        let now = Timestamp::from_millis(1);
        let relay = r.register("edge", "relay", now, 10).unwrap();
        relay
            .report(
                &report(vec![behind("a", 3, ""), behind("b", 2, "edge-2")], &[]),
                now,
                10,
            )
            .unwrap();
        assert_eq!(
            paths(&r),
            [
                ("a".into(), 3, "edge".into()),
                ("b".into(), 2, "edge > edge-2".into()),
                ("edge".into(), 0, "".into()),
            ]
        );
        relay
            .report(&report(vec![behind("b", 5, "edge-2")], &["a"]), now, 10)
            .unwrap();
        assert_eq!(r.len(), 2);
        drop(relay);
        assert!(r.is_empty(), "its stream ended: {:?}", paths(&r));
    }

    #[test]
    fn a_direct_stream_wins_over_a_relays_report_and_relayed_ones_have_their_own_bound() {
        let r = Arc::new(Registry::default());
        let now = Timestamp::from_millis(1);
        let relay = r.register("edge", "relay", now, 2).unwrap();
        let direct = r.register("a", "full", now, 2).unwrap();
        direct.ack(7, Digest(1), now);
        // The relay still reports `a` (it just moved): the node's own view stands, and the
        // relay's later "gone" does not remove it.
        relay
            .report(&report(vec![behind("a", 1, "")], &[]), now, 2)
            .unwrap();
        relay.report(&report(vec![], &["a"]), now, 2).unwrap();
        assert_eq!(paths(&r)[0], ("a".into(), 7, "".into()));
        // Relayed subscribers do not take the direct streams' places, and have their own bound.
        relay
            .report(
                &report(vec![behind("x", 1, ""), behind("y", 1, "")], &[]),
                now,
                2,
            )
            .unwrap();
        assert_eq!(
            relay.report(&report(vec![behind("z", 1, "")], &[]), now, 2),
            Err(TooManyRelayed { max: 2 })
        );
        assert_eq!(r.len(), 4, "a refused report changes nothing");
        // A subscriber that moves from behind the relay to the node directly replaces it.
        assert!(
            r.register("x", "full", now, 2).is_err(),
            "edge and a fill the bound"
        );
        let x = r.register("x", "full", now, 3);
        assert!(x.is_ok(), "relayed entries do not count against it");
        assert_eq!(r.len(), 4);
        drop(relay);
        assert_eq!(
            r.list().iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
            ["a", "x"]
        );
    }
}
