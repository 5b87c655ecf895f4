//! The Import stream of the operator API: chunks of revocations committed in order, several in
//! flight at once, with the exact committed prefix on any error.

use recall_core::Command;
use tonic::{Request, Response as TonicResponse, Status, Streaming};

use super::{OperatorService, meta, reply};
use crate::node::access::Role;
use crate::node::raft::Response;
use crate::proto as pb;
use crate::wire::{self, WireError};

impl OperatorService {
    /// Serves one Import stream.
    pub(super) async fn import_stream(
        &self,
        req: Request<Streaming<pb::ImportChunk>>,
    ) -> Result<TonicResponse<pb::WriteReply>, Status> {
        let caller = self.allow(&req, Role::Recaller, "import")?;
        let mut stream = req.into_inner();
        let mut imported = Imported::default();
        let mut offset = 0usize;
        // Later chunks may leave actor and reason empty: the first chunk's apply to them all.
        let (mut actor, mut reason) = (String::new(), String::new());
        let mut ended = false;
        loop {
            while !ended && imported.inflight.len() < IMPORT_PIPELINE {
                let chunk = match stream.message().await {
                    Ok(Some(chunk)) => chunk,
                    Ok(None) => {
                        ended = true;
                        break;
                    }
                    Err(e) => return Err(imported.fail_after(e, offset).await),
                };
                if !chunk.actor.is_empty() || actor.is_empty() {
                    actor = chunk.actor.clone();
                }
                if !chunk.reason.is_empty() || reason.is_empty() {
                    reason = chunk.reason.clone();
                }
                let n = chunk.items.len();
                let checked = self
                    .rate
                    .check(&caller.actor(), n as u64)
                    .and_then(|()| self.import_allowed(offset + n));
                if let Err(e) = checked {
                    return Err(imported.fail_after(e, offset).await);
                }
                let items = chunk
                    .items
                    .into_iter()
                    .enumerate()
                    .map(|(i, r)| {
                        wire::revocation_from_wire("", r)
                            .map_err(|e| e.under(&format!("items[{}]", offset + i)))
                    })
                    .collect::<Result<Vec<_>, WireError>>();
                let items = match items {
                    Ok(items) => items,
                    Err(e) => return Err(imported.fail_after(e.into(), offset).await),
                };
                let first = offset;
                offset += n;
                if items.is_empty() {
                    continue;
                }
                let writer = self.writer.clone();
                let cmd = Command::Revoke {
                    meta: meta(&caller, actor.clone(), reason.clone()),
                    items,
                };
                // An invalid chunk is never proposed: what is committed stays the exact prefix
                // before it.
                if let Err(e) = writer.validate(&cmd) {
                    return Err(imported.fail_after(located(e, first), first).await);
                }
                imported
                    .inflight
                    .push_back((first, tokio::spawn(async move { writer.write(cmd).await })));
            }
            if !imported.next().await? {
                break;
            }
        }
        let total = imported.total;
        Ok(TonicResponse::new(reply(total)))
    }
}

/// How many import chunks commit at once, acknowledged in order. One until AppendEntries are
/// bounded by what a follower can take within an RPC timeout (issue 11 part 5): with 4 in flight,
/// a follower of a debug-build test cluster timed out on every full batch after a leader change
/// and no quorum formed for 30 s.
const IMPORT_PIPELINE: usize = 1;

/// The chunks of one import: the sum of those acknowledged, in order, and those in flight (each
/// with the index of its first item in the import).
#[derive(Default)]
struct Imported {
    total: Response,
    inflight: std::collections::VecDeque<(
        usize,
        tokio::task::JoinHandle<Result<Response, crate::node::WriteError>>,
    )>,
}

impl Imported {
    /// Waits for the oldest chunk in flight; false when there is none.
    async fn next(&mut self) -> Result<bool, Status> {
        let Some((first, task)) = self.inflight.pop_front() else {
            return Ok(false);
        };
        let r = task
            .await
            .map_err(|e| Status::internal(format!("an import chunk's write failed: {e}")))?;
        match r {
            Ok(r) => {
                self.total = std::mem::take(&mut self.total).merge(r);
                Ok(true)
            }
            Err(e) => Err(chunk_failed(e, first)),
        }
    }

    /// `why` the import stopped at item `at`, once the chunks in flight before it have been
    /// acknowledged (or the first of them failed, which is then the reason).
    async fn fail_after(mut self, why: Status, at: usize) -> Status {
        loop {
            match self.next().await {
                Ok(true) => {}
                Ok(false) => return committed_before(why, at),
                Err(e) => return e,
            }
        }
    }
}

/// A chunk whose first item is item `first` of the import did not commit: what went wrong, and
/// what was committed. Chunks after it were proposed already and may have committed too.
fn chunk_failed(e: crate::node::WriteError, first: usize) -> Status {
    committed_before(located(e, first), first)
}

/// What went wrong with the chunk whose first item is item `first`, with indexes counted from
/// the start of the import.
fn located(e: crate::node::WriteError, first: usize) -> Status {
    match e {
        crate::node::WriteError::Invalid(recall_core::ValidationError::Item { index, error }) => {
            let v = recall_core::ValidationError::Item {
                index: first + index,
                error,
            };
            Status::invalid_argument(crate::wire::with_path(crate::wire::Shape::Revoke, &v))
        }
        crate::node::WriteError::Invalid(v) => {
            Status::invalid_argument(crate::wire::with_path(crate::wire::Shape::Revoke, &v))
        }
        other => Status::from(other),
    }
}

/// `s`, saying that the items before item `at` were committed.
fn committed_before(s: Status, at: usize) -> Status {
    Status::new(
        s.code(),
        format!(
            "{} (the items before item {at} were committed; re-running the import is safe)",
            s.message()
        ),
    )
}
