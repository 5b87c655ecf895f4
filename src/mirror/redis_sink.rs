//! Writing the set into Redis: changes and the applied version in one MULTI/EXEC, so Redis is
//! always current as of the version it holds; a refill from a snapshot that leaves exactly the
//! snapshot's set (stale keys of an earlier fill removed); and reading back the state to resume
//! from. It never decides what to write: [`super::state`] does.

use std::collections::HashSet;
use std::time::Duration;

use recall_core::{Digest, Fingerprint, FingerprintSeed, RuleFingerprint, Timestamp};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Pipeline};

use super::layout::{Change, Layout, field, hex};
use super::state::MirrorState;
use crate::node::clock::Clock;

/// Keys written per pipeline while refilling (outside the final transaction).
const FILL_BATCH: usize = 10_000;
/// Keys asked for per SCAN step while looking for stale keys.
const SCAN_COUNT: usize = 5_000;

/// What went wrong with Redis. The URL is shown without its password.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The URL cannot be used.
    #[error(
        "--redis {url:?} is not a Redis URL ({source}); expected e.g. redis://127.0.0.1:6379/0"
    )]
    Url {
        /// The URL, without its password.
        url: String,
        /// What the redis crate said.
        source: redis::RedisError,
    },
    /// Redis did not answer, or failed a command.
    #[error("Redis at {url}: {source}")]
    Redis {
        /// The URL, without its password.
        url: String,
        /// What the redis crate said.
        source: redis::RedisError,
    },
    /// Redis's version was not the one the mirror wrote last (its data was flushed or replaced
    /// under a live connection): the mirror has invalidated it and refills.
    #[error(
        "Redis at {url} was at version {found:?}, not {expected}: its data changed under the mirror"
    )]
    Moved {
        /// The URL, without its password.
        url: String,
        /// The version the mirror wrote last.
        expected: u64,
        /// What Redis held.
        found: Option<String>,
    },
    /// The mirror's keys hold something the mirror never writes.
    #[error("Redis at {url}: {what}; remove the mirror's keys (or use another --prefix)")]
    Corrupt {
        /// The URL, without its password.
        url: String,
        /// What is wrong.
        what: String,
    },
}

/// A snapshot as received, checked, ready to fill Redis with.
#[derive(Clone, Debug, Default)]
pub struct Fill {
    /// The version it is at.
    pub version: u64,
    /// The version of its last change.
    pub last_change: u64,
    /// Its digest (checked against its contents before a fill starts).
    pub digest: Digest,
    /// The cluster's fingerprint seed.
    pub seed: FingerprintSeed,
    /// Every revoked fingerprint.
    pub fingerprints: Vec<Fingerprint>,
    /// The expiry of each fingerprint, at the same index, unix ms (0: none).
    pub expires_at_ms: Vec<i64>,
    /// Every rule.
    pub rules: Vec<RuleFingerprint>,
}

/// The Redis end of the mirror.
pub struct RedisSink {
    client: Client,
    url: String,
    conn: Option<MultiplexedConnection>,
    layout: Layout,
    grace_ms: i64,
    clock: Clock,
    config: AsyncConnectionConfig,
}

/// `url` without the password it may carry.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

impl RedisSink {
    /// A sink for the Redis at `url` (checked now; nothing is connected yet). Entry keys expire
    /// `grace` after their revocation's expiry.
    pub fn new(
        url: &str,
        layout: Layout,
        grace: Duration,
        clock: Clock,
    ) -> Result<Self, SinkError> {
        let client = Client::open(url).map_err(|source| SinkError::Url {
            url: redact(url),
            source,
        })?;
        Ok(Self {
            client,
            url: redact(url),
            conn: None,
            layout,
            grace_ms: i64::try_from(grace.as_millis()).unwrap_or(i64::MAX),
            clock,
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(2)))
                // A refill's last transaction can hold a million commands.
                .set_response_timeout(Some(Duration::from_secs(60))),
        })
    }

    /// The URL, without its password.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn err(&self, source: redis::RedisError) -> SinkError {
        SinkError::Redis {
            url: self.url.clone(),
            source,
        }
    }

    /// Connects (or reconnects) and checks that Redis answers.
    pub async fn connect(&mut self) -> Result<(), SinkError> {
        self.conn = None;
        let mut conn = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
            .map_err(|e| self.err(e))?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map_err(|e| self.err(e))?;
        self.conn = Some(conn);
        Ok(())
    }

    async fn run<T: redis::FromRedisValue>(&mut self, pipe: &Pipeline) -> Result<T, SinkError> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(self.err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "not connected",
            ))));
        };
        match pipe.query_async(conn).await {
            Ok(v) => Ok(v),
            Err(e) => {
                // The connection may be dead (Redis restarted): the next use reconnects.
                self.conn = None;
                Err(self.err(e))
            }
        }
    }

    /// What Redis holds: its version, digest, seed and rules; the default (version 0) when it
    /// holds no complete fill (never filled, lost its data, or a fill was interrupted).
    pub async fn load(&mut self) -> Result<MirrorState, SinkError> {
        let mut pipe = redis::pipe();
        pipe.hgetall(self.layout.meta())
            .hgetall(self.layout.rules());
        let (meta, rules): (
            std::collections::HashMap<String, String>,
            std::collections::HashMap<String, String>,
        ) = self.run(&pipe).await?;
        if meta.get(field::STATE).map(String::as_str) != Some("ready") {
            return Ok(MirrorState::default());
        }
        let corrupt = |what: String| SinkError::Corrupt {
            url: self.url.clone(),
            what,
        };
        let num = |name: &str| -> Result<u64, SinkError> {
            meta.get(name)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| corrupt(format!("{} has no number in {name:?}", self.layout.meta())))
        };
        let hexnum = |name: &str| -> Result<u64, SinkError> {
            meta.get(name)
                .and_then(|v| u64::from_str_radix(v, 16).ok())
                .ok_or_else(|| {
                    corrupt(format!(
                        "{} has no hex number in {name:?}",
                        self.layout.meta()
                    ))
                })
        };
        let mut state = MirrorState {
            version: num(field::VERSION)?,
            last_change: num(field::LAST_CHANGE)?,
            digest: Digest(hexnum(field::DIGEST)?),
            seed: FingerprintSeed(hexnum(field::SEED)?),
            rules: Default::default(),
        };
        for (scope, nb) in rules {
            let (Ok(scope), Ok(nb)) = (u64::from_str_radix(&scope, 16), nb.parse::<i64>()) else {
                return Err(corrupt(format!(
                    "{} holds {scope:?} = {nb:?}, not a rule",
                    self.layout.rules()
                )));
            };
            state
                .rules
                .insert(Fingerprint(scope), Timestamp::from_millis(nb));
        }
        Ok(state)
    }

    /// The command that writes one change, if it writes anything (a refill writes nothing of
    /// its own).
    fn command(&self, change: &Change, now_ms: i64) -> Option<redis::Cmd> {
        let l = &self.layout;
        let cmd = match *change {
            Change::Revoked(fp, 0) => redis::Cmd::set(l.entry(fp), 0),
            Change::Revoked(fp, ms) => {
                let until = ms.saturating_add(self.grace_ms);
                if until <= now_ms {
                    // Already past its expiry and the grace: nothing a reader could accept.
                    redis::Cmd::del(l.entry(fp))
                } else {
                    let mut set = redis::cmd("SET");
                    set.arg(l.entry(fp)).arg(ms).arg("PXAT").arg(until);
                    set
                }
            }
            Change::Lifted(fp) => redis::Cmd::del(l.entry(fp)),
            Change::RuleSet(scope, ms) => redis::Cmd::hset(l.rules(), hex(scope.0), ms),
            Change::RuleRemoved(scope) => redis::Cmd::hdel(l.rules(), hex(scope.0)),
            Change::Refill => return None,
        };
        Some(cmd)
    }

    /// Queues the commands of one change: its write and its PUBLISH.
    fn queue(&self, pipe: &mut Pipeline, version: u64, change: &Change, now_ms: i64) {
        if let Some(cmd) = self.command(change, now_ms) {
            pipe.add_command(cmd).ignore();
        }
        pipe.publish(self.layout.channel(), change.message(version))
            .ignore();
    }

    /// Queues the meta fields that say Redis is current as of `state`.
    fn queue_state(&self, pipe: &mut Pipeline, state: &MirrorState, now_ms: i64) {
        pipe.hset_multiple(
            self.layout.meta(),
            &[
                (field::VERSION, state.version.to_string()),
                (field::LAST_CHANGE, state.last_change.to_string()),
                (field::DIGEST, hex(state.digest.0)),
                (field::SEED, hex(state.seed.0)),
                (field::STATE, "ready".to_string()),
                (field::UPDATED_MS, now_ms.to_string()),
            ],
        )
        .ignore();
    }

    /// Writes the changes of consecutive deltas, each with its version, and the state after
    /// them, in one transaction: Redis holds all of it or none of it. `from` is the version
    /// Redis must be at: see [`RedisSink::commit`].
    pub async fn write(
        &mut self,
        from: u64,
        changes: &[(u64, Vec<Change>)],
        state: &MirrorState,
    ) -> Result<(), SinkError> {
        let now_ms = (self.clock)().as_millis();
        let mut pipe = redis::pipe();
        for (version, cs) in changes {
            for c in cs {
                self.queue(&mut pipe, *version, c, now_ms);
            }
        }
        self.queue_state(&mut pipe, state, now_ms);
        self.commit(from, pipe).await
    }

    /// Runs `body` as one MULTI/EXEC only if Redis is at version `from`: the meta hash is
    /// WATCHed and its version read first, so a Redis that was elsewhere (restarted from an old
    /// file, flushed under a live connection, written by another mirror) is never written over:
    /// its state is marked `filling` instead, and [`SinkError::Moved`] makes the mirror refill.
    /// The connection is this sink's alone, so the WATCH is ours.
    async fn commit(&mut self, from: u64, mut body: Pipeline) -> Result<(), SinkError> {
        let meta = self.layout.meta();
        let mut look = redis::pipe();
        look.cmd("WATCH")
            .arg(&meta)
            .ignore()
            .hget(&meta, field::VERSION);
        let (found,): (Option<String>,) = self.run(&look).await?;
        if found.as_deref() != Some(from.to_string().as_str()) {
            return self.moved(from, found).await;
        }
        let mut tx = redis::pipe();
        tx.atomic();
        for cmd in body.cmd_iter() {
            tx.add_command(cmd.clone()).ignore();
        }
        body.clear();
        tx.hget(&meta, field::VERSION);
        // EXEC answers nil when the meta hash changed after the WATCH: nothing was written.
        let done: Option<(Option<String>,)> = self.run(&tx).await?;
        match done {
            Some(_) => Ok(()),
            None => self.moved(from, None).await,
        }
    }

    /// Marks Redis's state as not ready (it was found at `found`, not `from`): readers see
    /// `filling`, and the mirror refills.
    async fn moved(&mut self, from: u64, found: Option<String>) -> Result<(), SinkError> {
        let mut pipe = redis::pipe();
        pipe.cmd("UNWATCH")
            .ignore()
            .hset(self.layout.meta(), field::STATE, "filling")
            .ignore()
            .hdel(self.layout.meta(), field::VERSION)
            .ignore();
        self.run::<()>(&pipe).await?;
        Err(SinkError::Moved {
            url: self.url.clone(),
            expected: from,
            found,
        })
    }

    /// Replaces everything with `fill`: first marks Redis as filling (a mirror that stops
    /// midway refills again), removes the entry keys the snapshot does not hold, writes the
    /// snapshot's keys, then in one transaction the rules and the state. Returns the state.
    pub async fn refill(&mut self, fill: &Fill) -> Result<MirrorState, SinkError> {
        let l = self.layout.clone();
        let now_ms = (self.clock)().as_millis();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset(l.meta(), field::STATE, "filling")
            .ignore()
            .hdel(
                l.meta(),
                &[field::VERSION, field::LAST_CHANGE, field::DIGEST],
            )
            .ignore();
        self.run::<()>(&pipe).await?;

        let keep: HashSet<Fingerprint> = fill.fingerprints.iter().copied().collect();
        let stale = self.stale_entries(&keep).await?;
        for chunk in stale.chunks(FILL_BATCH) {
            let mut pipe = redis::pipe();
            pipe.del(chunk).ignore();
            self.run::<()>(&pipe).await?;
        }
        let mut at = 0;
        while at < fill.fingerprints.len() {
            let end = (at + FILL_BATCH).min(fill.fingerprints.len());
            let mut pipe = redis::pipe();
            for i in at..end {
                let ms = fill.expires_at_ms.get(i).copied().unwrap_or(0);
                // A refill publishes one `refill`, not a message per key.
                let change = Change::Revoked(fill.fingerprints[i], ms);
                if let Some(cmd) = self.command(&change, now_ms) {
                    pipe.add_command(cmd).ignore();
                }
            }
            self.run::<()>(&pipe).await?;
            at = end;
        }

        let state = MirrorState {
            version: fill.version,
            last_change: fill.last_change,
            digest: fill.digest,
            seed: fill.seed,
            rules: fill.rules.iter().map(|r| (r.scope, r.not_before)).collect(),
        };
        let mut pipe = redis::pipe();
        pipe.atomic().del(l.rules()).ignore();
        if !fill.rules.is_empty() {
            let rules: Vec<(String, i64)> = fill
                .rules
                .iter()
                .map(|r| (hex(r.scope.0), r.not_before.as_millis()))
                .collect();
            pipe.hset_multiple(l.rules(), &rules).ignore();
        }
        self.queue_state(&mut pipe, &state, now_ms);
        pipe.hincr(l.meta(), field::REFILLS, 1).ignore();
        pipe.publish(l.channel(), Change::Refill.message(fill.version))
            .ignore();
        self.run::<()>(&pipe).await?;
        Ok(state)
    }

    /// The entry keys Redis holds whose fingerprint is not in `keep`.
    async fn stale_entries(
        &mut self,
        keep: &HashSet<Fingerprint>,
    ) -> Result<Vec<String>, SinkError> {
        let pattern = self.layout.entry_pattern();
        let mut cursor: u64 = 0;
        let mut stale = vec![];
        loop {
            let mut pipe = redis::pipe();
            pipe.cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT);
            let ((next, keys),): ((u64, Vec<String>),) = self.run(&pipe).await?;
            stale.extend(keys.into_iter().filter(|k| {
                self.layout
                    .entry_fingerprint(k)
                    .is_none_or(|fp| !keep.contains(&fp))
            }));
            if next == 0 {
                return Ok(stale);
            }
            cursor = next;
        }
    }

    /// Checks that Redis still holds the state at `at` (a probe while nothing changes, so a Redis
    /// that restarted empty is noticed without waiting for the next change).
    pub async fn verify(&mut self, at: u64) -> Result<(), SinkError> {
        let mut pipe = redis::pipe();
        pipe.hget(self.layout.meta(), field::VERSION);
        let (found,): (Option<String>,) = self.run(&pipe).await?;
        match found.as_deref() == Some(at.to_string().as_str()) {
            true => Ok(()),
            false => self.moved(at, found).await,
        }
    }

    /// Moves the applied version forward without a change (a heartbeat past entries that
    /// changed nothing), from `from`, checked like [`RedisSink::write`].
    pub async fn advance(&mut self, from: u64, state: &MirrorState) -> Result<(), SinkError> {
        let now_ms = (self.clock)().as_millis();
        let mut pipe = redis::pipe();
        self.queue_state(&mut pipe, state, now_ms);
        self.commit(from, pipe).await
    }
}
