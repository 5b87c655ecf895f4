//! Raft for the authority: the type configuration, the durable log and state machine (redb),
//! and the gRPC transport between nodes. Nothing here knows the operator API.

pub mod codec;
pub mod network;
pub mod types;

pub use types::{Node, NodeId, Raft, Request, Response, TypeConfig};
