//! The other members, asked something on the peer port: one client per member, kept, and every
//! member asked at once within [`PEER_TIMEOUT`]. A member that does not answer in time is named
//! as silent, never left out quietly: the cluster-wide views built on this (convergence,
//! sightings) say whose part is missing.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tonic::transport::Channel;

use super::raft::Raft;
use crate::proto::raft_internal_client::RaftInternalClient;
use crate::transport::PeerDialer;

/// How long a member may take to answer.
pub const PEER_TIMEOUT: Duration = Duration::from_millis(500);

/// Clients of the other members of `raft`'s membership.
pub struct Peers {
    raft: Raft,
    dialer: PeerDialer,
    clients: Mutex<HashMap<(u64, String), RaftInternalClient<Channel>>>,
}

/// What the members answered.
#[derive(Debug)]
pub struct Answers<T> {
    /// Each answer, with the id of the member that gave it.
    pub answered: Vec<(u64, T)>,
    /// The members that did not answer in time (or refused), by id, in order.
    pub silent: Vec<u64>,
}

impl Peers {
    /// Peers of `raft`, dialled with `dialer`.
    pub fn new(raft: Raft, dialer: PeerDialer) -> Self {
        Self {
            raft,
            dialer: dialer.with_connect_timeout(PEER_TIMEOUT),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// This node's id.
    pub fn me(&self) -> u64 {
        self.raft.metrics().borrow().id
    }

    /// The other members, by id and advertised address.
    fn others(&self) -> Vec<(u64, String)> {
        let m = self.raft.metrics().borrow().clone();
        m.membership_config
            .nodes()
            .filter(|(id, _)| **id != m.id)
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect()
    }

    /// The client of member `id`, which advertises `addr`.
    fn client(&self, id: u64, addr: &str) -> Option<RaftInternalClient<Channel>> {
        let mut clients = self.clients.lock().expect("peer clients lock");
        let key = (id, addr.to_owned());
        if let Some(c) = clients.get(&key) {
            return Some(c.clone());
        }
        let ch = self
            .dialer
            .lazy(id, addr)
            .inspect_err(|e| tracing::debug!(node = id, error = %e, "cannot dial a member"))
            .ok()?;
        let c = RaftInternalClient::new(ch)
            .max_decoding_message_size(super::MAX_PEER_REPLY)
            .max_encoding_message_size(super::MAX_PEER_REPLY);
        clients.insert(key, c.clone());
        Some(c)
    }

    /// Asks every other member with `ask`, all at once, each within [`PEER_TIMEOUT`].
    pub async fn ask_all<T, F, Fut>(&self, ask: F) -> Answers<T>
    where
        F: Fn(RaftInternalClient<Channel>) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let asks = self.others().into_iter().map(|(id, addr)| {
            let client = self.client(id, &addr);
            let ask = &ask;
            async move {
                let Some(client) = client else {
                    return (id, None);
                };
                match tokio::time::timeout(PEER_TIMEOUT, ask(client)).await {
                    Ok(Ok(t)) => (id, Some(t)),
                    Ok(Err(s)) => {
                        tracing::debug!(node = id, error = %s.message(), "a member refused");
                        (id, None)
                    }
                    Err(_) => (id, None),
                }
            }
        });
        let mut answers = Answers {
            answered: Vec::new(),
            silent: Vec::new(),
        };
        for (id, r) in futures::future::join_all(asks).await {
            match r {
                Some(t) => answers.answered.push((id, t)),
                None => answers.silent.push(id),
            }
        }
        answers.silent.sort_unstable();
        answers
    }
}
