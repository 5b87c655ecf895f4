//! Verifications remembered: a proxy presents the same token on every request of a session, and
//! a signature check costs tens of microseconds. A hit is the exact token string (compared
//! whole, never by hash alone), made with a key set that is still current, before the token's
//! `exp` plus leeway. The revocation check is never cached: it runs on every request.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};

use super::verify::Verified;

/// Shards, so concurrent checks rarely share a lock.
const SHARDS: usize = 16;

struct Entry {
    verified: Arc<Verified>,
    /// The key set generation the signature was checked with.
    generation: u64,
    /// The last second (unix) the verification holds: `exp` plus the leeway, minus one.
    until: i64,
}

/// A bounded map from token to its verification.
pub struct VerifiedCache {
    shards: Vec<Mutex<HashMap<Box<str>, Entry>>>,
    hasher: RandomState,
    per_shard: usize,
}

impl VerifiedCache {
    /// A cache of at most `capacity` tokens (0: nothing is cached).
    pub fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            per_shard: capacity.div_ceil(SHARDS),
        }
    }

    fn shard(&self, token: &str) -> &Mutex<HashMap<Box<str>, Entry>> {
        &self.shards[(self.hasher.hash_one(token) as usize) % SHARDS]
    }

    /// The verification of `token`, if one is remembered that still holds at `now` and was made
    /// with the key set `generation_of(iss)` still names.
    pub fn get(
        &self,
        token: &str,
        now: i64,
        generation_of: impl FnOnce(&str) -> Option<u64>,
    ) -> Option<Arc<Verified>> {
        if self.per_shard == 0 {
            return None;
        }
        let mut shard = self.shard(token).lock().unwrap_or_else(|e| e.into_inner());
        let e = shard.get(token)?;
        if now <= e.until && generation_of(&e.verified.iss) == Some(e.generation) {
            return Some(e.verified.clone());
        }
        shard.remove(token);
        None
    }

    /// Remembers a verification made with key set `generation`, valid until `until`.
    pub fn insert(&self, token: &str, verified: Arc<Verified>, generation: u64, until: i64) {
        if self.per_shard == 0 {
            return;
        }
        let mut shard = self.shard(token).lock().unwrap_or_else(|e| e.into_inner());
        if shard.len() >= self.per_shard
            && let Some(evict) = shard.keys().next().cloned()
        {
            shard.remove(&evict);
        }
        shard.insert(
            token.into(),
            Entry {
                verified,
                generation,
                until,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified() -> Arc<Verified> {
        Arc::new(
            Verified::from_claims(
                serde_json::from_str(r#"{"iss": "i", "sub": "s"}"#).unwrap(),
                None,
            )
            .unwrap(),
        )
    }

    #[test]
    fn a_hit_needs_the_same_token_the_same_keys_and_time_left() {
        let c = VerifiedCache::new(64);
        c.insert("a.b.c", verified(), 7, 100);
        assert!(c.get("a.b.c", 100, |_| Some(7)).is_some());
        assert!(c.get("a.b.d", 100, |_| Some(7)).is_none(), "another token");
        assert!(
            c.get("a.b.c", 100, |_| Some(8)).is_none(),
            "the keys changed"
        );
        c.insert("a.b.c", verified(), 7, 100);
        assert!(
            c.get("a.b.c", 101, |_| Some(7)).is_none(),
            "past exp + leeway"
        );
        assert!(
            c.get("a.b.c", 50, |_| Some(7)).is_none(),
            "a miss drops the entry"
        );
    }

    #[test]
    fn the_cache_stays_bounded_and_can_be_off() {
        let c = VerifiedCache::new(32);
        for i in 0..1000 {
            c.insert(&format!("t{i}"), verified(), 1, 10);
        }
        let held: usize = c.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(held <= 32, "{held}");
        let off = VerifiedCache::new(0);
        off.insert("t", verified(), 1, 10);
        assert!(off.get("t", 0, |_| Some(1)).is_none());
    }
}
