//! Raft for the authority: the type configuration, the durable log and state machine (redb),
//! and the gRPC transport between nodes. Nothing here knows the operator API.

pub mod append_budget;
pub mod codec;
mod log_flush;
pub mod log_store;
pub mod network;
pub mod service;
pub mod snapshot;
pub mod snapshot_build;
pub mod state_machine;
pub mod transfer;
pub mod types;

pub use log_store::{LogStore, LogStoreError};
pub use state_machine::{AppliedState, StateMachine, StateMachineConfig};
pub use types::{Node, NodeId, Raft, Request, Response, TypeConfig};
