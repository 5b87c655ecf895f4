//! Subscribers attached to followers see the same state as the leader's; when the leader dies,
//! the streams of subscribers attached to surviving nodes keep working, and writes through the
//! new leader reach them.

use std::collections::BTreeMap;
use std::time::Duration;

use recall::node::{RunningNode, clock};

use crate::fixture::{
    admin_client, fast_config, listeners, node_security, revoke, subscribe, subscriber_security,
    token,
};

struct Three {
    nodes: Vec<Option<RunningNode>>,
    addrs: Vec<String>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Three {
    async fn start() -> Self {
        let mut bound = Vec::new();
        let mut addrs = Vec::new();
        let mut peers = Vec::new();
        for _ in 0..3 {
            let l = listeners().await;
            addrs.push(l.client.local_addr().unwrap().to_string());
            peers.push(l.peer.local_addr().unwrap().to_string());
            bound.push(l);
        }
        let members: BTreeMap<u64, String> = peers
            .iter()
            .enumerate()
            .map(|(i, a)| (i as u64 + 1, a.clone()))
            .collect();
        let mut nodes = Vec::new();
        let mut dirs = Vec::new();
        for (i, l) in bound.into_iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            let mut c = fast_config(dir.path(), &peers[i]);
            c.id = i as u64 + 1;
            c.initial_members = members.clone();
            let node = RunningNode::start(c, l, node_security(i as u64 + 1), clock::system());
            nodes.push(Some(node.await.unwrap()));
            dirs.push(dir);
        }
        let me = Self {
            nodes,
            addrs,
            _dirs: dirs,
        };
        me.wait(|n| n.sm.seeded()).await;
        me
    }

    async fn wait(&self, f: impl Fn(&RunningNode) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while !self.nodes.iter().flatten().all(&f) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "cluster condition not reached"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn leader(&self) -> usize {
        let n = self.nodes.iter().flatten().next().unwrap();
        n.raft.metrics().borrow().current_leader.unwrap() as usize - 1
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_serve_the_same_state_and_survive_leader_failover() {
    let mut c = Three::start().await;
    let leader = c.leader();
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let mut subs = Vec::new();
    for &i in &followers {
        let id = format!("svc-{i}");
        let mut cfg = recall::subscriber::SubscriberConfig::new(
            vec![c.addrs[i].clone()],
            id.clone(),
            subscriber_security(&id),
        );
        cfg.backoff_min = Duration::from_millis(20);
        subs.push(subscribe(cfg).await);
    }
    let mut client = admin_client(&c.addrs[leader]).await;
    let v = revoke(
        &mut client,
        (0..500)
            .map(|i| token("https://iss", &format!("f{i}")))
            .collect(),
    )
    .await;
    for s in &subs {
        s.wait_version(v, Duration::from_secs(10)).await.unwrap();
    }
    let digest = c.nodes[leader].as_ref().unwrap().sm.applied().digest;
    assert!(subs.iter().all(|s| s.status().digest == digest));

    // The leader dies; the followers elect a new one and keep streaming.
    c.nodes[leader].take().unwrap().shutdown().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let new_leader = loop {
        let m = c.nodes[followers[0]]
            .as_ref()
            .unwrap()
            .raft
            .metrics()
            .borrow()
            .clone();
        if let Some(l) = m.current_leader.filter(|&l| l as usize - 1 != leader) {
            break l as usize - 1;
        }
        assert!(tokio::time::Instant::now() < deadline, "no new leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut client = admin_client(&c.addrs[new_leader]).await;
    let v = revoke(&mut client, vec![token("https://iss", "after-failover")]).await;
    for s in &subs {
        s.wait_version(v, Duration::from_secs(10)).await.unwrap();
        let a = s.check_key(recall_core::Kind::Token, "https://iss", "after-failover");
        assert!(a.revoked && !a.stale, "{a:?}");
        assert_eq!(
            s.status().connects,
            1,
            "the stream to a surviving node must not have broken"
        );
    }
    for s in subs {
        s.shutdown().await;
    }
}
