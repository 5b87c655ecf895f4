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

/// An AppendEntries over its byte budget: only the first `fit` entries fit (at least one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverBudget {
    /// How many of the leading entries fit.
    pub fit: usize,
}

/// Encodes `rpc` to exactly the bytes of [`encode`], entry by entry, giving up as soon as the
/// encoding passes `budget` bytes with more than one entry in it: a batch that is too large costs
/// the encoding of what fits plus one entry, not of the whole batch.
///
/// Postcard writes a struct as its fields in order and a sequence as its varint length then its
/// items, so the bytes are `vote ++ prev_log_id ++ len ++ entries ++ leader_commit`.
pub fn encode_append(
    rpc: &openraft::raft::AppendEntriesRequest<super::TypeConfig>,
    budget: usize,
) -> Result<Vec<u8>, OverBudget> {
    let mut head = encode(&rpc.vote);
    head.extend_from_slice(&encode(&rpc.prev_log_id));
    let len = encode(&rpc.entries.len());
    let tail = encode(&rpc.leader_commit);
    let framing = head.len() + len.len() + tail.len();
    let mut body = Vec::new();
    for (i, entry) in rpc.entries.iter().enumerate() {
        body = postcard::to_extend(entry, body)
            .expect("openraft and recall messages always serialize");
        if i > 0 && framing + body.len() > budget {
            return Err(OverBudget { fit: i });
        }
    }
    head.reserve_exact(len.len() + body.len() + tail.len());
    head.extend_from_slice(&len);
    head.extend_from_slice(&body);
    head.extend_from_slice(&tail);
    Ok(head)
}

#[cfg(test)]
mod tests {
    use openraft::raft::AppendEntriesRequest;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};
    use recall_core::{Command, Timestamp};

    use super::*;
    use crate::node::raft::{Request, TypeConfig};

    fn rpc(entries: usize) -> AppendEntriesRequest<TypeConfig> {
        let id = |index| LogId::new(CommittedLeaderId::new(3, 1), index);
        AppendEntriesRequest {
            vote: Vote::new_committed(3, 1),
            prev_log_id: Some(id(9)),
            entries: (0..entries as u64)
                .map(|i| Entry {
                    log_id: id(10 + i),
                    payload: match i % 2 {
                        0 => EntryPayload::Normal(Request::Command(Command::Prune {
                            now: Timestamp(i as i64),
                        })),
                        _ => EntryPayload::Blank,
                    },
                })
                .collect(),
            leader_commit: Some(id(8)),
        }
    }

    #[test]
    fn the_entry_by_entry_encoding_is_the_encoding_of_the_request() {
        for n in [0, 1, 2, 200] {
            let rpc = rpc(n);
            assert_eq!(
                encode_append(&rpc, usize::MAX),
                Ok(encode(&rpc)),
                "{n} entries"
            );
        }
    }

    #[test]
    fn an_encoding_over_the_budget_says_how_many_entries_fit() {
        let rpc = rpc(200);
        let half = encode(&rpc).len() / 2;
        let fit = encode_append(&rpc, half).expect_err("over half").fit;
        assert!(fit > 1 && fit < 200, "{fit}");
        let fitting = AppendEntriesRequest {
            entries: rpc.entries[..fit].to_vec(),
            ..rpc.clone()
        };
        let bytes = encode_append(&fitting, half).expect("the entries said to fit do fit");
        assert!(bytes.len() <= half);
        let one_more = AppendEntriesRequest {
            entries: rpc.entries[..=fit].to_vec(),
            ..rpc.clone()
        };
        assert!(encode(&one_more).len() > half, "and one more would not");
        assert_eq!(
            encode_append(&rpc, 1),
            Err(OverBudget { fit: 1 }),
            "an entry over the budget goes alone"
        );
    }
}
