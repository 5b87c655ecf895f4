//! The authority node (`recall server`): an openraft member holding the revocation set durably,
//! serving the operator API, the internal Raft RPC and subscriber streams.

pub mod raft;
