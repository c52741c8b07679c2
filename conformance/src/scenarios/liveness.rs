//! Scenarios about a worker staying alive and in control: cancellation and
//! timeouts reaching the handler, heartbeats during long and CPU-bound
//! handlers, bounded concurrency, and the graceful drain.

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;
use tributary_proto::v1 as pb;

use super::{started_attempt, task, workflow};
use crate::checks;
use crate::ensure;
use crate::harness::Harness;
use crate::log::{self, EventKind};
use crate::process::{POLL, describe_status};

/// How long the runner waits for a handler to show up in the log.
const LOG_WAIT: Duration = Duration::from_secs(15);

/// Cancelling a run reaches the handler's code.
pub async fn cancel_reaches_code(harness: &mut Harness) -> Result<(), String> {
    harness.spawn_worker("worker-1", 2, 0).await?;
    harness
        .register(workflow(
            "wait",
            vec![task("wait", "wait_cancel", &[], json!({}))],
        ))
        .await?;
    let run_id = harness.start_run("wait", "{}").await?;
    let events = harness
        .wait_log("a start of wait_cancel", LOG_WAIT, |events| {
            started_attempt(events, "wait_cancel", &[]).is_some()
        })
        .await?;
    let (attempt_id, _) = started_attempt(&events, "wait_cancel", &[]).ok_or("no start")?;
    harness.cancel_run(&run_id).await?;
    let run = harness.wait_run(&run_id).await?;
    checks::status(&run, pb::RunStatus::Cancelled)?;
    harness
        .wait_log(
            "`cancelled` then `end` for the attempt",
            LOG_WAIT,
            |events| {
                log::has(events, EventKind::Cancelled, &attempt_id)
                    && log::has(events, EventKind::End, &attempt_id)
            },
        )
        .await?;
    Ok(())
}

/// A timed-out attempt is cancelled in the handler's code.
pub async fn timeout_cancels(harness: &mut Harness) -> Result<(), String> {
    harness.spawn_worker("worker-1", 2, 0).await?;
    harness
        .register(workflow(
            "timeout",
            vec![task("wait", "wait_cancel", &[], json!({"timeout_ms": 500}))],
        ))
        .await?;
    let run_id = harness.start_run("timeout", "{}").await?;
    let run = harness.wait_run(&run_id).await?;
    checks::status(&run, pb::RunStatus::Failed)?;
    let wait = checks::task_outcome(&run, "wait", pb::TaskState::Failed, 1)?;
    let attempt = &wait.attempts[0];
    ensure!(
        attempt.state() == pb::AttemptState::TimedOut,
        "expected the attempt TIMED_OUT, got {}",
        checks::summary(&run)
    );
    let attempt_id = attempt.id.clone();
    harness
        .wait_log(
            "`cancelled` for the timed-out attempt",
            LOG_WAIT,
            |events| log::has(events, EventKind::Cancelled, &attempt_id),
        )
        .await?;
    Ok(())
}

/// Long sleeping handlers keep their lease.
pub async fn slow_heartbeats(harness: &mut Harness) -> Result<(), String> {
    let sleep_ms = 3 * harness.server.options().lease_timeout_ms;
    long_handler(
        harness,
        "sleep",
        json!({"sleep_ms": sleep_ms}),
        "slept_ms",
        sleep_ms,
    )
    .await
}

/// Long CPU-bound handlers keep their lease.
pub async fn cpu_heartbeats(harness: &mut Harness) -> Result<(), String> {
    let spin_ms = 3 * harness.server.options().lease_timeout_ms;
    long_handler(
        harness,
        "spin",
        json!({"spin_ms": spin_ms}),
        "spun_ms",
        spin_ms,
    )
    .await
}

/// Handlers running for three lease timeouts, as many at once as the
/// worker's capacity (so that every slot is busy), succeed on their first
/// attempts, each run once.
async fn long_handler(
    harness: &mut Harness,
    handler: &str,
    input: serde_json::Value,
    output: &str,
    duration_ms: u64,
) -> Result<(), String> {
    const CAPACITY: usize = 2;
    harness.spawn_worker("worker-1", CAPACITY as u32, 0).await?;
    let tasks = (1..=CAPACITY)
        .map(|index| task(&format!("long_{index}"), handler, &[], json!({})))
        .collect();
    harness.register(workflow("long", tasks)).await?;
    let run_id = harness.start_run("long", &input.to_string()).await?;
    let run = harness.wait_run(&run_id).await?;
    checks::status(&run, pb::RunStatus::Succeeded)?;
    for index in 1..=CAPACITY {
        checks::task_outcome(&run, &format!("long_{index}"), pb::TaskState::Succeeded, 1)
            .map_err(|error| format!("{error} (the lease was lost: no reassignment expected)"))?;
    }
    checks::output_equals(&run, output, &duration_ms.to_string())?;
    let events = harness.log()?;
    let starts = log::events(&events, EventKind::Start, handler).count();
    ensure!(
        starts == CAPACITY,
        "the log shows {starts} starts of {handler}, expected {CAPACITY}"
    );
    Ok(())
}

/// The worker never runs more attempts at once than its capacity.
pub async fn capacity(harness: &mut Harness) -> Result<(), String> {
    const CAPACITY: usize = 3;
    const TASKS: usize = 12;
    harness.spawn_worker("worker-1", CAPACITY as u32, 0).await?;
    let tasks = (1..=TASKS)
        .map(|index| task(&format!("sleep_{index:02}"), "sleep", &[], json!({})))
        .collect();
    harness.register(workflow("fan", tasks)).await?;
    let run_id = harness.start_run("fan", r#"{"sleep_ms":300}"#).await?;
    let run = harness.wait_run(&run_id).await?;
    checks::status(&run, pb::RunStatus::Succeeded)?;
    let events = harness.log()?;
    let starts = log::events(&events, EventKind::Start, "sleep").count();
    ensure!(
        starts == TASKS,
        "the log shows {starts} starts of sleep, expected {TASKS}"
    );
    let errors = log::pairing_errors(&events);
    ensure!(
        errors.is_empty(),
        "the log is inconsistent: {}",
        errors.join("; ")
    );
    for (pid, most) in log::max_concurrency(&events) {
        ensure!(
            most <= CAPACITY,
            "process {pid} ran {most} attempts at once, over its capacity of {CAPACITY}"
        );
    }
    Ok(())
}

/// SIGTERM drains: no new work, the running attempt finishes and is committed, exit 0.
pub async fn graceful_drain(harness: &mut Harness) -> Result<(), String> {
    let worker = harness.spawn_worker("worker-1", 2, 0).await?;
    harness
        .register(workflow(
            "drain",
            vec![task("sleep", "sleep", &[], json!({}))],
        ))
        .await?;
    let run_id = harness.start_run("drain", r#"{"sleep_ms":2000}"#).await?;
    let events = harness
        .wait_log("a start of sleep", LOG_WAIT, |events| {
            started_attempt(events, "sleep", &[]).is_some()
        })
        .await?;
    let (attempt_id, pid) = started_attempt(&events, "sleep", &[]).ok_or("no start")?;
    // To the worker process only: `sh -c` dies of SIGTERM instead of
    // waiting for the worker, and the worker's own helper processes are its
    // business.
    harness.signal_worker_process(worker, pid, libc::SIGTERM)?;
    // Once the worker has said it takes no more work, a new run must wait.
    wait_drained(harness, "worker-1").await?;
    let second_run = harness.start_run("drain", r#"{"sleep_ms":1}"#).await?;
    let status = harness
        .wait_worker_exit(worker, Duration::from_secs(45))
        .await
        .ok_or("the worker did not exit within 45 s of SIGTERM")?;
    ensure!(
        status.success(),
        "the worker must exit 0 after draining, it ended with {}",
        describe_status(status)
    );
    // The result was acknowledged before the worker exited, and the server
    // acknowledges only after the commit.
    let run = harness.get_run(&run_id).await?;
    checks::task_outcome(&run, "sleep", pb::TaskState::Succeeded, 1)
        .map_err(|error| format!("the drained attempt's result was not committed: {error}"))?;
    checks::output_equals(&run, "slept_ms", "2000")?;
    let events = harness.log()?;
    ensure!(
        log::has(&events, EventKind::End, &attempt_id)
            && !log::has(&events, EventKind::Cancelled, &attempt_id),
        "the drained attempt must end without being cancelled"
    );
    let second = harness.get_run(&second_run).await?;
    let second_task = checks::task(&second, "sleep")?;
    ensure!(
        second_task.attempts.is_empty(),
        "a draining worker took new work: {}",
        checks::summary(&second)
    );
    Ok(())
}

/// Waits until the server lists the worker with capacity 0.
async fn wait_drained(harness: &Harness, name: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let executors = harness.executors().await?;
        if executors
            .iter()
            .any(|executor| executor.name == name && executor.max_concurrent_attempts == 0)
        {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "after SIGTERM the server does not list {name} with capacity 0 (CapacityChanged 0 not sent?)"
        );
        tokio::time::sleep(POLL).await;
    }
}
