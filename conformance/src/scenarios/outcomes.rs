//! Scenarios about what handlers return: exact values, retries, failures,
//! panics, large contexts and the Context operations.

use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use tributary_proto::v1 as pb;

use super::{task, workflow};
use crate::checks;
use crate::ensure;
use crate::harness::Harness;
use crate::json::Json;
use crate::log::{self, EventKind};

/// `conformance/values.json`, built into the runner.
const VALUES: &str = include_str!("../../values.json");

/// `tests/vectors/context_ops.json`, built into the runner.
const CONTEXT_OPS: &str = include_str!("../../../tests/vectors/context_ops.json");

/// `echo` round-trips every value of `values.json` exactly; without `echo_in` it fails at once.
pub async fn echo_lossless(harness: &mut Harness) -> Result<(), String> {
    #[derive(Deserialize)]
    struct Values {
        values: Vec<Box<RawValue>>,
    }
    let values: Values =
        serde_json::from_str(VALUES).map_err(|error| format!("values.json: {error}"))?;
    harness.spawn_worker("worker-1", 4, 0).await?;
    // Retries allowed, so that the missing-key failure shows it is
    // non-retryable.
    harness
        .register(workflow(
            "echo",
            vec![task("echo", "echo", &[], json!({"retry_attempts": 2}))],
        ))
        .await?;
    let mut runs = Vec::new();
    for value in &values.values {
        let input = format!(r#"{{"echo_in":{}}}"#, value.get());
        runs.push((value, harness.start_run("echo", &input).await?));
    }
    let missing = harness.start_run("echo", r#"{"other":1}"#).await?;
    for (value, run_id) in runs {
        let run = harness.wait_run(&run_id).await?;
        let expected = Json::parse(value.get())?;
        let stored_input = checks::context(&pb::Run {
            context_json: run.input_context_json.clone(),
            ..pb::Run::default()
        })?;
        ensure!(
            stored_input.get("echo_in") == Some(&expected),
            "the server altered the run input {}: stored {}",
            expected.brief(120),
            crate::json::brief(&run.input_context_json, 200)
        );
        checks::status(&run, pb::RunStatus::Succeeded)
            .map_err(|error| format!("echo of {}: {error}", expected.brief(120)))?;
        let found = checks::output(&run, "echo_out")?;
        ensure!(
            found == expected,
            "echo_out differs from echo_in: sent {}, got {}",
            expected.brief(200),
            found.brief(200)
        );
    }
    let run = harness.wait_run(&missing).await?;
    let failed = checks::task_outcome(&run, "echo", pb::TaskState::Failed, 1)
        .map_err(|error| format!("echo without echo_in must fail without retry: {error}"))?;
    ensure!(
        failed.error.contains("echo_in"),
        "the failure of echo without echo_in must name the key, got {:?}",
        failed.error
    );
    Ok(())
}

/// `fail_once` succeeds on its retry, after the retry delay.
pub async fn retry_then_succeed(harness: &mut Harness) -> Result<(), String> {
    const DELAY_MS: i64 = 500;
    harness.spawn_worker("worker-1", 4, 0).await?;
    let settings =
        json!({"retry_attempts": 1, "retry_delay_ms": DELAY_MS, "retry_backoff": "fixed"});
    harness
        .register(workflow(
            "retry",
            vec![task("flaky", "fail_once", &[], settings)],
        ))
        .await?;
    let run_id = harness.start_run("retry", "{}").await?;
    let run = harness.wait_run(&run_id).await?;
    checks::status(&run, pb::RunStatus::Succeeded)?;
    let flaky = checks::task_outcome(&run, "flaky", pb::TaskState::Succeeded, 2)?;
    let (first, second) = (&flaky.attempts[0], &flaky.attempts[1]);
    ensure!(
        first.state() == pb::AttemptState::Failed && first.error.contains("fail_once: attempt 1"),
        "attempt 1 must fail with \"fail_once: attempt 1\", got {}",
        checks::summary(&run)
    );
    checks::output_equals(&run, "fail_once_attempt", "2")?;
    let gap = checks::millis_between(first.finished_at.as_ref(), second.assigned_at.as_ref())
        .ok_or("the attempts lack finished_at/assigned_at timestamps")?;
    ensure!(
        gap >= DELAY_MS - 5,
        "attempt 2 was assigned {gap} ms after attempt 1 failed, before the retry delay of {DELAY_MS} ms"
    );
    let events = harness.log()?;
    let starts: Vec<_> = log::events(&events, EventKind::Start, "fail_once")
        .map(|event| event.attempt_id.as_str())
        .collect();
    ensure!(
        starts == [first.id.as_str(), second.id.as_str()],
        "the log must show one start per attempt ({}, {}), got {starts:?}",
        first.id,
        second.id
    );
    Ok(())
}

/// `fail_always` uses up its retries; its dependant is skipped.
pub async fn retry_exhausted_and_skip(harness: &mut Harness) -> Result<(), String> {
    harness.spawn_worker("worker-1", 4, 0).await?;
    let settings = json!({"retry_attempts": 2, "retry_delay_ms": 100, "retry_backoff": "fixed"});
    harness
        .register(workflow(
            "exhaust",
            vec![
                task("doomed", "fail_always", &[], settings),
                task("after", "echo", &["doomed"], json!({})),
            ],
        ))
        .await?;
    let run_id = harness.start_run("exhaust", r#"{"echo_in":1}"#).await?;
    let run = harness.wait_run(&run_id).await?;
    checks::status(&run, pb::RunStatus::Failed)?;
    let doomed = checks::task_outcome(&run, "doomed", pb::TaskState::Failed, 3)?;
    for (index, attempt) in doomed.attempts.iter().enumerate() {
        let message = format!("fail_always: attempt {}", index + 1);
        ensure!(
            attempt.error.contains(&message),
            "attempt {} must fail with {message:?}, got {:?}",
            index + 1,
            attempt.error
        );
    }
    checks::task_outcome(&run, "after", pb::TaskState::Skipped, 0)?;
    Ok(())
}

/// `fail_fatal` is not retried.
pub async fn non_retryable(harness: &mut Harness) -> Result<(), String> {
    harness.spawn_worker("worker-1", 4, 0).await?;
    harness
        .register(workflow(
            "fatal",
            vec![task(
                "fatal",
                "fail_fatal",
                &[],
                json!({"retry_attempts": 3}),
            )],
        ))
        .await?;
    let run_id = harness.start_run("fatal", "{}").await?;
    let run = harness.wait_run(&run_id).await?;
    checks::status(&run, pb::RunStatus::Failed)?;
    let fatal = checks::task_outcome(&run, "fatal", pb::TaskState::Failed, 1)?;
    ensure!(
        fatal.error.contains("fail_fatal"),
        "the failure must say \"fail_fatal\", got {:?}",
        fatal.error
    );
    Ok(())
}

/// A panic/exception is a failed attempt and the worker lives on.
pub async fn throw_reported(harness: &mut Harness) -> Result<(), String> {
    harness.spawn_worker("worker-1", 4, 0).await?;
    harness
        .register(workflow(
            "throw",
            vec![task("throw", "throw", &[], json!({}))],
        ))
        .await?;
    harness
        .register(workflow("echo", vec![task("echo", "echo", &[], json!({}))]))
        .await?;
    let run_id = harness.start_run("throw", "{}").await?;
    let run = harness.wait_run(&run_id).await?;
    checks::status(&run, pb::RunStatus::Failed)?;
    let thrown = checks::task_outcome(&run, "throw", pb::TaskState::Failed, 1)?;
    ensure!(
        thrown.error.contains("throw: boom"),
        "the failure must contain \"throw: boom\", got {:?}",
        thrown.error
    );
    let run_id = harness.start_run("echo", r#"{"echo_in":"after"}"#).await?;
    let run = harness.wait_run(&run_id).await?;
    checks::status(&run, pb::RunStatus::Succeeded)
        .map_err(|error| format!("echo after throw: {error}"))?;
    checks::output_equals(&run, "echo_out", r#""after""#)?;
    let events = harness.log()?;
    let pids: std::collections::BTreeSet<u32> = events.iter().map(|event| event.pid).collect();
    ensure!(
        pids.len() == 1,
        "throw and the following echo must run in the same worker process, the log shows processes {pids:?}"
    );
    Ok(())
}

/// A 10 MB value travels to a downstream task intact.
pub async fn big_context(harness: &mut Harness) -> Result<(), String> {
    const BIG_BYTES: u64 = 10_000_000;
    harness.spawn_worker("worker-1", 2, 0).await?;
    harness
        .register(workflow(
            "big",
            vec![
                task("produce", "big", &[], json!({})),
                task("measure", "measure", &["produce"], json!({})),
            ],
        ))
        .await?;
    let run_id = harness
        .start_run("big", &json!({"big_bytes": BIG_BYTES}).to_string())
        .await?;
    let run = harness.wait_run(&run_id).await?;
    checks::status(&run, pb::RunStatus::Succeeded)?;
    let measured = checks::output(&run, "measured")?;
    let big = measured.get("big").and_then(Json::as_u64);
    ensure!(
        big == Some(BIG_BYTES + 2),
        "expected measured.big = {}, got {}",
        BIG_BYTES + 2,
        measured.brief(200)
    );
    Ok(())
}

/// The shared Context-operation vectors through `vector`.
pub async fn vectors(harness: &mut Harness) -> Result<(), String> {
    #[derive(Deserialize)]
    struct Vectors<'a> {
        #[serde(borrow)]
        cases: Vec<Case<'a>>,
    }
    #[derive(Deserialize)]
    struct Case<'a> {
        name: String,
        #[serde(borrow)]
        input: &'a RawValue,
        ops: &'a RawValue,
        data: &'a RawValue,
        set: &'a RawValue,
        removed: &'a RawValue,
        errors: &'a RawValue,
    }
    let vectors: Vectors =
        serde_json::from_str(CONTEXT_OPS).map_err(|error| format!("context_ops.json: {error}"))?;
    harness.spawn_worker("worker-1", 4, 0).await?;
    harness
        .register(workflow(
            "vector",
            vec![task("vector", "vector", &[], json!({}))],
        ))
        .await?;
    let mut runs = Vec::new();
    for case in &vectors.cases {
        let input = format!(
            r#"{{"vector_input":{},"vector_ops":{}}}"#,
            case.input.get(),
            case.ops.get()
        );
        runs.push((case, harness.start_run("vector", &input).await?));
    }
    for (case, run_id) in runs {
        let run = harness.wait_run(&run_id).await?;
        checks::status(&run, pb::RunStatus::Succeeded)
            .map_err(|error| format!("case {}: {error}", case.name))?;
        let expected = Json::parse(&format!(
            r#"{{"data":{},"set":{},"removed":{},"errors":{}}}"#,
            case.data.get(),
            case.set.get(),
            case.removed.get(),
            case.errors.get()
        ))?;
        let found = checks::output(&run, "vector_result")?;
        ensure!(
            found == expected,
            "case {}: expected {}, got {}",
            case.name,
            expected.brief(400),
            found.brief(400)
        );
    }
    Ok(())
}
