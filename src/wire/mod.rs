//! Conversions between the generated `recall.v1` types and the `recall-core` types: the one place
//! where the two meet. Every conversion from the wire checks what prost cannot (enum values,
//! required messages) and names the offending field, e.g. `items[3].key.kind`, in an
//! INVALID_ARGUMENT status a user can act on.

mod check;
mod keys;
mod path;
pub mod report;
pub mod stream;

pub use check::{
    MAX_CHECK_BATCH, batch_from_wire, facts_from_wire, facts_to_wire, match_to_wire,
    policy_to_wire, reply_to_wire, source_to_wire, verdict_from_wire, verdict_to_wire,
};
pub use keys::{
    key_from_wire, key_to_wire, revocation_from_wire, rule_from_wire, scope_from_wire,
    scope_to_wire,
};
pub use path::{Shape, with_path};

/// A wire message that does not describe a valid core value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct WireError {
    /// The path of the offending field.
    pub field: String,
    /// What is wrong with it and what is expected.
    pub problem: String,
}

impl WireError {
    /// An error at `field`.
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

impl WireError {
    /// The same error inside `prefix` (`items[3]` + `key.kind` = `items[3].key.kind`). Callers
    /// convert items with a relative path and prefix it only on error, so the path of every item
    /// of a big batch is never formatted on the way in.
    pub fn under(mut self, prefix: &str) -> Self {
        self.field = join(prefix, &self.field);
        self
    }
}

pub use recall_stream::SNAPSHOT_REASONS;

/// `field.leaf`, or whichever of the two is not empty.
pub(crate) fn join(field: &str, leaf: &str) -> String {
    match (field.is_empty(), leaf.is_empty()) {
        (true, _) => leaf.to_string(),
        (false, true) => field.to_string(),
        (false, false) => format!("{field}.{leaf}"),
    }
}

impl From<WireError> for tonic::Status {
    fn from(e: WireError) -> Self {
        tonic::Status::invalid_argument(e.to_string())
    }
}

/// A validation error from the core, as the status a client sees.
pub fn invalid(e: recall_core::ValidationError) -> tonic::Status {
    tonic::Status::invalid_argument(e.to_string())
}
