//! What an executor may send, checked at the edge: the limits of `Register`
//! and the content of results. Every limit here is written in
//! `executor.proto`; a message that breaks one is refused with a reason that
//! names the field and never echoes more than a short prefix of the input.

use tributary_proto::v1 as pb;

use super::error::{ApiError, ApiResult};
use super::text::{check_text, quoted_prefix, truncate_at_char};
use crate::dispatch::ExecutorEvent;
use crate::dispatch::executors::ExecutorRegistration;
use crate::engine::context::Delta;
use tributary_core::{LabelError, Labels, MAX_LABELS, check_labels, is_valid_handler};

/// Most attempts one executor may ask to run at once.
pub const MAX_CAPACITY: u32 = 10_000;
/// Most handlers one executor may serve: twice the default largest
/// workflow, whose tasks each have a handler of their own by default.
pub const MAX_HANDLERS: usize = 100_000;
/// Longest executor name, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Longest instance id, in bytes.
pub const MAX_INSTANCE_ID_BYTES: usize = 128;
/// Most attempts one registration may hold.
pub const MAX_HELD_ATTEMPTS: usize = 10_000;
/// Longest attempt id the server could have issued (a UUID is 36 bytes).
pub const MAX_ATTEMPT_ID_BYTES: usize = 64;
/// Longest failure message kept; longer ones are cut.
pub const MAX_FAILURE_MESSAGE_BYTES: usize = 65_536;

/// The limits of a `Register` the server configures: what one connected
/// executor's registration may cost it in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegisterLimits {
    /// Most handlers (at most [`MAX_HANDLERS`], the protocol's bound).
    pub max_handlers: usize,
    /// Largest encoded `Register` in bytes.
    pub max_bytes: usize,
}

impl Default for RegisterLimits {
    fn default() -> RegisterLimits {
        RegisterLimits {
            max_handlers: MAX_HANDLERS,
            max_bytes: 4 * 1024 * 1024,
        }
    }
}

/// Checks a `Register` against the limits of the protocol and the server's
/// `limits`. Sizes are refused with RESOURCE_EXHAUSTED, naming the limit and
/// the excess; malformed content with INVALID_ARGUMENT.
pub fn validate_registration(
    register: pb::Register,
    limits: &RegisterLimits,
) -> ApiResult<ExecutorRegistration> {
    let invalid = |message: String| Err(ApiError::InvalidArgument(message));
    let bytes = prost::Message::encoded_len(&register);
    if bytes > limits.max_bytes {
        return Err(ApiError::ResourceExhausted(format!(
            "register is {bytes} bytes, over the max_register_bytes limit of {} bytes by {}",
            limits.max_bytes,
            bytes - limits.max_bytes
        )));
    }
    let max_handlers = limits.max_handlers.min(MAX_HANDLERS);
    if register.handlers.len() > max_handlers {
        return Err(ApiError::ResourceExhausted(format!(
            "register.handlers has {} handlers, over the limit of {max_handlers} by {}",
            register.handlers.len(),
            register.handlers.len() - max_handlers
        )));
    }
    if register.instance_id.is_empty() {
        return invalid("register.instance_id is missing".to_owned());
    }
    check_text(
        "register.instance_id",
        &register.instance_id,
        MAX_INSTANCE_ID_BYTES,
    )?;
    check_text("register.name", &register.name, MAX_NAME_BYTES)?;
    if register.handlers.is_empty() {
        return invalid(
            "register.handlers is empty: an executor must serve at least one handler".to_owned(),
        );
    }
    if let Some(bad) = register
        .handlers
        .iter()
        .find(|handler| !is_valid_handler(handler))
    {
        return invalid(format!(
            "invalid handler {} in register.handlers: must be 1-128 characters of a-z, A-Z, 0-9, _, -, ., : and /",
            quoted_prefix(bad)
        ));
    }
    if register.max_concurrent_attempts > MAX_CAPACITY {
        return invalid(format!(
            "register.max_concurrent_attempts must be between 0 and {MAX_CAPACITY}, got {}",
            register.max_concurrent_attempts
        ));
    }
    // The labels' rule is the one tasks' required labels follow; the count
    // first, so that a flood of labels is not sorted before it is refused.
    if register.labels.len() > MAX_LABELS {
        let error = LabelError::TooMany(register.labels.len());
        return invalid(format!("register.labels {error}"));
    }
    let labels: Labels = register.labels.into_iter().collect();
    if let Err(error) = check_labels(&labels) {
        return invalid(format!("register.labels {error}"));
    }
    if register.held_attempt_ids.len() > MAX_HELD_ATTEMPTS {
        return invalid(format!(
            "register.held_attempt_ids has {} ids, over the limit of {MAX_HELD_ATTEMPTS}",
            register.held_attempt_ids.len()
        ));
    }
    for held in &register.held_attempt_ids {
        check_text(
            "an id of register.held_attempt_ids",
            held,
            MAX_ATTEMPT_ID_BYTES,
        )?;
    }
    let mut handlers = register.handlers;
    handlers.sort();
    handlers.dedup();
    Ok(ExecutorRegistration {
        name: register.name,
        instance_id: register.instance_id,
        handlers,
        capacity: register.max_concurrent_attempts,
        labels,
        held_attempt_ids: register.held_attempt_ids,
        value_cache_bytes: register.value_cache_bytes,
    })
}

/// Whether an attempt id could have been issued by the server. Anything
/// else names no attempt, and never reaches a database query.
pub fn is_plausible_attempt_id(attempt_id: &str) -> bool {
    !attempt_id.is_empty() && attempt_id.len() <= MAX_ATTEMPT_ID_BYTES && !attempt_id.contains('\0')
}

/// A `Completed` as the coordinator takes it. A result that is too large,
/// not a JSON object, sets and removes one key, or has a NUL in a key is
/// rejected: the attempt fails without retry (the same code would send it
/// again) and the executor is told why.
pub fn completed_event(completed: pb::Completed, max_context_bytes: usize) -> ExecutorEvent {
    let rejected = |reason: String| ExecutorEvent::Rejected {
        attempt_id: completed.attempt_id.clone(),
        reason,
    };
    let size = completed.set_json.len();
    if size > max_context_bytes {
        return rejected(format!(
            "completed.set_json is {size} bytes, over the max_context_bytes limit of {max_context_bytes} bytes by {}",
            size - max_context_bytes
        ));
    }
    if completed.removed_keys.iter().any(|key| key.contains('\0')) {
        return rejected("completed.removed_keys has a key containing U+0000".to_owned());
    }
    match Delta::parse(&completed.set_json, &completed.removed_keys) {
        Ok(delta) => {
            if delta.set.iter().any(|(key, _)| key.contains('\0')) {
                return rejected("completed.set_json has a key containing U+0000".to_owned());
            }
            if let Some(key) = delta
                .set
                .iter()
                .map(|(key, _)| key)
                .find(|key| delta.removed.contains(key))
            {
                return rejected(format!(
                    "completed both sets and removes the key {}",
                    quoted_prefix(key)
                ));
            }
            ExecutorEvent::Completed {
                attempt_id: completed.attempt_id,
                delta,
            }
        }
        Err(error) => rejected(format!("completed.set_json is invalid: {error}")),
    }
}

/// A `Failed` as the coordinator takes it: a message with a NUL is
/// rejected (no database stores it the same way), a long one is cut.
pub fn failed_event(failed: pb::Failed) -> ExecutorEvent {
    if failed.message.contains('\0') {
        return ExecutorEvent::Rejected {
            attempt_id: failed.attempt_id,
            reason: "failed.message contains U+0000".to_owned(),
        };
    }
    ExecutorEvent::Failed {
        attempt_id: failed.attempt_id,
        message: truncate_at_char(failed.message, MAX_FAILURE_MESSAGE_BYTES),
        retryable: !failed.non_retryable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register() -> pb::Register {
        pb::Register {
            name: "worker".into(),
            instance_id: "instance".into(),
            handlers: vec!["h".into()],
            max_concurrent_attempts: 1,
            ..pb::Register::default()
        }
    }

    fn refusal(register: pb::Register) -> String {
        match validate_registration(register, &unbounded_bytes()) {
            Err(ApiError::InvalidArgument(message) | ApiError::ResourceExhausted(message)) => {
                message
            }
            other => panic!("expected INVALID_ARGUMENT or RESOURCE_EXHAUSTED, got {other:?}"),
        }
    }

    /// The protocol's limits alone, so that each case meets its own.
    fn unbounded_bytes() -> RegisterLimits {
        RegisterLimits {
            max_bytes: usize::MAX,
            ..RegisterLimits::default()
        }
    }

    #[test]
    fn sizes_are_resource_exhausted_naming_the_limit_and_the_excess() {
        let many = pb::Register {
            handlers: (0..11).map(|n| format!("h{n}")).collect(),
            ..register()
        };
        let limits = RegisterLimits {
            max_handlers: 10,
            max_bytes: 1024,
        };
        match validate_registration(many, &limits) {
            Err(ApiError::ResourceExhausted(message)) => assert_eq!(
                message,
                "register.handlers has 11 handlers, over the limit of 10 by 1"
            ),
            other => panic!("expected RESOURCE_EXHAUSTED, got {other:?}"),
        }
        let large = pb::Register {
            name: "n".repeat(2_000),
            ..register()
        };
        match validate_registration(large, &limits) {
            Err(ApiError::ResourceExhausted(message)) => {
                assert!(message.starts_with("register is 20"), "{message}");
                assert!(
                    message.contains("over the max_register_bytes limit of 1024 bytes by"),
                    "{message}"
                );
            }
            other => panic!("expected RESOURCE_EXHAUSTED, got {other:?}"),
        }
    }

    #[test]
    fn capacity_zero_registers_a_drained_executor() {
        let registration = validate_registration(
            pb::Register {
                max_concurrent_attempts: 0,
                ..register()
            },
            &RegisterLimits::default(),
        )
        .expect("valid");
        assert_eq!(registration.capacity, 0);
    }

    #[test]
    fn every_limit_names_its_field() {
        let cases = [
            (
                pb::Register {
                    instance_id: String::new(),
                    ..register()
                },
                "register.instance_id is missing",
            ),
            (
                pb::Register {
                    instance_id: "i".repeat(129),
                    ..register()
                },
                "register.instance_id is 129 bytes, over the limit of 128",
            ),
            (
                pb::Register {
                    name: "a\0b".into(),
                    ..register()
                },
                "register.name contains U+0000, which the server does not store",
            ),
            (
                pb::Register {
                    handlers: (0..100_001).map(|n| format!("h{n}")).collect(),
                    ..register()
                },
                "register.handlers has 100001 handlers, over the limit of 100000 by 1",
            ),
            (
                pb::Register {
                    max_concurrent_attempts: 10_001,
                    ..register()
                },
                "register.max_concurrent_attempts must be between 0 and 10000, got 10001",
            ),
            (
                pb::Register {
                    labels: (0..65).map(|n| (format!("k{n}"), String::new())).collect(),
                    ..register()
                },
                "register.labels has 65 labels, over the limit of 64",
            ),
            (
                pb::Register {
                    labels: [("gpu".to_owned(), "a\0".to_owned())].into(),
                    ..register()
                },
                "register.labels value of \"gpu\" contains U+0000",
            ),
            (
                pb::Register {
                    held_attempt_ids: vec!["x".repeat(65)],
                    ..register()
                },
                "an id of register.held_attempt_ids is 65 bytes, over the limit of 64",
            ),
        ];
        for (register, expected) in cases {
            assert_eq!(refusal(register), expected);
        }
    }

    #[test]
    fn a_bad_handler_is_quoted_only_in_part() {
        let message = refusal(pb::Register {
            handlers: vec!["!".repeat(10_000)],
            ..register()
        });
        assert!(message.len() < 300, "{message}");
        assert!(message.contains("register.handlers"));
    }

    #[test]
    fn results_with_content_no_database_stores_alike_are_rejected() {
        let completed = |set_json: &str, removed: &[&str]| pb::Completed {
            attempt_id: "a".into(),
            set_json: set_json.into(),
            removed_keys: removed.iter().map(|key| (*key).to_owned()).collect(),
        };
        let reasons = [
            (
                completed(r#"{"\u0000": 1}"#, &[]),
                "completed.set_json has a key containing U+0000",
            ),
            (
                completed("{}", &["a\0"]),
                "completed.removed_keys has a key containing U+0000",
            ),
            (completed("[1]", &[]), "completed.set_json is invalid"),
            (
                completed(r#"{"k": 1}"#, &["k"]),
                "completed both sets and removes the key \"k\"",
            ),
            (
                completed(&format!("{{\"k\": \"{}\"}}", "x".repeat(100)), &[]),
                "over the max_context_bytes limit of 64 bytes",
            ),
        ];
        for (completed, expected) in reasons {
            match completed_event(completed, 64) {
                ExecutorEvent::Rejected { reason, .. } => {
                    assert!(
                        reason.contains(expected),
                        "{reason:?} should contain {expected:?}"
                    );
                }
                other => panic!("expected a rejection, got {other:?}"),
            }
        }
        let escaped_nul_in_a_value = completed(r#"{"k": "a\u0000b"}"#, &[]);
        assert!(matches!(
            completed_event(escaped_nul_in_a_value, 64),
            ExecutorEvent::Completed { .. }
        ));
    }

    #[test]
    fn failure_messages_are_kept_whole_cut_or_rejected() {
        let failed = |message: String| pb::Failed {
            attempt_id: "a".into(),
            message,
            non_retryable: false,
        };
        match failed_event(failed("bad \0 byte".into())) {
            ExecutorEvent::Rejected { reason, .. } => {
                assert_eq!(reason, "failed.message contains U+0000");
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
        match failed_event(failed("é".repeat(MAX_FAILURE_MESSAGE_BYTES))) {
            ExecutorEvent::Failed {
                message, retryable, ..
            } => {
                assert_eq!(message.len(), MAX_FAILURE_MESSAGE_BYTES);
                assert!(retryable);
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn only_plausible_attempt_ids_reach_the_database() {
        assert!(is_plausible_attempt_id(
            "0193a3c4-5b6e-7f00-8000-000000000000"
        ));
        assert!(!is_plausible_attempt_id(""));
        assert!(!is_plausible_attempt_id("a\0"));
        assert!(!is_plausible_attempt_id(&"a".repeat(65)));
    }
}
