//! Propagation: revocations committed by the authority reach subscribers over the stream, in
//! order, with acked versions, and survive reconnects, restarts and slow consumers.

mod basics;
mod failover;
mod fixture;
mod fleet;
mod forged_ack;
mod hello_deadline;
mod http_deadlines;
mod impostor;
mod link_cut;
mod protocol;
mod raw;
mod sidecar_fixture;
mod sidecar_grpc;
mod sidecar_http;
mod sidecar_tls;
mod silent_link;
mod tls_http_client;
mod warm_start;
