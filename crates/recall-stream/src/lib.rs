//! The stream contract of recall as one protocol with two ends and no I/O: the node's
//! [`session::Session`] and the subscriber's [`follower::Follower`] are plain state machines
//! (events in, actions out). The async code that owns sockets and timers only drives them, and
//! `src/wire/` is the one codec between their [`message`]s and protobuf, so a seeded simulation
//! can drive many of them through the real codec with drops, reorders, stalls and restarts.

pub mod acks;
pub mod follower;
pub mod message;
mod replica;
pub mod session;
pub mod window;

pub use follower::{Event, Failure, Follower, Replica};
pub use message::{
    Ack, Down, Downstream, Encoded, Hello, Report, Snapshot, Up, Witness, WitnessSignature,
};
pub use session::{Action, Applied, Session, SessionConfig, Source};
pub use window::{DeltaWindow, Window};

/// Why a node sends a subscriber a snapshot (`SnapshotBegin.reason`, `Resync.reason`); a
/// metric labels anything else "other".
pub const SNAPSHOT_REASONS: [&str; 6] = [
    "new_subscriber",
    "behind_window",
    "too_slow",
    "digest_mismatch",
    "seed_changed",
    "future_version",
];
