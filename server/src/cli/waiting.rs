//! What the CLI says about work that cannot run: a READY task's waiting
//! reason, and an executor list that is empty.

use tributary_proto::v1 as pb;

/// The last column of a task's row in `run get`: its error, or why a READY
/// task waits.
pub fn task_note(task: &pb::TaskRun) -> String {
    if task.waiting_message.is_empty() {
        task.error.clone()
    } else {
        format!("waiting: {}", task.waiting_message)
    }
}

/// A READY task's waiting reason in `run get --json`, or null.
pub fn waiting_json(task: &pb::TaskRun) -> serde_json::Value {
    match pb::WaitingReason::try_from(task.waiting_reason) {
        Ok(reason) if reason != pb::WaitingReason::Unspecified => serde_json::json!({
            "reason": reason.as_str_name().trim_start_matches("WAITING_REASON_").to_ascii_lowercase(),
            "message": task.waiting_message,
        }),
        _ => serde_json::Value::Null,
    }
}

/// What `executor list` prints instead of an empty table.
pub fn no_executors_line(namespace: &str) -> String {
    format!(
        "no executors connected in namespace {namespace:?}: tasks wait until a worker serving their handlers connects"
    )
}
