//! The latest witnessed checkpoint, as heartbeats carry it to subscribers: built once per
//! checkpoint and shared by every session.

use std::sync::{Arc, Mutex};

use recall_stream::Witness;

use crate::node::raft::StateMachine;

/// The stream form of the last checkpoint sessions asked for.
#[derive(Default)]
pub struct Witnesses {
    last: Mutex<Option<Arc<Witness>>>,
}

impl Witnesses {
    /// The latest checkpoint a quorum signed in `sm`, if any.
    pub fn latest(&self, sm: &StateMachine) -> Option<Arc<Witness>> {
        sm.with_witnesses(|w| {
            let w = w.witnessed.as_ref()?;
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(l) = last.as_ref().filter(|l| l.version == w.version) {
                return Some(Arc::clone(l));
            }
            let built = Arc::new(w.to_stream());
            *last = Some(Arc::clone(&built));
            Some(built)
        })
    }
}
