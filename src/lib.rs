//! recall, the service: the authority node, the sidecar, the Redis mirror, the SSF receiver and the operator CLI, wired from the
//! core crates (`recall-core`, `recall-filter`) and the `recall.v1` wire contract.

pub mod cli;
pub mod cluster_client;
pub mod metrics;
pub mod mirror;
pub mod node;
pub mod proto;
pub mod relay;
pub mod sidecar;
pub mod ssf;
pub mod subscriber;
pub mod token;
pub mod transport;
pub mod wire;
