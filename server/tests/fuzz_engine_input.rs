//! Fuzzing what the server takes from outside before it reaches the
//! engine (see `fuzz/mutate.rs`): context JSON (parse, merge, size, depth)
//! and executor messages (any bytes decoded as a `ConnectRequest`, then the
//! edge's checks). Nothing panics or overflows the stack, every refusal is
//! bounded, and the size the engine accounts for a context is exactly the
//! size of the JSON it writes.

#[path = "../../fuzz/mutate.rs"]
mod mutate;

use std::path::Path;

use std::collections::HashMap;

use prost::Message;
use serde_json::value::RawValue;
use tributary_proto::v1 as pb;
use tributary_proto::v1::connect_request::Message as Inbound;
use tributary_server::api::ApiError;
use tributary_server::api::error::MAX_STATUS_MESSAGE_BYTES;
use tributary_server::api::executor_input::{
    RegisterLimits, completed_event, failed_event, validate_registration,
};
use tributary_server::dispatch::ExecutorEvent;
use tributary_server::engine::context::{Context, Delta};
use tributary_server::engine::context_size::ContextSize;

fn repository_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Longest refusal the edge writes before the status cut (every part of
/// input it quotes is cut at 64 characters).
const MAX_REASON_BYTES: usize = 1_024;

fn check_context(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let Ok(input) = Context::from_input(text) else {
        return;
    };
    let json = input.to_json();
    // Values stay raw text (a number beyond f64 survives as written), so
    // the written context is checked as an object of raw values.
    let reparsed: Result<HashMap<String, Box<RawValue>>, _> = serde_json::from_str(&json);
    assert!(reparsed.is_ok(), "{json}");
    let mut size = ContextSize::of_input(&input);
    assert_eq!(size.bytes(), json.len(), "{text:?} -> {json}");

    // The same text as the delta of a task, removing one key it may set:
    // applied, merged and sized consistently.
    let removed: Vec<String> = input
        .values()
        .take(1)
        .map(|(key, _, _)| key.to_string())
        .collect();
    let Ok(delta) = Delta::parse(text, &removed) else {
        return;
    };
    let predicted = size.with_delta(0, &delta);
    size.apply(0, &delta);
    let mut output = input.clone();
    output.apply(0, &delta);
    assert_eq!(predicted, size.bytes());
    assert_eq!(size.bytes(), output.to_json().len());
    let merged = Context::merged(&input, [&output, &input]);
    assert_eq!(merged.to_json(), output.to_json());
}

#[test]
fn contexts_parse_merge_and_size_consistently() {
    let seeds = mutate::corpus(&repository_root(), "context");
    mutate::fuzz(&seeds, check_context);
}

/// The server never parses values (they stay raw text), and skipping one
/// is iterative in serde_json: a value nested a million deep is kept as
/// written, with no recursion that could overflow the stack.
#[test]
fn deep_nesting_is_kept_raw_without_overflowing_the_stack() {
    for depth in [200, 10_000, 1_000_000] {
        let value = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let text = format!("{{\"deep\": {value}}}");
        let context = Context::from_input(&text).expect("kept raw");
        assert_eq!(context.get("deep").map(RawValue::get), Some(value.as_str()));
        let delta = Delta::parse(&text, &[]).expect("kept raw");
        assert_eq!(delta.set.len(), 1);
    }
}

fn check_reason(reason: &str) {
    assert!(
        reason.len() <= MAX_REASON_BYTES,
        "a {} byte reason: {}",
        reason.len(),
        &reason[..200]
    );
}

fn check_executor_message(bytes: &[u8]) {
    let Ok(request) = pb::ConnectRequest::decode(bytes) else {
        return;
    };
    match request.message {
        Some(Inbound::Register(register)) => {
            let limits = RegisterLimits {
                max_handlers: 1_000,
                max_bytes: 64 * 1024,
            };
            if let Err(error) = validate_registration(register, &limits) {
                assert!(matches!(
                    error,
                    ApiError::InvalidArgument(_) | ApiError::ResourceExhausted(_)
                ));
                let status = tonic::Status::from(error);
                assert!(status.message().len() <= MAX_STATUS_MESSAGE_BYTES);
                check_reason(status.message());
            }
        }
        Some(Inbound::Completed(completed)) => match completed_event(completed, 64 * 1024) {
            ExecutorEvent::Rejected { reason, .. } => check_reason(&reason),
            ExecutorEvent::Completed { delta, .. } => {
                assert!(delta.set.iter().all(|(key, _)| !key.contains('\0')));
            }
            other => panic!("a result became {other:?}"),
        },
        Some(Inbound::Failed(failed)) => match failed_event(failed) {
            ExecutorEvent::Rejected { reason, .. } => check_reason(&reason),
            ExecutorEvent::Failed { message, .. } => assert!(message.len() <= 65_536),
            other => panic!("a failure became {other:?}"),
        },
        _ => {}
    }
}

#[test]
fn executor_messages_are_decoded_and_checked_without_panics() {
    let seeds = mutate::corpus(&repository_root(), "executor_message");
    mutate::fuzz(&seeds, check_executor_message);
}
