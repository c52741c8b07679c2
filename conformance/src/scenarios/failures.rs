//! Scenarios where a process fails under a running attempt: the worker is
//! killed, the worker freezes past its lease, the server crashes.

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;
use tributary_proto::v1 as pb;

use super::{started_attempt, task, workflow};
use crate::checks;
use crate::ensure;
use crate::harness::Harness;
use crate::log::{self, EventKind};

/// How long the runner waits for a handler to show up in the log.
const LOG_WAIT: Duration = Duration::from_secs(15);

/// A killed worker's attempt is re-run elsewhere without consuming a retry.
pub async fn worker_killed(harness: &mut Harness) -> Result<(), String> {
    let first = harness.spawn_worker("worker-1", 1, 0).await?;
    harness
        .register(workflow(
            "killed",
            vec![task("sleep", "sleep", &[], json!({}))],
        ))
        .await?;
    let run_id = harness.start_run("killed", r#"{"sleep_ms":2000}"#).await?;
    let events = harness
        .wait_log("a start of sleep", LOG_WAIT, |events| {
            started_attempt(events, "sleep", &[]).is_some()
        })
        .await?;
    let (killed_attempt, killed_pid) = started_attempt(&events, "sleep", &[]).ok_or("no start")?;
    harness.kill_worker(first).await;
    harness.spawn_worker("worker-2", 1, 0).await?;
    let run = harness.wait_run(&run_id).await?;
    checks::status(&run, pb::RunStatus::Succeeded)?;
    let sleep =
        checks::task_outcome(&run, "sleep", pb::TaskState::Succeeded, 2).map_err(|error| {
            format!("{error} (retry_attempts is 0: the loss must not consume a retry)")
        })?;
    ensure!(
        sleep.attempts[0].id == killed_attempt
            && sleep.attempts[0].state() == pb::AttemptState::Lost,
        "the killed worker's attempt must be LOST: {}",
        checks::summary(&run)
    );
    let events = harness.log()?;
    let rerun = log::events(&events, EventKind::Start, "sleep")
        .find(|event| event.attempt_id == sleep.attempts[1].id)
        .ok_or("the log shows no start of the second attempt")?;
    ensure!(
        rerun.pid != killed_pid,
        "the second attempt must run in the restarted worker, not in process {killed_pid}"
    );
    checks::output_equals(&run, "slept_ms", "2000")?;
    Ok(())
}

/// A worker frozen past its lease loses the attempt; its late result is not applied.
pub async fn worker_stopped_past_lease(harness: &mut Harness) -> Result<(), String> {
    let lease = Duration::from_millis(harness.server.options().lease_timeout_ms);
    // Long enough to outlast the lease, so that the frozen worker's sleep is
    // over when it thaws while the second worker still runs its attempt.
    let sleep = 2 * lease;
    let frozen = harness.spawn_worker("worker-frozen", 1, 0).await?;
    harness
        .register(workflow(
            "frozen",
            vec![task("sleep", "sleep", &[], json!({}))],
        ))
        .await?;
    let input = json!({"sleep_ms": sleep.as_millis() as u64}).to_string();
    let run_id = harness.start_run("frozen", &input).await?;
    let events = harness
        .wait_log("a start of sleep", LOG_WAIT, |events| {
            started_attempt(events, "sleep", &[]).is_some()
        })
        .await?;
    let first_started = Instant::now();
    let (frozen_attempt, _) = started_attempt(&events, "sleep", &[]).ok_or("no start")?;
    harness.signal_worker(frozen, libc::SIGSTOP)?;
    let outcome = async {
        harness.spawn_worker("worker-second", 1, 0).await?;
        let events = harness
            .wait_log(
                "the task reassigned to the second worker",
                LOG_WAIT + lease,
                |events| started_attempt(events, "sleep", &[frozen_attempt.as_str()]).is_some(),
            )
            .await?;
        let (second_attempt, _) =
            started_attempt(&events, "sleep", &[frozen_attempt.as_str()]).ok_or("no start")?;
        tokio::time::sleep_until(first_started + sleep + Duration::from_millis(200)).await;
        Ok::<_, String>(second_attempt)
    }
    .await;
    // Thaw the worker whatever happened, so that it can be killed cleanly.
    harness.signal_worker(frozen, libc::SIGCONT)?;
    let second_attempt = outcome?;
    let run = harness.wait_run(&run_id).await?;
    checks::status(&run, pb::RunStatus::Succeeded)?;
    let task = checks::task(&run, "sleep")?;
    let succeeded: Vec<&pb::Attempt> = task
        .attempts
        .iter()
        .filter(|attempt| attempt.state() == pb::AttemptState::Succeeded)
        .collect();
    ensure!(
        succeeded.len() == 1 && succeeded[0].id == second_attempt,
        "exactly the second worker's attempt {second_attempt} must succeed: {}",
        checks::summary(&run)
    );
    let frozen_state = task
        .attempts
        .iter()
        .find(|attempt| attempt.id == frozen_attempt)
        .map(|attempt| attempt.state())
        .ok_or("the frozen worker's attempt is missing from GetRun")?;
    ensure!(
        frozen_state == pb::AttemptState::Lost,
        "the frozen worker's attempt must be LOST, got {}",
        frozen_state.as_str_name()
    );
    Ok(())
}

/// After a server crash the worker reclaims its running attempt.
pub async fn server_restart_reclaims(harness: &mut Harness) -> Result<(), String> {
    harness.spawn_worker("worker-1", 1, 0).await?;
    harness
        .register(workflow(
            "restart",
            vec![task("sleep", "sleep", &[], json!({}))],
        ))
        .await?;
    let run_id = harness.start_run("restart", r#"{"sleep_ms":3000}"#).await?;
    let events = harness
        .wait_log("a start of sleep", LOG_WAIT, |events| {
            started_attempt(events, "sleep", &[]).is_some()
        })
        .await?;
    let (attempt_id, _) = started_attempt(&events, "sleep", &[]).ok_or("no start")?;
    harness.server.restart().await?;
    let run = harness.wait_run(&run_id).await?;
    checks::status(&run, pb::RunStatus::Succeeded)?;
    let sleep = checks::task_outcome(&run, "sleep", pb::TaskState::Succeeded, 1)
        .map_err(|error| format!("{error} (the held attempt must be reclaimed, not re-run)"))?;
    ensure!(
        sleep.attempts[0].id == attempt_id,
        "the succeeded attempt is not the one that was running"
    );
    let events = harness.log()?;
    let starts = log::events(&events, EventKind::Start, "sleep").count();
    ensure!(
        starts == 1,
        "the log shows {starts} starts of sleep, expected 1"
    );
    checks::output_equals(&run, "slept_ms", "3000")?;
    Ok(())
}
