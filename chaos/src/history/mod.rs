//! The live history of a scenario, checked the way Jepsen checks one: while the wave lands,
//! checkers present credentials to every sidecar at a steady rate and record every answer with
//! its time, the version that answered and its staleness; afterwards a pure function judges the
//! whole history against what the writer was told.
//!
//! - [`check`]: the rules (bound, monotonic, versioned, never-revoked, policy), a pure function
//!   over a [`History`]; no I/O, no clock.
//! - [`exposure`]: per sampled revocation, the time from the writer's acknowledgement until
//!   every sidecar refuses it, from the live answers and from the sidecars' own reports; pure.
//! - [`live`]: the checker tasks that present credentials and record answers (the only I/O).
//! - [`lifts`]: a few revoke-then-lift cycles written during the recall, so lifted credentials
//!   are in the history too.
//!
//! Times are offsets from one origin (the scenario's first write) on the harness's monotonic
//! clock; credentials are numbers ([`Cred`]) the live checker maps to token ids.

pub mod check;
pub mod exposure;
pub mod lifts;
pub mod live;

use std::ops::Range;
use std::time::Duration;

/// A credential by number: the live checker's [`live::Creds`] maps it to a token id.
pub type Cred = u32;

/// What a write did to its credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteKind {
    /// Revoked them.
    Revoke,
    /// Lifted their revocation.
    Lift,
}

/// A write as the writer saw it: when it was sent, when (and at which version) the authority
/// acknowledged it. A revocation is in the history only once acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    /// Revoke or lift.
    pub kind: WriteKind,
    /// The credentials it names.
    pub creds: Range<Cred>,
    /// When the request left.
    pub sent: Duration,
    /// When the acknowledgement arrived; `None` if it never did.
    pub acked: Option<Duration>,
    /// The version the acknowledgement named (the last log entry of the write); `None` if
    /// unknown. A lift of one credential is one entry, so its version is the entry that applied
    /// it; a batch of revocations may span entries up to this one.
    pub version: Option<u64>,
}

/// The verdict of an answer, with the staleness policy applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Let it through.
    Allowed,
    /// Refuse it.
    Revoked,
    /// Lite mode: probably revoked (a refusal).
    PossiblyRevoked,
}

impl Verdict {
    /// Whether a service refuses the credential on this verdict.
    pub fn refuses(self) -> bool {
        self != Verdict::Allowed
    }
}

/// The staleness policy the sidecar said it applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// A stale answer refuses.
    FailClosed,
    /// A stale answer keeps the local state's verdict.
    FailOpen,
}

/// One answer of one sidecar to one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The sidecar (fleet index).
    pub sidecar: u16,
    /// The credential presented.
    pub cred: Cred,
    /// When the request left (the sidecar decided after this).
    pub sent: Duration,
    /// When the answer arrived (the sidecar decided before this).
    pub received: Duration,
    /// The verdict.
    pub verdict: Verdict,
    /// The version of the state that answered.
    pub version: u64,
    /// Whether the answer said it was stale.
    pub stale: bool,
    /// The policy it applied.
    pub policy: Policy,
}

impl Answer {
    /// A stale answer under fail-open: it says it cannot vouch for its state and that the
    /// policy chose availability, so no rule about the state's content holds it.
    pub fn open_stale(&self) -> bool {
        self.stale && self.policy == Policy::FailOpen
    }
}

/// Everything a scenario's checkers saw, and what the writer was told.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// The sidecars' staleness bound.
    pub bound: Duration,
    /// Whether the sidecars run in full mode (exact fingerprints: a never-revoked credential
    /// is never refused by a fresh answer).
    pub full_mode: bool,
    /// Every write whose credentials were presented (revocations once acknowledged, lifts as
    /// sent).
    pub writes: Vec<Write>,
    /// Every answer, in any order.
    pub answers: Vec<Answer>,
}
