//! The scenarios: one mass recall each, with one kind of fault injected while it runs. Each fault
//! lives in its own file and returns the evidence that it took effect; [`runner`] runs a
//! scenario against recall and measures it.
//!
//! | scenario | fault |
//! | --- | --- |
//! | `no-fault` | none |
//! | `leader-kill` | the leader is SIGKILLed mid-recall, restarted after the hold |
//! | `sidecar-partition` | one sidecar's links are blackholed both ways, healed after the hold |
//! | `sidecar-restart` | one sidecar is SIGKILLed mid-recall and restarted after the hold |
//! | `slow-link` | one sidecar's links add latency to every chunk, both ways, from the start |
//! | `rule-partition` | one sidecar is partitioned, and a not-before rule recalls a whole issuer meanwhile |
//! | `sidecar-pause` | one sidecar is SIGSTOPped mid-recall, SIGCONTed after the hold |
//! | `node-cut-off` | every connection into a follower is blackholed until it gives up on the leader, plus the hold |
//! | `leader-partition` | the leader and one follower are partitioned from each other (both ways), for as long |
//! | `minority-leader` | the leader is isolated from both followers while its sidecars still reach it, for as long |
//! | `one-way-link` | every byte one follower sends the leader is lost (the leader's still arrive), for as long |
//! | `peer-slow-link` | the link between the leader and one follower adds latency to every chunk, from the start |
//! | `lagging-follower` | a follower node is SIGSTOPped mid-recall for ten election timeouts or the staleness bound (the longer) plus the hold, then SIGCONTed; it must catch up |
//! | `clock-skew` | the leader's wall clock jumps 5 s ahead mid-recall (libfaketime), a not-before rule goes through it, and its clock steps back after ten election timeouts plus the hold |
//! | `corrupt-state` | one sidecar is SIGKILLed and restarted from its state file truncated, then again with bytes flipped; it must refuse the file and start cold |
//! | `isolated-leader-rule` | the leader is isolated from both followers, and a not-before rule is written to it (it must not acknowledge it) and another through the majority, whose tokens no sidecar may allow once the staleness bound has passed |
//!
//! The faults between nodes use one proxy per directed node pair ([`crate::links`]); the
//! follower a two-node fault pairs with the leader is drawn from the seed.

pub mod clock_skew;
pub mod corrupt_state;
pub mod isolated_leader_rule;
pub mod lagging_follower;
pub mod landing;
pub mod leader_kill;
pub mod leader_partition;
pub mod live;
pub mod minority_leader;
pub mod node_cut_off;
pub mod one_way_link;
pub mod peer_fault;
pub mod peer_slow_link;
pub mod rule_partition;
pub mod runner;
pub mod sidecar_partition;
pub mod sidecar_pause;
pub mod sidecar_restart;
pub mod slow_link;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::authority::{Authority, Writer};
use crate::baseline::BaselineFault;
use crate::clocks::Clocks;
use crate::fleet::Fleet;
use crate::report::model::FaultRecord;
use crate::workload::WriteProgress;

/// A scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// The mass recall with no fault.
    NoFault,
    /// The leader is killed mid-recall.
    LeaderKill,
    /// One sidecar is partitioned mid-recall, then healed.
    SidecarPartition,
    /// One sidecar is killed mid-recall, then restarted.
    SidecarRestart,
    /// One sidecar's links are slow throughout.
    SlowLink,
    /// A not-before rule is written while one sidecar is partitioned.
    RulePartition,
    /// One sidecar is paused (SIGSTOP) mid-recall, then resumed.
    SidecarPause,
    /// A follower node is cut off from its peers mid-recall, then healed.
    NodeCutOff,
    /// The leader and one follower are partitioned from each other mid-recall, then healed.
    LeaderPartition,
    /// The leader is isolated from both followers mid-recall (its sidecars still reach it).
    MinorityLeader,
    /// What one follower sends the leader is lost mid-recall, then healed.
    OneWayLink,
    /// The link between the leader and one follower is slow throughout.
    PeerSlowLink,
    /// A follower node is paused (SIGSTOP) mid-recall past the staleness bound, then resumed.
    LaggingFollower,
    /// The leader's wall clock jumps ahead mid-recall, and back after the hold.
    ClockSkew,
    /// One sidecar is restarted from a truncated, then from a corrupted state file.
    CorruptState,
    /// A not-before rule is written to the leader while it is isolated from both followers.
    IsolatedLeaderRule,
}

impl Scenario {
    /// Every scenario, in the order a full run takes them.
    pub const ALL: [Scenario; 16] = [
        Scenario::NoFault,
        Scenario::LeaderKill,
        Scenario::SidecarPartition,
        Scenario::SidecarRestart,
        Scenario::SlowLink,
        Scenario::RulePartition,
        Scenario::SidecarPause,
        Scenario::NodeCutOff,
        Scenario::LeaderPartition,
        Scenario::MinorityLeader,
        Scenario::OneWayLink,
        Scenario::PeerSlowLink,
        Scenario::LaggingFollower,
        Scenario::ClockSkew,
        Scenario::CorruptState,
        Scenario::IsolatedLeaderRule,
    ];

    /// Its name in reports and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::NoFault => "no-fault",
            Scenario::LeaderKill => "leader-kill",
            Scenario::SidecarPartition => "sidecar-partition",
            Scenario::SidecarRestart => "sidecar-restart",
            Scenario::SlowLink => "slow-link",
            Scenario::RulePartition => "rule-partition",
            Scenario::SidecarPause => "sidecar-pause",
            Scenario::NodeCutOff => "node-cut-off",
            Scenario::LeaderPartition => "leader-partition",
            Scenario::MinorityLeader => "minority-leader",
            Scenario::OneWayLink => "one-way-link",
            Scenario::PeerSlowLink => "peer-slow-link",
            Scenario::LaggingFollower => "lagging-follower",
            Scenario::ClockSkew => "clock-skew",
            Scenario::CorruptState => "corrupt-state",
            Scenario::IsolatedLeaderRule => "isolated-leader-rule",
        }
    }

    /// Whether its processes run under skewable wall clocks ([`crate::clocks`]).
    pub fn skews_clocks(self) -> bool {
        self == Scenario::ClockSkew
    }

    /// How far it moves a node's wall clock.
    pub fn clock_skew(self) -> Duration {
        match self {
            Scenario::ClockSkew => Duration::from_secs(clock_skew::SKEW_S.unsigned_abs()),
            _ => Duration::ZERO,
        }
    }

    /// Whether the fault is injected at a point of the recall (the writes wait there until it
    /// is in place) rather than from the start or not at all.
    pub fn mid_recall(self) -> bool {
        !matches!(
            self,
            Scenario::NoFault | Scenario::SlowLink | Scenario::PeerSlowLink
        )
    }

    /// The same scenario for the baselines, when they run it.
    pub fn baseline(self, victim: usize, after: u64, hold: Duration) -> Option<BaselineFault> {
        match self {
            Scenario::NoFault => Some(BaselineFault::None),
            Scenario::SidecarPartition => Some(BaselineFault::SubscriberPartition {
                victim,
                after,
                hold,
            }),
            _ => None,
        }
    }

    /// Injects the fault while the recall runs; returns once it is over (healed, restarted),
    /// with its evidence.
    pub async fn inject(self, ctx: Arc<FaultCtx>) -> anyhow::Result<Vec<FaultRecord>> {
        match self {
            Scenario::NoFault => Ok(Vec::new()),
            Scenario::LeaderKill => leader_kill::inject(&ctx).await,
            Scenario::SidecarPartition => sidecar_partition::inject(&ctx).await,
            Scenario::SidecarRestart => sidecar_restart::inject(&ctx).await,
            Scenario::SlowLink => slow_link::inject(&ctx).await,
            Scenario::RulePartition => rule_partition::inject(&ctx).await,
            Scenario::SidecarPause => sidecar_pause::inject(&ctx).await,
            Scenario::NodeCutOff => node_cut_off::inject(&ctx).await,
            Scenario::LeaderPartition => leader_partition::inject(&ctx).await,
            Scenario::MinorityLeader => minority_leader::inject(&ctx).await,
            Scenario::OneWayLink => one_way_link::inject(&ctx).await,
            Scenario::PeerSlowLink => peer_slow_link::inject(&ctx).await,
            Scenario::LaggingFollower => lagging_follower::inject(&ctx).await,
            Scenario::ClockSkew => clock_skew::inject(&ctx).await,
            Scenario::CorruptState => corrupt_state::inject(&ctx).await,
            Scenario::IsolatedLeaderRule => isolated_leader_rule::inject(&ctx).await,
        }
    }
}

/// What a fault needs: the systems, the writes' progress, and the choices drawn from the seed.
pub struct FaultCtx {
    /// The authority.
    pub authority: Arc<Authority>,
    /// The sidecars.
    pub fleet: Arc<Fleet>,
    /// A writer for faults that write (the rule).
    pub writer: Writer,
    /// The writes acknowledged so far.
    pub progress: WriteProgress,
    /// The instant of the first write.
    pub started: Instant,
    /// Inject once this many revocations are acknowledged.
    pub after: u64,
    /// The sidecar a sidecar fault hits.
    pub victim: usize,
    /// How long a fault lasts before it is healed.
    pub hold: Duration,
    /// The latency a slow link adds.
    pub latency: Duration,
    /// Revocations in the whole recall.
    pub total: u64,
    /// The sidecars' staleness bound.
    pub staleness_bound: Duration,
    /// A rule a fault wrote: (version, not_before_ms).
    pub rule: Mutex<Option<(u64, i64)>>,
    /// The skewable wall clocks of the processes, when the scenario runs them under
    /// libfaketime.
    pub clocks: Option<Arc<Clocks>>,
}

impl FaultCtx {
    /// Milliseconds since the first write.
    pub fn elapsed_ms(&self) -> f64 {
        crate::baseline::ms(self.started.elapsed())
    }
}
