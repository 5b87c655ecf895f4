//! Propagation: revocations committed by the authority reach subscribers over the stream, in
//! order, with acked versions, and survive reconnects, restarts and slow consumers.

mod basics;
mod fixture;
