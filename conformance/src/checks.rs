//! Checks on what `GetRun` returned, each failing with a sentence that says
//! what was expected and what was found.

use tributary_proto::v1 as pb;

use crate::json::Json;

/// Fails with a formatted message unless `condition` holds.
#[macro_export]
macro_rules! ensure {
    ($condition:expr, $($message:tt)+) => {
        if !$condition {
            return Err(format!($($message)+));
        }
    };
}

/// A short description of a run: its status and each task's state and
/// attempts.
pub fn summary(run: &pb::Run) -> String {
    let tasks: Vec<String> = run
        .tasks
        .iter()
        .map(|task| {
            let attempts: Vec<String> = task
                .attempts
                .iter()
                .map(|attempt| {
                    let state = attempt
                        .state()
                        .as_str_name()
                        .trim_start_matches("ATTEMPT_STATE_");
                    if attempt.error.is_empty() {
                        state.to_owned()
                    } else {
                        format!("{state} ({})", crate::json::brief(&attempt.error, 120))
                    }
                })
                .collect();
            format!(
                "{} {} [{}]",
                task.task_id,
                task.state().as_str_name().trim_start_matches("TASK_STATE_"),
                attempts.join(", ")
            )
        })
        .collect();
    format!(
        "run {}; {}",
        run.status().as_str_name().trim_start_matches("RUN_STATUS_"),
        tasks.join("; ")
    )
}

/// Expects the run's status.
pub fn status(run: &pb::Run, expected: pb::RunStatus) -> Result<(), String> {
    ensure!(
        run.status() == expected,
        "expected run {}, got {}",
        expected.as_str_name().trim_start_matches("RUN_STATUS_"),
        summary(run)
    );
    Ok(())
}

/// The task `task_id` of the run.
pub fn task<'a>(run: &'a pb::Run, task_id: &str) -> Result<&'a pb::TaskRun, String> {
    run.tasks
        .iter()
        .find(|task| task.task_id == task_id)
        .ok_or_else(|| format!("the run has no task {task_id:?}"))
}

/// Expects the task's state and number of attempts; returns the task.
pub fn task_outcome<'a>(
    run: &'a pb::Run,
    task_id: &str,
    state: pb::TaskState,
    attempts: usize,
) -> Result<&'a pb::TaskRun, String> {
    let found = task(run, task_id)?;
    ensure!(
        found.state() == state && found.attempts.len() == attempts,
        "expected task {task_id} {} after {attempts} attempt(s), got {}",
        state.as_str_name().trim_start_matches("TASK_STATE_"),
        summary(run)
    );
    Ok(found)
}

/// The run's final context, with exact numbers.
pub fn context(run: &pb::Run) -> Result<Json, String> {
    Json::parse(&run.context_json).map_err(|error| format!("the run's context: {error}"))
}

/// The context value under `key`.
pub fn output(run: &pb::Run, key: &str) -> Result<Json, String> {
    context(run)?.get(key).cloned().ok_or_else(|| {
        format!(
            "the run's context has no {key:?}: {}",
            crate::json::brief(&run.context_json, 300)
        )
    })
}

/// Expects the context value under `key` to equal `expected` (JSON text).
pub fn output_equals(run: &pb::Run, key: &str, expected: &str) -> Result<(), String> {
    let found = output(run, key)?;
    let expected = Json::parse(expected)?;
    ensure!(
        found == expected,
        "expected {key} = {}, got {}",
        expected.brief(300),
        found.brief(300)
    );
    Ok(())
}

/// Milliseconds between two timestamps (negative if `to` is earlier).
pub fn millis_between(
    from: Option<&prost_types::Timestamp>,
    to: Option<&prost_types::Timestamp>,
) -> Option<i64> {
    Some(
        tributary_proto::unix_ms_from_timestamp(to?)
            - tributary_proto::unix_ms_from_timestamp(from?),
    )
}
