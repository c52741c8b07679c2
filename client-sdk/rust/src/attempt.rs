//! One attempt, from its input to its result message: the handler runs in
//! its own task, so that a panic becomes a failed attempt and a
//! cancellation can drop it.

use std::sync::Arc;

use serde_json::Value;
use serde_json::value::RawValue;
use tokio::task::AbortHandle;
use tributary_proto::v1 as pb;
use tributary_proto::v1::connect_request::Message as ToServer;

use crate::context::Context;
use crate::worker::Cancellation;
use crate::workflow::Handler;

/// Context values by key, as JSON text shared with the value cache.
pub(crate) type RawValues = Vec<(String, Arc<RawValue>)>;

/// Aborts a spawned task when dropped, so aborting an attempt's supervisor
/// also stops the task it supervises.
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why an attempt has no input context.
pub(crate) enum AttemptInputError {
    /// The server sent something that is not a context.
    Invalid(crate::ContextError),
    /// A referenced value is gone from the server (its run ended).
    Unavailable(String),
}

/// Runs one attempt to its result message (the handler's outcome, a panic,
/// or a cancellation) and, with `keep_values`, the values it set.
pub(crate) async fn run_attempt(
    attempt_id: &str,
    handler: Option<Handler>,
    context: Result<Context<Value>, AttemptInputError>,
    cancellation: Cancellation,
    keep_values: bool,
) -> (ToServer, Option<RawValues>) {
    let failed = |message: String, retryable: bool| {
        ToServer::Failed(pb::Failed {
            attempt_id: attempt_id.to_owned(),
            message,
            non_retryable: !retryable,
        })
    };
    let Some(handler) = handler else {
        return (
            failed("this worker has no handler for the task".to_owned(), false),
            None,
        );
    };
    let mut context = match context {
        Ok(context) => context,
        Err(AttemptInputError::Invalid(error)) => {
            return (
                failed(format!("invalid input context: {error}"), false),
                None,
            );
        }
        Err(AttemptInputError::Unavailable(message)) => return (failed(message, true), None),
    };
    context.set_cancellation(cancellation.clone());
    let task = tokio::spawn(async move {
        let outcome = handler(&mut context).await;
        (context, outcome)
    });
    let _guard = AbortOnDrop(task.abort_handle());
    let abort = task.abort_handle();
    let encode_failed =
        |error: serde_json::Error| failed(format!("the context cannot be encoded: {error}"), false);
    let completed = |set_json, removed_keys| {
        ToServer::Completed(pb::Completed {
            attempt_id: attempt_id.to_owned(),
            set_json,
            removed_keys,
        })
    };
    tokio::select! {
        joined = task => match joined {
            Ok((context, Ok(()))) if keep_values => match context.delta_raw() {
                Ok((set_json, removed_keys, values)) => {
                    (completed(set_json, removed_keys), Some(values))
                }
                Err(error) => (encode_failed(error), None),
            },
            Ok((context, Ok(()))) => match context.delta_json() {
                Ok((set_json, removed_keys)) => (completed(set_json, removed_keys), None),
                Err(error) => (encode_failed(error), None),
            },
            Ok((_, Err(error))) => (failed(error.message().to_owned(), error.is_retryable()), None),
            Err(join_error) if join_error.is_panic() => (
                failed(format!("task panicked: {}", panic_message(join_error.into_panic())), true),
                None,
            ),
            Err(join_error) => (failed(format!("task was stopped: {join_error}"), true), None),
        },
        reason = cancellation.cancelled() => {
            abort.abort();
            (failed(format!("cancelled: {reason}"), true), None)
        }
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "a non-string panic payload".to_owned()
    }
}
