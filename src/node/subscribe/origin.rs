//! Where the streams' state comes from: [`Origin`] is what a session reads and waits on, so one
//! driver serves a node's applied state ([`NodeOrigin`]) and a relay's copy of it alike.

use std::sync::Arc;
use std::time::Duration;

use recall_core::FingerprintSeed;
use recall_stream::{Applied, Hello, Snapshot, Source, Window, Witness};
use tokio::sync::watch;
use tonic::Status;

use super::metrics::StreamMetrics;
use super::snapshots::Snapshots;
use super::witness::Witnesses;
use crate::node::contact::Contact;
use crate::node::raft::{Raft, StateMachine};

/// The state streams are served from.
pub trait Origin: Source + Clone + Send + Sync + 'static {
    /// What the change notifications carry.
    type Changes: Send + Sync + 'static;
    /// Changes whenever the applied state moves.
    fn changes(&self) -> watch::Receiver<Self::Changes>;
    /// Set, with why, when the state's history cannot be trusted: every stream ends.
    fn alarm(&self) -> watch::Receiver<Option<String>>;
    /// Why the stream that opened with `hello` cannot be served now, if it cannot.
    fn refuse(&self, hello: &Hello) -> Option<Status>;
}

/// A node's applied state, as its sessions read it.
#[derive(Clone)]
pub struct NodeOrigin {
    pub(crate) sm: StateMachine,
    pub(crate) raft: Raft,
    /// Whether the node is in touch with a leader: a node cut off from the cluster ends its
    /// streams, so its subscribers move to a node that is not behind.
    pub(crate) contact: Arc<Contact>,
    /// The snapshots sessions share.
    pub(crate) snapshots: Arc<Snapshots>,
    /// The latest witnessed checkpoint, as heartbeats carry it.
    pub(crate) witnesses: Arc<Witnesses>,
    /// How many versions the applied state may trail the commit index before heartbeats stop
    /// vouching for it.
    pub(crate) max_lag: u64,
    pub(crate) clock: crate::node::clock::Clock,
    pub(crate) metrics: Arc<StreamMetrics>,
}

impl Source for NodeOrigin {
    fn applied(&self) -> Applied {
        let a = self.sm.applied();
        Applied {
            version: a.version,
            last_change: a.last_change,
            digest: a.digest,
        }
    }

    fn seed(&self) -> FingerprintSeed {
        self.sm.with_set(|s| s.fingerprinter().seed())
    }

    fn deltas_after(&self, version: u64) -> Window {
        self.sm.deltas_after(version)
    }

    fn snapshot(&self, expiries: bool, max_bytes: usize) -> Arc<Snapshot> {
        let sm = &self.sm;
        let version = sm.applied().version;
        self.snapshots.get(version, expiries, max_bytes, || {
            self.metrics.snapshot_builds.inc();
            let (view, expiries) = sm.with_set(|s| {
                let view = s.view();
                let expiries = expiries.then(|| s.expiries(&view.fingerprints));
                (view, expiries)
            });
            Snapshot::build(&view, expiries.as_deref(), max_bytes)
        })
    }

    fn leads(&self) -> bool {
        let m = self.raft.metrics().borrow().clone();
        m.current_leader == Some(m.id)
    }

    fn out_of_touch(&self) -> Option<Duration> {
        self.contact.lost(&self.raft)
    }

    fn committed(&self) -> u64 {
        self.contact.committed()
    }

    fn doubt(&self, applied: u64) -> Option<&'static str> {
        self.contact
            .doubt(&self.raft, applied, self.max_lag)
            .map(|d| d.reason())
    }

    fn wall_ms(&self) -> i64 {
        (self.clock)().as_millis()
    }

    fn contact_age(&self) -> Duration {
        self.contact.age(&self.raft, self.sm.applied().version)
    }

    fn witness(&self) -> Option<Arc<Witness>> {
        self.witnesses.latest(&self.sm)
    }
}

impl Origin for NodeOrigin {
    type Changes = crate::node::raft::AppliedState;

    fn changes(&self) -> watch::Receiver<Self::Changes> {
        self.sm.subscribe()
    }

    fn alarm(&self) -> watch::Receiver<Option<String>> {
        self.sm.alarm()
    }

    fn refuse(&self, _hello: &Hello) -> Option<Status> {
        if let Some(why) = self.sm.alarm().borrow().clone() {
            return Some(super::alarmed(&why));
        }
        if !self.sm.seeded() {
            return Some(Status::unavailable(
                "this node has not joined a cluster with a seed yet; retry, or connect to another node",
            ));
        }
        None
    }
}
