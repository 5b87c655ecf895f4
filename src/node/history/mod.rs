//! The history anyone can verify: every audit record keeps the exact command it covers
//! ([`body`]), every node signs checkpoints of the chain head and the set digest with its own
//! key and a quorum's signatures witness them ([`checkpoint`]), a node whose history disagrees
//! with a quorum's raises an alarm and stops serving streams ([`witness`]), and an export can
//! be verified with no server ([`export`]).

pub mod body;
pub mod checkpoint;
pub mod export;
pub mod witness;

pub use body::Body;
pub use checkpoint::{Checkpoint, Signed, Witnessed, Witnesses};
