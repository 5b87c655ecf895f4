//! The write path: validate, split big batches by bytes, stamp and propose on the leader, or
//! forward to it. Every operator write (revoke, rule, lift, import) and the leader's own duties
//! (the seed, prunes) go through here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use openraft::error::{ClientWriteError, RaftError};
use recall_core::{Command, FingerprintSeed, Limits, validate};
use serde::{Deserialize, Serialize};
use tonic::transport::Channel;

use super::access::{Caller, Role, RoleChange};
use super::clock::Clock;
use super::history::Signed;
use super::raft::codec::{decode, encode};
use super::raft::{Node, NodeId, Raft, Request, Response, StateMachine};
use super::stepup::{Approval, Change, OtpEnrollment, PolicyChange, StepUpPolicy};
use super::write_error::WriteError;
use crate::proto as pb;
use crate::proto::raft_internal_client::RaftInternalClient;
use crate::transport::{Identity, PeerDialer};

/// How many chunks of one batch are in flight at once.
const PIPELINE: usize = 4;

/// The write path of one node.
#[derive(Clone)]
pub struct Writer {
    inner: Arc<Inner>,
}

struct Inner {
    raft: Raft,
    sm: StateMachine,
    clock: Clock,
    limits: Limits,
    timeout: Duration,
    chunk_bytes: usize,
    admins: Vec<String>,
    step_up: StepUpPolicy,
    dialer: PeerDialer,
    leaders: Mutex<HashMap<String, RaftInternalClient<Channel>>>,
    /// `recall_commit_seconds`: from proposing on this node (as leader) until applied.
    commit_seconds: prometheus::Histogram,
}

/// How a node's write path is set up.
#[derive(Clone, Debug)]
pub struct WriterConfig {
    /// Validation limits.
    pub limits: Limits,
    /// How long a write may take to commit.
    pub timeout: Duration,
    /// Raft entries are cut at about this many bytes.
    pub chunk_bytes: usize,
    /// The first admins of a new cluster (identity URIs), bound with the seed.
    pub admins: Vec<String>,
    /// The step-up policy a new cluster starts with, fixed with the seed.
    pub step_up: StepUpPolicy,
}

/// A write as it travels to the leader. The actor in its meta is the authenticated identity of
/// the operator who asked for it; the leader stamps the time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Write {
    /// Revoke, AddRule or Lift (prunes are never forwarded: they are the leader's own).
    Command(Command),
    /// A role binding.
    Roles(RoleChange),
    /// A step-up policy change.
    Policy(PolicyChange),
    /// An operator enrolling their one-time-code secret.
    EnrollOtp(OtpEnrollment),
    /// A change with a one-time code of its actor.
    WithOtp {
        /// The code.
        code: String,
        /// The change.
        change: Change,
    },
    /// A change proposed as a pending request.
    Propose(Change),
    /// An approval of a pending request.
    Approve(Approval),
    /// A node binding its checkpoint key (sent by that node only).
    NodeKey {
        /// The node.
        node: NodeId,
        /// Its ed25519 public key.
        key: [u8; 32],
    },
    /// A node's signed checkpoint (sent by that node only).
    Witness(Signed),
}

impl From<Change> for Write {
    fn from(c: Change) -> Self {
        match c {
            Change::Command(c) => Write::Command(c),
            Change::Roles(r) => Write::Roles(r),
            Change::Policy(p) => Write::Policy(p),
            Change::Membership(m) => Write::Propose(Change::Membership(m)),
        }
    }
}

impl Write {
    fn actor(&self) -> &str {
        match self {
            Write::Command(c) => c.meta().map_or("", |m| m.actor.as_str()),
            Write::Roles(r) => &r.meta.actor,
            Write::Policy(p) => &p.meta.actor,
            Write::EnrollOtp(e) => &e.meta.actor,
            Write::WithOtp { change, .. } | Write::Propose(change) => change.actor(),
            Write::Approve(a) => &a.meta.actor,
            Write::NodeKey { .. } | Write::Witness(_) => "",
        }
    }

    /// The role the write itself needs, and what to call it in a refusal.
    pub fn needs(&self) -> Option<(Role, &'static str)> {
        match self {
            Write::Command(Command::Revoke { .. }) => Some((Role::Revoker, "revoke")),
            Write::Command(Command::AddRule { .. }) => Some((Role::Recaller, "adding a rule")),
            Write::Command(Command::Lift { .. }) => Some((Role::Recaller, "lift")),
            Write::Command(Command::Prune { .. }) => None,
            Write::Roles(_) => Some((Role::Admin, "changing a role binding")),
            Write::Policy(_) => Some((Role::Admin, "changing the step-up policy")),
            Write::EnrollOtp(_) => Some((Role::Viewer, "enrolling a one-time-code secret")),
            Write::WithOtp { change, .. } | Write::Propose(change) => {
                change.needs().map(|role| (role, change.action()))
            }
            // The approver's role is checked against the request when the approval is applied.
            Write::Approve(_) => Some((Role::Viewer, "approving a request")),
            Write::NodeKey { .. } | Write::Witness(_) => None,
        }
    }

    /// The command inside, to validate.
    fn command(&self) -> Option<&Command> {
        match self {
            Write::Command(c)
            | Write::WithOtp {
                change: Change::Command(c),
                ..
            }
            | Write::Propose(Change::Command(c)) => Some(c),
            _ => None,
        }
    }

    /// The entry to log, stamped with the leader's time.
    fn stamped(self, now: recall_core::Timestamp) -> Request {
        match self {
            Write::Command(mut cmd) => {
                stamp(&mut cmd, now);
                Request::Command(cmd)
            }
            Write::Roles(mut change) => {
                change.meta.at = now;
                Request::Roles(change)
            }
            Write::Policy(mut change) => {
                change.meta.at = now;
                Request::Policy(change)
            }
            Write::EnrollOtp(mut e) => {
                e.meta.at = now;
                Request::EnrollOtp(e)
            }
            Write::WithOtp { code, mut change } => {
                change.stamp(now);
                Request::WithOtp { code, change }
            }
            Write::Propose(mut change) => {
                change.stamp(now);
                Request::Propose(change)
            }
            Write::Approve(mut a) => {
                a.meta.at = now;
                Request::Approve(a)
            }
            Write::NodeKey { node, key } => Request::NodeKey { node, key, at: now },
            Write::Witness(s) => Request::Witness(s),
        }
    }
}

/// Why a proposal on this node did not commit.
enum Propose {
    /// Another node leads (if known).
    NotLeader(Option<(NodeId, Node)>),
    /// Anything else.
    Failed(WriteError),
}

impl Writer {
    /// The write path over `raft` and its state machine.
    pub fn new(
        raft: Raft,
        sm: StateMachine,
        clock: Clock,
        config: WriterConfig,
        dialer: PeerDialer,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                raft,
                sm,
                clock,
                limits: config.limits,
                timeout: config.timeout,
                chunk_bytes: config.chunk_bytes.max(1024),
                admins: config.admins,
                step_up: config.step_up,
                dialer,
                leaders: Mutex::new(HashMap::new()),
                commit_seconds: crate::metrics::histogram(
                    "recall_commit_seconds",
                    "Time from proposing a write on this node, as leader, until it was \
                     committed and applied here.",
                    crate::metrics::LATENCY_BUCKETS,
                ),
            }),
        }
    }

    /// The commit latency histogram, for the node's metrics.
    pub fn commit_histogram(&self) -> prometheus::Histogram {
        self.inner.commit_seconds.clone()
    }

    /// Checks `cmd` against this node's clock and limits, as [`Writer::write`] does first.
    pub fn validate(&self, cmd: &Command) -> Result<(), WriteError> {
        Ok(validate(cmd, (self.inner.clock)(), &self.inner.limits)?)
    }

    /// Validates `cmd`, then commits it (in byte-bounded chunks, pipelined) through the leader.
    /// The reply sums the chunks; its version is the last one committed.
    pub async fn write(&self, cmd: Command) -> Result<Response, WriteError> {
        validate(&cmd, (self.inner.clock)(), &self.inner.limits)?;
        let chunks = split(cmd, self.inner.chunk_bytes);
        futures::stream::iter(chunks)
            .map(|c| self.commit(Write::Command(c)))
            .buffered(PIPELINE)
            .try_fold(
                Response::default(),
                |acc, r| async move { Ok(acc.merge(r)) },
            )
            .await
    }

    /// Commits a role binding through the leader.
    pub async fn write_roles(&self, change: RoleChange) -> Result<Response, WriteError> {
        self.commit(Write::Roles(change)).await
    }

    /// Validates the command inside `write`, if any, then commits it whole (never split: a code
    /// or an approval covers exactly one entry). A pending request it creates is in the reply.
    pub async fn write_whole(&self, write: Write) -> Result<Response, WriteError> {
        if let Some(cmd) = write.command() {
            validate(cmd, (self.inner.clock)(), &self.inner.limits)?;
        }
        self.commit(write).await
    }

    /// Commits one write within the deadline, forwarding it while another node leads.
    async fn commit(&self, cmd: Write) -> Result<Response, WriteError> {
        let deadline = self.inner.timeout;
        let attempt = async {
            let mut backoff = Duration::from_millis(20);
            loop {
                match self.propose(cmd.clone()).await {
                    Ok(r) => return Ok(r),
                    Err(Propose::Failed(e)) => return Err(e),
                    Err(Propose::NotLeader(Some((id, node)))) => {
                        match self.forward(id, &node, &cmd).await {
                            Ok(r) => return Ok(r),
                            Err(e @ WriteError::Refused(_)) => return Err(e),
                            Err(e) => tracing::debug!(leader = id, error = %e, "forward failed"),
                        }
                    }
                    Err(Propose::NotLeader(None)) => {}
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
        };
        let r = tokio::time::timeout(deadline, attempt)
            .await
            .map_err(|_| WriteError::Timeout(deadline))??;
        match r.refused {
            Some(why) => Err(WriteError::StepUp(why)),
            None => Ok(r),
        }
    }

    /// The seed (and the first admins) a leader proposes for a cluster that has none.
    pub fn init_request(&self) -> Request {
        Request::Bootstrap {
            seed: FingerprintSeed(rand::random()),
            admins: self.inner.admins.clone(),
            at: (self.inner.clock)(),
            policy: self.inner.step_up.clone(),
        }
    }

    /// Proposes on this node if it leads: fixes the seed first if the cluster has none, stamps
    /// the write with this node's time, and waits for it to be applied.
    async fn propose(&self, write: Write) -> Result<Response, Propose> {
        if !self.inner.sm.seeded() {
            self.client_write(self.init_request()).await?;
        }
        // Only the leader's bindings hold every role change it acknowledged: a follower leaves
        // the check to it (the proposal is forwarded when this node does not lead).
        let leads = {
            let m = self.inner.raft.metrics().borrow().clone();
            m.current_leader == Some(m.id)
        };
        if leads
            && let Write::Propose(change) = &write
            && let Some(why) = self
                .inner
                .sm
                .with_stepup(|g, roles| super::stepup::no_approver(g, roles, change))
        {
            return Err(Propose::Failed(WriteError::StepUp(why)));
        }
        let req = write.stamped((self.inner.clock)());
        self.client_write(req).await
    }

    /// The leader's side of a write forwarded by the member node `from`: only operator writes
    /// (revoke, rule, lift, role bindings) are accepted, the role of the operator named as its
    /// actor is checked against this node's bindings, the command is validated against this
    /// node's clock, and it is proposed without forwarding again.
    pub async fn accept_forwarded(
        &self,
        from: u64,
        write: Write,
    ) -> Result<Response, tonic::Status> {
        if let Write::NodeKey { node, .. } | Write::Witness(Signed { node, .. }) = &write {
            if *node != from {
                tracing::warn!(
                    node = from,
                    claimed = node,
                    "refused a checkpoint write for another node"
                );
                return Err(tonic::Status::permission_denied(format!(
                    "node {from} cannot bind a key or sign a checkpoint for node {node}"
                )));
            }
            return match self.propose(write).await {
                Ok(r) => Ok(r),
                Err(Propose::Failed(e)) => Err(e.into()),
                Err(Propose::NotLeader(_)) => Err(tonic::Status::unavailable(
                    "this node is no longer the leader; retry",
                )),
            };
        }
        let Some((need, action)) = write.needs() else {
            tracing::warn!(
                node = from,
                "refused a forwarded prune: prunes are the leader's own duty"
            );
            return Err(tonic::Status::permission_denied(
                "only operator writes (revoke, rule, lift, role bindings) can be forwarded; \
                 prunes and the seed come from the leader's own duties",
            ));
        };
        let identity = Identity::parse(write.actor()).map_err(|e| {
            tonic::Status::invalid_argument(format!("the forwarded write's actor: {e}"))
        })?;
        let caller = Caller {
            identity: Some(identity),
        };
        self.inner
            .sm
            .with_roles(|b| super::access::require(b, &caller, need, action))?;
        if let Some(cmd) = write.command() {
            validate(cmd, (self.inner.clock)(), &self.inner.limits).map_err(WriteError::from)?
        }
        if let Write::Roles(change)
        | Write::Propose(Change::Roles(change))
        | Write::WithOtp {
            change: Change::Roles(change),
            ..
        } = &write
        {
            super::access::operator_identity(
                caller
                    .identity
                    .as_ref()
                    .map_or("", |i| i.trust_domain.as_str()),
                &change.identity,
            )
            .map_err(tonic::Status::invalid_argument)?;
        }
        match self.propose(write).await {
            Ok(r) => Ok(r),
            Err(Propose::Failed(e)) => Err(e.into()),
            Err(Propose::NotLeader(_)) => Err(tonic::Status::unavailable(
                "this node is no longer the leader; retry",
            )),
        }
    }

    /// Proposes a system request (the seed or a prune) if this node leads.
    pub async fn propose_system(&self, req: Request) -> Result<Response, WriteError> {
        match self.client_write(req).await {
            Ok(r) => Ok(r),
            Err(Propose::Failed(e)) => Err(e),
            Err(Propose::NotLeader(_)) => Err(WriteError::NoLeader),
        }
    }

    async fn client_write(&self, req: Request) -> Result<Response, Propose> {
        let started = tokio::time::Instant::now();
        match self.inner.raft.client_write(req).await {
            Ok(r) => {
                self.inner
                    .commit_seconds
                    .observe(started.elapsed().as_secs_f64());
                Ok(r.data)
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(Propose::NotLeader(f.leader_id.zip(f.leader_node)))
            }
            Err(e) => Err(Propose::Failed(WriteError::Raft(e.to_string()))),
        }
    }

    async fn forward(
        &self,
        leader: NodeId,
        node: &Node,
        cmd: &Write,
    ) -> Result<Response, WriteError> {
        let fail = |reason: String| WriteError::Forward {
            leader,
            addr: self.inner.dialer.addr(leader, &node.addr).to_owned(),
            reason,
        };
        let mut client = self
            .leader_client(leader, &node.addr)
            .map_err(|e| fail(e.to_string()))?;
        let reply = client
            .forward(pb::ForwardRequest {
                payload: encode(cmd),
            })
            .await
            .map_err(|s| match s.code() {
                tonic::Code::InvalidArgument
                | tonic::Code::PermissionDenied
                | tonic::Code::ResourceExhausted
                | tonic::Code::FailedPrecondition => WriteError::Refused(s),
                _ => fail(crate::transport::errors::describe(&s)),
            })?
            .into_inner();
        match reply.outcome {
            Some(pb::forward_reply::Outcome::Payload(p)) => {
                decode("forwarded write reply", &p).map_err(|s| fail(s.message().to_string()))
            }
            Some(pb::forward_reply::Outcome::Error(e)) => {
                Err(fail(String::from_utf8_lossy(&e).into()))
            }
            None => Err(fail("empty reply".into())),
        }
    }

    /// A client of `leader`, which advertises `advertised`.
    fn leader_client(
        &self,
        leader: NodeId,
        advertised: &str,
    ) -> Result<RaftInternalClient<Channel>, WriteError> {
        let mut leaders = self.inner.leaders.lock().expect("leader clients lock");
        // A channel is bound to the node id it expects, so the cache is keyed by both.
        let key = format!("{leader}@{advertised}");
        if let Some(c) = leaders.get(&key) {
            return Ok(c.clone());
        }
        let channel = self
            .inner
            .dialer
            .lazy(leader, advertised)
            .map_err(|e| WriteError::Raft(e.to_string()))?;
        let client = RaftInternalClient::new(channel)
            .max_decoding_message_size(super::raft::network::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(super::raft::network::MAX_MESSAGE_BYTES);
        leaders.insert(key, client.clone());
        Ok(client)
    }
}

/// Sets the time of a command to the proposing leader's clock.
fn stamp(cmd: &mut Command, now: recall_core::Timestamp) {
    match cmd {
        Command::Revoke { meta, .. }
        | Command::AddRule { meta, .. }
        | Command::Lift { meta, .. } => meta.at = now,
        Command::Prune { .. } => {}
    }
}

/// The approximate encoded size of one revoked or lifted key.
fn key_bytes(k: &recall_core::RevocationKey) -> usize {
    16 + k.namespace.len() + k.value.len()
}

/// Splits a revoke or lift into commands of about `max_bytes` each (a 1M-entry import must never
/// become one huge Raft entry); other commands stay whole.
fn split(cmd: Command, max_bytes: usize) -> Vec<Command> {
    match cmd {
        Command::Revoke { meta, items } => chunks(items, max_bytes, |r| key_bytes(&r.key))
            .into_iter()
            .map(|items| Command::Revoke {
                meta: meta.clone(),
                items,
            })
            .collect(),
        Command::Lift { meta, keys, rules } => {
            let scope_bytes = |r: &recall_core::RuleScope| 16 + r.namespace.len() + r.value.len();
            let mut out: Vec<Command> = chunks(keys, max_bytes, key_bytes)
                .into_iter()
                .map(|keys| Command::Lift {
                    meta: meta.clone(),
                    keys,
                    rules: vec![],
                })
                .collect();
            out.extend(
                chunks(rules, max_bytes, scope_bytes)
                    .into_iter()
                    .map(|rules| Command::Lift {
                        meta: meta.clone(),
                        keys: vec![],
                        rules,
                    }),
            );
            if out.is_empty() {
                out.push(Command::Lift {
                    meta,
                    keys: vec![],
                    rules: vec![],
                });
            }
            out
        }
        other => vec![other],
    }
}

fn chunks<T>(items: Vec<T>, max_bytes: usize, size: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    let (mut cur, mut bytes) = (Vec::new(), 0);
    for item in items {
        let n = size(&item);
        if !cur.is_empty() && bytes + n > max_bytes {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        bytes += n;
        cur.push(item);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use recall_core::{Kind, Meta, Revocation, RevocationKey};

    #[test]
    fn big_batches_split_by_bytes_and_keep_every_item() {
        let items: Vec<Revocation> = (0..10_000)
            .map(|i| Revocation {
                key: RevocationKey::new(Kind::Token, "iss", format!("{i:060}")),
                expires_at: None,
            })
            .collect();
        let parts = split(
            Command::Revoke {
                meta: Meta {
                    at: recall_core::Timestamp(0),
                    actor: "t".into(),
                    on_behalf_of: String::new(),
                    reason: "r".into(),
                },
                items,
            },
            64 * 1024,
        );
        assert!(parts.len() > 10);
        let total: usize = parts
            .iter()
            .map(|c| match c {
                Command::Revoke { items, .. } => items.len(),
                _ => 0,
            })
            .sum();
        assert_eq!(total, 10_000);
    }
}
