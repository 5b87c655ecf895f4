//! Validation errors as the client sees them: each names the offending field by its path in the
//! request (`items[3].key.namespace`, `rule.not_before_ms`), as `types.proto` promises.

use recall_core::{Command, ValidationError};

/// What a validation error's path depends on: the kind of request, and for a lift how many keys
/// come before its rules. Taken before the command moves into the write path.
#[derive(Clone, Copy, Debug)]
pub enum Shape {
    /// A revoke or import: `items[i]`.
    Revoke,
    /// An added rule: `rule`.
    Rule,
    /// A lift: `keys[i]`, then `rules[j]`.
    Lift {
        /// How many keys the lift names.
        keys: usize,
    },
    /// A command no client sends.
    Other,
}

impl Shape {
    /// The shape of `cmd`.
    pub fn of(cmd: &Command) -> Self {
        match cmd {
            Command::Revoke { .. } => Shape::Revoke,
            Command::AddRule { .. } => Shape::Rule,
            Command::Lift { keys, .. } => Shape::Lift { keys: keys.len() },
            Command::Prune { .. } => Shape::Other,
        }
    }
}

/// The field an error inside one key, scope or rule is about, relative to that item.
fn leaf(e: &ValidationError, in_key: bool) -> &'static str {
    match (e, in_key) {
        (ValidationError::Empty { field } | ValidationError::TooLong { field, .. }, true) => {
            if *field == "namespace" {
                ".key.namespace"
            } else {
                ".key.value"
            }
        }
        (ValidationError::Empty { field } | ValidationError::TooLong { field, .. }, false) => {
            if *field == "namespace" {
                ".namespace"
            } else {
                ".value"
            }
        }
        (ValidationError::ApiKeyNotHash { .. }, true) => ".key.value",
        (ValidationError::ApiKeyNotHash { .. }, false) => ".value",
        (ValidationError::UnknownKind { .. } | ValidationError::UnknownScope { .. }, _) => ".kind",
        (
            ValidationError::ScopeValueMissing { .. }
            | ValidationError::ScopeValueUnexpected { .. },
            _,
        ) => ".value",
        (ValidationError::AlreadyExpired { .. }, _) => ".expires_at_ms",
        _ => "",
    }
}

/// `error` with the path of the field it is about.
pub fn with_path(shape: Shape, error: &ValidationError) -> String {
    match (shape, error) {
        (Shape::Revoke, ValidationError::Item { index, error }) => {
            format!("items[{index}]{}: {error}", leaf(error, true))
        }
        (Shape::Lift { keys }, ValidationError::Item { index, error }) if *index < keys => {
            format!(
                "keys[{index}]{}: {error}",
                leaf(error, false).replace(".key", "")
            )
        }
        (Shape::Lift { keys }, ValidationError::Item { index, error }) => {
            format!("rules[{}]{}: {error}", index - keys, leaf(error, false))
        }
        (Shape::Rule, ValidationError::RuleInFuture { .. }) => {
            format!("rule.not_before_ms: {error}")
        }
        (Shape::Rule, ValidationError::AlreadyExpired { .. }) => {
            format!("rule.expires_at_ms: {error}")
        }
        (
            Shape::Rule,
            e @ (ValidationError::Empty { field, .. } | ValidationError::TooLong { field, .. }),
        ) if *field == "namespace" || *field == "value" => {
            format!("rule.scope.{field}: {e}")
        }
        (
            Shape::Rule,
            e @ (ValidationError::ScopeValueMissing { .. }
            | ValidationError::ScopeValueUnexpected { .. }),
        ) => {
            format!("rule.scope.value: {e}")
        }
        // The request's `actor` is the "on behalf of" note of the command.
        (_, ValidationError::TooLong { field, .. }) if *field == "on_behalf_of" => {
            format!("actor: {error}")
        }
        (_, ValidationError::Empty { field } | ValidationError::TooLong { field, .. }) => {
            format!("{field}: {error}")
        }
        (
            Shape::Revoke,
            ValidationError::EmptyBatch { .. } | ValidationError::BatchTooLarge { .. },
        ) => {
            format!("items: {error}")
        }
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_errors_name_the_field_path() {
        let inner = ValidationError::Empty { field: "value" };
        let e = ValidationError::Item {
            index: 1,
            error: Box::new(inner),
        };
        assert!(with_path(Shape::Revoke, &e).starts_with("items[1].key.value: "));
        assert!(with_path(Shape::Lift { keys: 1 }, &e).starts_with("rules[0].value: "));
        assert!(with_path(Shape::Lift { keys: 3 }, &e).starts_with("keys[1].value: "));
        let actor = ValidationError::Empty { field: "actor" };
        assert!(with_path(Shape::Revoke, &actor).starts_with("actor: "));
    }
}
