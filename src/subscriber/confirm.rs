//! Lite mode's confirmations. A Bloom filter hit means "possibly revoked"; the subscriber asks a
//! node of the cluster, which answers `Check` from its exact state, and answers with that. The
//! node followed now is asked first, then the others in turn, all within one deadline; a reply
//! counts only if the node can vouch for its state and has applied at least every change the
//! local filter has (its version is no older than the local last change). Confirmations are
//! kept in a small cache keyed by the token's facts, each used only while the local filter has
//! applied no change past the version the node answered at: a later revocation (or lift) always
//! reaches the node again. Only hits come here; a miss never leaves the process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use recall_core::{TokenFacts, Verdict};
use recall_filter::Checked;
use tokio::time::Instant;
use tonic::transport::Channel;

use super::Source;
use crate::proto as pb;
use crate::proto::check_client::CheckClient;
use crate::transport::{Dialer, Expect, Security};

/// The largest reply taken from a node (its matches echo the token's namespaces).
const MAX_REPLY_BYTES: usize = 1 << 20;

/// Facts longer than this (encoded) are confirmed but not cached.
const MAX_KEY_BYTES: usize = 4096;

/// The shortest time one node is given, so one slow node cannot leave the next none.
const MIN_ATTEMPT: Duration = Duration::from_millis(50);

/// How a lite subscriber confirms hits.
#[derive(Clone, Copy, Debug)]
pub struct ConfirmConfig {
    /// How long one confirmation may take, every node tried included; past it the answer stays
    /// possibly revoked.
    pub timeout: Duration,
    /// How many confirmations are cached (0: none).
    pub cache_entries: usize,
}

impl Default for ConfirmConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(500),
            cache_entries: 1024,
        }
    }
}

/// Confirmations counted, for metrics.
#[derive(Debug, Default)]
pub struct ConfirmCounts {
    /// Hits a node confirmed revoked.
    pub revoked: AtomicU64,
    /// Hits a node said were not revoked (Bloom false positives, or lifted since).
    pub not_revoked: AtomicU64,
    /// Hits answered from the cache.
    pub cached: AtomicU64,
    /// Hits no node confirmed in time.
    pub unreachable: AtomicU64,
}

/// A node's answer, remembered.
struct Cached {
    verdict: Verdict,
    /// The node's version when it answered.
    version: u64,
}

/// Confirmations by the token's facts, at most `capacity` of them.
struct Cache {
    map: Mutex<HashMap<Vec<u8>, Cached>>,
    capacity: usize,
}

/// Asks the cluster about lite-mode hits.
pub struct Confirmer {
    nodes: Vec<(String, CheckClient<Channel>)>,
    config: ConfirmConfig,
    cache: Cache,
    /// What the confirmations came to.
    pub counts: ConfirmCounts,
}

impl Confirmer {
    /// A confirmer that asks `cluster` (connecting on first use) as `security`.
    pub fn new(
        cluster: &[String],
        security: Security,
        config: ConfirmConfig,
    ) -> anyhow::Result<Self> {
        let attempt = (config.timeout / cluster.len().max(1) as u32).max(MIN_ATTEMPT);
        let dialer = Dialer::new(security).with_connect_timeout(attempt);
        let nodes = cluster
            .iter()
            .map(|addr| {
                let channel = dialer.lazy(addr, Expect::AnyNode)?;
                let client = CheckClient::new(channel).max_decoding_message_size(MAX_REPLY_BYTES);
                Ok((addr.clone(), client))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            nodes,
            config,
            cache: Cache::new(config.cache_entries),
            counts: ConfirmCounts::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> ConfirmConfig {
        self.config
    }

    /// What the cluster says of the token `facts` describe, which the local filter answered
    /// `local` (a lite-mode hit): a node's exact verdict (or a cached one) with the version it
    /// holds for, or `local` itself when no node confirmed it before `deadline`. `first` is the
    /// node to ask first (the one followed now).
    pub async fn confirm(
        &self,
        facts: &TokenFacts<'_>,
        local: Checked,
        first: Option<&str>,
        deadline: Instant,
    ) -> (Checked, Source) {
        let key = cache_key(facts);
        if let Some(hit) = self.cache.get(key.as_deref(), local.last_change) {
            self.counts.cached.fetch_add(1, Ordering::Relaxed);
            let checked = Checked {
                verdict: hit.0,
                version: hit.1,
                last_change: local.last_change,
            };
            return (checked, Source::ConfirmedCached);
        }
        let request = pb::CheckRequest {
            facts: Some(crate::wire::facts_to_wire(facts)),
        };
        let order = self
            .nodes
            .iter()
            .filter(|(a, _)| Some(a.as_str()) == first)
            .chain(self.nodes.iter().filter(|(a, _)| Some(a.as_str()) != first));
        let attempt = (self.config.timeout / self.nodes.len().max(1) as u32).max(MIN_ATTEMPT);
        for (addr, client) in order {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let until = deadline.min(now + attempt);
            let reply = tokio::time::timeout_at(until, client.clone().check(request.clone())).await;
            let reply = match reply {
                Ok(Ok(r)) => r.into_inner(),
                Ok(Err(status)) => {
                    tracing::debug!(node = %addr, error = %crate::transport::errors::describe(&status),
                        "a node could not confirm a lite-mode hit");
                    continue;
                }
                Err(_) => {
                    tracing::debug!(node = %addr, "a node did not confirm a lite-mode hit in time");
                    continue;
                }
            };
            if reply.stale || reply.version < local.last_change {
                tracing::debug!(node = %addr, version = reply.version, stale = reply.stale,
                    local = local.last_change, "a node's confirmation is older than the local state");
                continue;
            }
            let verdict = match crate::wire::verdict_from_wire(&reply, facts) {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(node = %addr, error = %e, "a node's confirmation is malformed");
                    continue;
                }
            };
            let counter = if verdict.matches.is_empty() {
                &self.counts.not_revoked
            } else {
                &self.counts.revoked
            };
            counter.fetch_add(1, Ordering::Relaxed);
            if let Some(key) = key {
                self.cache.put(key, &verdict, reply.version);
            }
            let checked = Checked {
                verdict,
                version: reply.version,
                last_change: local.last_change,
            };
            return (checked, Source::ConfirmedByCluster);
        }
        self.counts.unreachable.fetch_add(1, Ordering::Relaxed);
        (local, Source::ClusterUnreachable)
    }
}

impl Cache {
    fn new(capacity: usize) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// A cached confirmation still good for a local state whose last change is `last_change`.
    fn get(&self, key: Option<&[u8]>, last_change: u64) -> Option<(Verdict, u64)> {
        let key = key?;
        let mut cache = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let hit = cache.get(key)?;
        if hit.version >= last_change {
            return Some((hit.verdict.clone(), hit.version));
        }
        cache.remove(key);
        None
    }

    fn put(&self, key: Vec<u8>, verdict: &Verdict, version: u64) {
        if self.capacity == 0 {
            return;
        }
        let mut cache = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= self.capacity && !cache.contains_key(&key) {
            // Full: the oldest confirmations are the first to be outdated by a change, so
            // dropping the one that confirms the oldest version loses the least.
            if let Some(oldest) = cache
                .iter()
                .min_by_key(|(_, c)| c.version)
                .map(|(k, _)| k.clone())
            {
                cache.remove(&oldest);
            }
        }
        let verdict = verdict.clone();
        cache.insert(key, Cached { verdict, version });
    }
}

/// The facts as a cache key: every field with its length, so no two sets of facts share one;
/// `None` when they are too long to be worth keeping.
fn cache_key(f: &TokenFacts<'_>) -> Option<Vec<u8>> {
    let fields = [
        Some(f.iss),
        f.tenant,
        f.jti,
        f.sid,
        f.sub,
        f.client,
        f.kid,
        f.api_key,
    ];
    let len: usize = fields.iter().map(|v| v.map_or(1, |s| s.len() + 9)).sum();
    if len > MAX_KEY_BYTES {
        return None;
    }
    let mut key = Vec::with_capacity(len + 9);
    for v in fields {
        match v {
            None => key.push(0),
            Some(s) => {
                key.push(1);
                key.extend_from_slice(&(s.len() as u64).to_le_bytes());
                key.extend_from_slice(s.as_bytes());
            }
        }
    }
    match f.iat {
        None => key.push(0),
        Some(iat) => {
            key.push(1);
            key.extend_from_slice(&iat.to_le_bytes());
        }
    }
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_that_differ_never_share_a_key() {
        let a = TokenFacts {
            iss: "i",
            jti: Some("ab"),
            ..Default::default()
        };
        let b = TokenFacts {
            iss: "i",
            sid: Some("ab"),
            ..Default::default()
        };
        let c = TokenFacts {
            iss: "i",
            jti: Some("ab"),
            iat: Some(1),
            ..Default::default()
        };
        let keys = [cache_key(&a), cache_key(&b), cache_key(&c)];
        assert!(keys[0] != keys[1] && keys[0] != keys[2] && keys[1] != keys[2]);
        let long = "x".repeat(MAX_KEY_BYTES);
        assert_eq!(
            cache_key(&TokenFacts {
                iss: &long,
                ..Default::default()
            }),
            None
        );
    }

    /// A cached "not revoked" holds only while the local filter has applied no change past the
    /// version the node answered at; the cache never holds more than its bound.
    #[test]
    fn a_cached_confirmation_is_dropped_once_the_local_state_moves_past_it() {
        let c = Cache::new(2);
        c.put(b"a".to_vec(), &Verdict::default(), 10);
        assert!(c.get(Some(b"a"), 10).is_some());
        assert!(c.get(Some(b"a"), 11).is_none(), "a change after 10");
        assert!(c.get(Some(b"a"), 10).is_none(), "and it is gone");
        for (i, k) in [b"x", b"y", b"z"].into_iter().enumerate() {
            c.put(k.to_vec(), &Verdict::default(), 20 + i as u64);
        }
        let cache = c.map.lock().unwrap();
        assert_eq!(cache.len(), 2);
        assert!(!cache.contains_key(&b"x"[..]), "the oldest went first");
    }
}
