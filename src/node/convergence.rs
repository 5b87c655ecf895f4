//! Convergence: how many live subscribers, cluster-wide, have applied a version, and which lag.
//! Each node knows the subscribers it serves; a cluster-wide view asks every member for its own
//! (the peer port's `Subscribers`) and merges them, so the operator sees the recall wave land.
//!
//! A report never rounds up: a member that does not answer is named as silent, its subscribers
//! are unknown (exactly the ones likely to lag), and the report is not "converged" while any
//! member is silent.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::peers::Peers;
use super::subscribe::{Registry, SubscriberInfo};
use crate::proto as pb;

/// One subscriber as seen from the cluster.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Which node serves it.
    pub node: u64,
    /// What that node knows.
    pub info: SubscriberInfo,
}

/// What the members reported.
#[derive(Clone, Debug, Default)]
pub struct Gathered {
    /// The subscribers of the members that answered (this node's included).
    pub subs: Vec<Seen>,
    /// The members that did not answer in time, by id: their subscribers are unknown.
    pub silent: Vec<u64>,
}

impl Gathered {
    /// This node's subscribers only (nobody else was asked, so nobody is silent).
    pub fn local(subs: Vec<Seen>) -> Self {
        Self {
            subs,
            silent: Vec::new(),
        }
    }
}

/// Gathers subscribers from every member.
pub struct Convergence {
    peers: Arc<Peers>,
    registry: Arc<Registry>,
}

impl Convergence {
    /// Convergence over the members `peers` reaches, this node's subscribers in `registry`.
    pub fn new(peers: Arc<Peers>, registry: Arc<Registry>) -> Self {
        Self { peers, registry }
    }

    /// This node's subscribers.
    pub fn local(&self) -> Vec<Seen> {
        let me = self.peers.me();
        self.registry
            .list()
            .into_iter()
            .map(|info| Seen { node: me, info })
            .collect()
    }

    /// Every member's subscribers, and the members that did not answer in time (whose
    /// subscribers are therefore unknown).
    pub async fn cluster(&self) -> Gathered {
        let mut all = self.local();
        let answers = self
            .peers
            .ask_all(|mut c| async move {
                Ok(c.subscribers(pb::SubscribersRequest {}).await?.into_inner())
            })
            .await;
        for (_, reply) in answers.answered {
            all.extend(reply.subscribers.into_iter().map(|l| Seen {
                node: reply.node_id,
                info: SubscriberInfo {
                    id: l.subscriber_id,
                    mode: String::new(),
                    applied: l.applied_version,
                    digest: recall_core::Digest::default(),
                    last_ack: recall_core::Timestamp::from_millis(l.last_ack_ms),
                    via: l.via,
                },
            }));
        }
        // A subscriber that just moved between nodes may show twice: keep its latest ack.
        let mut by_id: HashMap<String, Seen> = HashMap::new();
        for s in all {
            match by_id.get(&s.info.id) {
                Some(old) if old.info.last_ack >= s.info.last_ack => {}
                _ => {
                    by_id.insert(s.info.id.clone(), s);
                }
            }
        }
        let mut subs: Vec<Seen> = by_id.into_values().collect();
        subs.sort_by(|a, b| a.info.id.cmp(&b.info.id));
        Gathered {
            subs,
            silent: answers.silent,
        }
    }
}

/// The convergence report of what was `gathered` towards `target`: converged only when every
/// member answered, every subscriber they reported has applied `target`, and at least `min`
/// subscribers did.
pub fn report(target: u64, gathered: &Gathered, started: Instant, min: u32) -> pb::Convergence {
    let subs = &gathered.subs;
    let laggards: Vec<pb::SubscriberLag> = subs
        .iter()
        .filter(|s| s.info.applied < target)
        .map(|s| pb::SubscriberLag {
            subscriber_id: s.info.id.clone(),
            node_id: s.node.to_string(),
            applied_version: s.info.applied,
            behind: target - s.info.applied,
            last_ack_ms: s.info.last_ack.as_millis(),
            via: s.info.via.clone(),
        })
        .collect();
    let applied = (subs.len() - laggards.len()) as u32;
    pb::Convergence {
        converged: laggards.is_empty() && gathered.silent.is_empty() && applied >= min,
        target_version: target,
        subscribers_total: subs.len() as u32,
        subscribers_applied: applied,
        elapsed_ms: started.elapsed().as_millis() as u64,
        laggards,
        silent_nodes: gathered.silent.clone(),
        min_subscribers: min,
    }
}

/// Waits until every member answers and every live subscriber, at least `min` of them, has
/// applied `target`, or `timeout`; the last report.
pub async fn wait(
    conv: &Convergence,
    target: u64,
    timeout: Duration,
    started: Instant,
    min: u32,
) -> pb::Convergence {
    let deadline = Instant::now() + timeout;
    loop {
        let gathered = conv.cluster().await;
        let r = report(target, &gathered, started, min);
        if r.converged || Instant::now() >= deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(id: &str, applied: u64) -> Seen {
        Seen {
            node: 1,
            info: SubscriberInfo {
                id: id.into(),
                mode: "full".into(),
                applied,
                digest: recall_core::Digest::default(),
                last_ack: recall_core::Timestamp::from_millis(0),
                via: String::new(),
            },
        }
    }

    #[test]
    fn a_report_is_converged_only_with_every_member_every_subscriber_and_the_minimum() {
        let started = Instant::now();
        let all = Gathered::local(vec![seen("a", 5), seen("b", 7)]);
        assert!(report(5, &all, started, 0).converged);
        assert!(report(5, &all, started, 2).converged);
        // A third subscriber the operator knows of is between streams: no node reports it.
        let r = report(5, &all, started, 3);
        assert!(!r.converged && r.laggards.is_empty(), "{r:?}");
        assert_eq!((r.subscribers_applied, r.min_subscribers), (2, 3));
        assert!(!report(6, &all, started, 0).converged, "a laggard");
        let silent = Gathered {
            subs: all.subs.clone(),
            silent: vec![3],
        };
        assert!(!report(5, &silent, started, 0).converged, "a silent member");
        assert!(!report(5, &Gathered::local(vec![]), started, 1).converged);
        assert!(report(5, &Gathered::local(vec![]), started, 0).converged);
    }
}
