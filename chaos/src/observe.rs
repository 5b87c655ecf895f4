//! Watching the recall wave land, two ways at once:
//! - **the sidecars' own reports**: each sidecar's `/v1/status` says which version it applied
//!   and when (its own clock);
//! - **the cluster's ack view**: `recall status` lists every subscriber with the version it
//!   acknowledged and when the ack arrived (the node asked gathers the other nodes' lists over
//!   their peer ports, through their peer proxies).
//!
//! Both are polled every [`POLL`] and kept as timelines of changes; once the target version is
//! known, each gives every sidecar's time to hold everything. The poll period bounds how late a
//! change is seen, not the times: those come from the reports' own timestamps.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use recall::proto as pb;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::authority::Authority;
use crate::fleet::Fleet;

/// How often each view is polled.
pub const POLL: Duration = Duration::from_millis(20);

/// A change a view saw: the version and when it happened (Unix milliseconds).
#[derive(Clone, Copy, Debug)]
pub struct Seen {
    /// The version applied (sidecar) or acknowledged (cluster).
    pub version: u64,
    /// When (the sidecar's apply time, or the node's ack receipt time).
    pub at_ms: i64,
}

type Timelines = Arc<Mutex<HashMap<String, Vec<Seen>>>>;

/// The running pollers.
pub struct Observer {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    own: Timelines,
    cluster: Timelines,
}

fn record(timelines: &Timelines, id: &str, seen: Seen) {
    let mut t = timelines.lock().expect("timelines lock");
    let line = t.entry(id.to_string()).or_default();
    if line.last().is_none_or(|last| last.version != seen.version) {
        line.push(seen);
    }
}

impl Observer {
    /// Starts polling every sidecar of `fleet` and the cluster view of `authority`.
    pub fn start(authority: Arc<Authority>, fleet: Arc<Fleet>) -> Self {
        let (stop, stopped) = watch::channel(false);
        let own: Timelines = Arc::default();
        let cluster: Timelines = Arc::default();
        let mut tasks = Vec::new();
        for i in 0..fleet.sidecars.len() {
            let (fleet, own, mut stopped) = (fleet.clone(), own.clone(), stopped.clone());
            tasks.push(tokio::spawn(async move {
                let s = &fleet.sidecars[i];
                let mut tick = tokio::time::interval(POLL);
                while !*stopped.borrow() {
                    tokio::select! {
                        _ = stopped.changed() => {}
                        _ = tick.tick() => {}
                    }
                    if let Ok(st) = s.status(&fleet.http).await {
                        let seen = Seen {
                            version: st.version,
                            at_ms: st.version_at_ms,
                        };
                        record(&own, &s.id, seen);
                    }
                }
            }));
        }
        // Every node's own subscribers, each node polled on its own: a node that cannot answer
        // (cut off, killed) delays no one else's acks, as a cluster-wide Status would (it waits
        // for its silent members, and meanwhile the acks it would report move on).
        for i in 0..authority.nodes.len() {
            let (authority, cl, mut stopped) =
                (authority.clone(), cluster.clone(), stopped.clone());
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(POLL);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                while !*stopped.borrow() {
                    tokio::select! {
                        _ = stopped.changed() => {}
                        _ = tick.tick() => {}
                    }
                    let mut c = authority.nodes[i].client.clone();
                    let req = pb::StatusRequest {
                        version: Some(u64::MAX),
                        local_only: true,
                    };
                    let Ok(Ok(reply)) =
                        tokio::time::timeout(Duration::from_secs(1), c.status(req)).await
                    else {
                        continue;
                    };
                    let conv = reply.into_inner().convergence.unwrap_or_default();
                    for l in conv.laggards {
                        let seen = Seen {
                            version: l.applied_version,
                            at_ms: l.last_ack_ms,
                        };
                        record(&cl, &l.subscriber_id, seen);
                    }
                }
            }));
        }
        Self {
            stop,
            tasks,
            own,
            cluster,
        }
    }

    /// The sidecars' own latest versions, by id.
    pub fn own_versions(&self) -> HashMap<String, u64> {
        latest(&self.own)
    }

    /// The cluster's latest acknowledged versions, by subscriber id.
    pub fn cluster_versions(&self) -> HashMap<String, u64> {
        latest(&self.cluster)
    }

    /// When sidecar `id` first held `target`, by its own report (Unix milliseconds).
    pub fn own_reached(&self, id: &str, target: u64) -> Option<i64> {
        reached(&self.own, id, target)
    }

    /// When the cluster first saw sidecar `id` acknowledge `target` (Unix milliseconds).
    pub fn cluster_reached(&self, id: &str, target: u64) -> Option<i64> {
        reached(&self.cluster, id, target)
    }

    /// Sidecar `id`'s own timeline: each version it reported and when it applied it (Unix
    /// milliseconds), in the order seen.
    pub fn own_timeline(&self, id: &str) -> Vec<Seen> {
        self.own
            .lock()
            .expect("timelines lock")
            .get(id)
            .cloned()
            .unwrap_or_default()
    }

    /// Stops the pollers (what they saw stays readable).
    pub async fn stop(&mut self) {
        let _ = self.stop.send(true);
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
    }
}

fn latest(timelines: &Timelines) -> HashMap<String, u64> {
    timelines
        .lock()
        .expect("timelines lock")
        .iter()
        .filter_map(|(id, line)| line.last().map(|s| (id.clone(), s.version)))
        .collect()
}

fn reached(timelines: &Timelines, id: &str, target: u64) -> Option<i64> {
    timelines
        .lock()
        .expect("timelines lock")
        .get(id)?
        .iter()
        .find(|s| s.version >= target)
        .map(|s| s.at_ms)
}

/// Now, in Unix milliseconds, by the clock the nodes and sidecars stamp their reports with.
pub fn now_ms() -> i64 {
    (recall::node::clock::system())().as_millis()
}
