//! The Shared Signals receiver end to end: a test transmitter with its own keys pushes
//! (RFC 8935) and serves for polling (RFC 8936) Security Event Tokens to a real `recall ssf`
//! process writing to a real node. Accepted events are written once and recorded with the
//! SET's `jti`; replays, forgeries, misaddressed and unknown SETs are handled as the RFCs say.

#[path = "../propagation/fixture.rs"]
#[allow(dead_code)]
mod fixture;
#[path = "../tokens/keys.rs"]
#[allow(dead_code)]
mod keys;
mod poll;
mod push;
mod refused;
mod support;
