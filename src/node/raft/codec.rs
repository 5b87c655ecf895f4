//! The encoding of openraft messages inside the opaque `bytes` fields of the internal Raft RPC:
//! postcard (compact, serde-driven). Every node of a cluster runs the same encoding.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Encodes a message for the wire.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Encoding into a Vec only fails for types serde cannot represent; none of ours are.
    postcard::to_stdvec(value).expect("openraft and recall messages always serialize")
}

/// Decodes a message from the wire, naming what failed to decode.
pub fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, tonic::Status> {
    postcard::from_bytes(bytes).map_err(|e| {
        tonic::Status::invalid_argument(format!(
            "{what} does not decode ({e}): the sender runs an incompatible build of recall"
        ))
    })
}
