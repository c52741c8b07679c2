//! Failures, and what the rest of a run does about them:
//!
//! ```text
//! load_orders -> process_partition_{1,2,3}, flaky -> combine_results -> publish_report -> cleanup
//! ```
//!
//! - `process_partition_2` meets an order with a negative quantity and fails
//!   with a non-retryable error: one attempt, although it may retry 3 times.
//! - `combine_results` and `publish_report` depend on it, so they are
//!   SKIPPED (upstream failed); partitions 1 and 3 succeed regardless.
//! - `cleanup` has the trigger rule `all_done`: it runs anyway.
//! - `flaky` fails retryably on its first attempt and succeeds on its
//!   second, which starts after its retry delay.
//! - The run ends FAILED, because a task FAILED.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::info;
use tributary::{Context, RunStatus, SkipReason, TaskError, TaskState, Workflow, task, workflow};

use crate::runner::{self, ExampleError, Finished, ServerArgs, state_name};

/// `flaky`'s retry delay. Fixed and without jitter, so that it is also the
/// lower bound the example checks.
pub const FLAKY_RETRY_DELAY: Duration = Duration::from_millis(300);

/// How long `flaky`'s first attempt waits for its (simulated) service before
/// failing.
const FLAKY_FIRST_CALL: Duration = Duration::from_millis(20);

/// The order that breaks partition 2.
const BAD_ORDER: u32 = 17;

/// Orders per partition.
const PARTITION_SIZE: usize = 10;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    id: u32,
    quantity: i64,
    unit_price_cents: i64,
}

#[task(id = "load_orders", retry_attempts = 2)]
async fn load_orders(context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
    let orders = (1..=30)
        .map(|id| Order {
            id,
            quantity: if id == BAD_ORDER {
                -3
            } else {
                i64::from(id % 4 + 1)
            },
            unit_price_cents: i64::from(id) * 125,
        })
        .collect::<Vec<_>>();
    context.insert("orders", json!(orders))?;
    info!("Loaded {} orders", orders.len());
    Ok(())
}

/// Partition `partition`'s revenue; an order with a negative quantity is
/// bad data, which no retry can fix.
async fn process(
    context: &mut Context<serde_json::Value>,
    partition: usize,
) -> Result<(), TaskError> {
    let orders: Vec<Order> = context.get("orders")?;
    let chunk = orders
        .chunks(PARTITION_SIZE)
        .nth(partition - 1)
        .unwrap_or_default();
    let mut revenue_cents = 0;
    for order in chunk {
        if order.quantity < 0 {
            return Err(TaskError::fatal(format!(
                "order {} has quantity {}; bad data is not retried",
                order.id, order.quantity
            )));
        }
        revenue_cents += order.quantity * order.unit_price_cents;
    }
    context.insert(format!("revenue_cents_{partition}"), json!(revenue_cents))?;
    info!(
        "Partition {partition}: {} orders, revenue {revenue_cents} cents",
        chunk.len()
    );
    Ok(())
}

#[task(id = "process_partition_1", dependencies = ["load_orders"], retry_attempts = 3)]
async fn process_partition_1(context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
    process(context, 1).await
}

#[task(id = "process_partition_2", dependencies = ["load_orders"], retry_attempts = 3)]
async fn process_partition_2(context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
    process(context, 2).await
}

#[task(id = "process_partition_3", dependencies = ["load_orders"], retry_attempts = 3)]
async fn process_partition_3(context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
    process(context, 3).await
}

/// Calls per `run_tag` of `flaky`. A task sees neither its run id nor its
/// attempt number, and an attempt that fails leaves nothing in the context,
/// so the "service" remembers its callers here (per process: a second
/// process serving the same workflow would have its own memory).
static FLAKY_CALLS: LazyLock<Mutex<HashMap<String, u32>>> = LazyLock::new(Default::default);

#[task(
    id = "flaky",
    dependencies = ["load_orders"],
    retry_attempts = 2,
    retry_delay_ms = 300,
    retry_backoff = "fixed",
    retry_jitter = false
)]
async fn flaky(context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
    let run_tag: String = context.get("run_tag")?;
    let call = {
        let mut calls = FLAKY_CALLS.lock().unwrap_or_else(PoisonError::into_inner);
        let count = calls.entry(run_tag).or_insert(0);
        *count += 1;
        *count
    };
    if call == 1 {
        tokio::time::sleep(FLAKY_FIRST_CALL).await;
        return Err(TaskError::retryable(
            "the exchange-rate service timed out (simulated; the retry will succeed)",
        ));
    }
    context.insert("exchange_rate", json!(1.25))?;
    info!("Exchange rate fetched on call {call}");
    Ok(())
}

#[task(
    id = "combine_results",
    dependencies = ["process_partition_1", "process_partition_2", "process_partition_3", "flaky"]
)]
async fn combine_results(context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
    let mut total = 0;
    for partition in 1..=3 {
        total += context.get::<i64>(&format!("revenue_cents_{partition}"))?;
    }
    let rate: f64 = context.get("exchange_rate")?;
    context.insert("total_revenue", json!(total as f64 / 100.0 * rate))?;
    Ok(())
}

#[task(id = "publish_report", dependencies = ["combine_results"])]
async fn publish_report(context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
    let total: f64 = context.get("total_revenue")?;
    context.insert("report", format!("Revenue: {total:.2}"))?;
    Ok(())
}

#[task(id = "cleanup", dependencies = ["publish_report"], trigger_rule = "all_done")]
async fn cleanup(context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
    let removed = context.remove("orders").is_some();
    context.insert("cleanup_done", json!(true))?;
    info!("Cleanup ran (orders removed: {removed})");
    Ok(())
}

/// The workflow `error_handling`.
pub fn workflow() -> Workflow {
    workflow!(
        "error_handling",
        [
            load_orders,
            process_partition_1,
            process_partition_2,
            process_partition_3,
            flaky,
            combine_results,
            publish_report,
            cleanup,
        ]
    )
}

/// Serves the workflow's tasks against `--server` until SIGTERM or SIGINT,
/// starting no run (`flaky` fails the first attempt this process runs).
pub async fn serve_only(server: &ServerArgs) -> Result<tributary::ShutdownReport, ExampleError> {
    crate::serving::serve_workflow(server, &workflow(), 4, &crate::serving::Serve::All).await
}

/// Runs the workflow once. The `run_tag` input keeps `flaky`'s memory of
/// calls apart between runs of one process.
pub async fn run(server: &ServerArgs) -> Result<Finished, ExampleError> {
    let input = json!({ "run_tag": uuid::Uuid::now_v7().to_string() });
    runner::run_once(server, &workflow(), input, 4).await
}

/// What each task should end as: state, skip reason, attempts.
pub const EXPECTED: [(&str, TaskState, Option<SkipReason>, usize); 8] = [
    ("load_orders", TaskState::Succeeded, None, 1),
    ("process_partition_1", TaskState::Succeeded, None, 1),
    ("process_partition_2", TaskState::Failed, None, 1),
    ("process_partition_3", TaskState::Succeeded, None, 1),
    ("flaky", TaskState::Succeeded, None, 2),
    (
        "combine_results",
        TaskState::Skipped,
        Some(SkipReason::UpstreamFailed),
        0,
    ),
    (
        "publish_report",
        TaskState::Skipped,
        Some(SkipReason::UpstreamFailed),
        0,
    ),
    ("cleanup", TaskState::Succeeded, None, 1),
];

/// Every way the run differs from what this example expects; empty when it
/// behaved.
pub fn deviations(finished: &Finished) -> Vec<String> {
    let run = &finished.run;
    let mut problems = Vec::new();
    if run.status != RunStatus::Failed {
        problems.push(format!(
            "the run is {}, expected FAILED",
            runner::status_name(run.status)
        ));
    }
    if run.tasks.len() != EXPECTED.len() {
        problems.push(format!(
            "the run has {} tasks, expected {}",
            run.tasks.len(),
            EXPECTED.len()
        ));
    }
    for (task_id, state, skip_reason, attempts) in EXPECTED {
        let Some(task) = run.task(task_id) else {
            problems.push(format!("task {task_id} is missing"));
            continue;
        };
        if (task.state, task.skip_reason) != (state, skip_reason) {
            problems.push(format!(
                "{task_id} is {}, expected {}",
                state_name(task.state, task.skip_reason),
                state_name(state, skip_reason)
            ));
        }
        if task.attempts.len() != attempts {
            problems.push(format!(
                "{task_id} had {} attempts, expected {attempts}",
                task.attempts.len()
            ));
        }
    }
    if let Err(problem) = flaky_retry_gap(finished) {
        problems.push(problem);
    }
    problems
}

/// How long after `flaky`'s first attempt started its second one started,
/// as this process's worker saw them; an error unless the first failed, the
/// second succeeded, and the gap is at least the retry delay.
///
/// The first attempt waits [`FLAKY_FIRST_CALL`] before failing, which keeps
/// the bound strict although the server's timers count whole milliseconds
/// (a retry due at the next millisecond may fire a fraction of one early).
pub fn flaky_retry_gap(finished: &Finished) -> Result<Duration, String> {
    let attempts: Vec<_> = finished.attempts_of("flaky").collect();
    let [first, second] = attempts.as_slice() else {
        return Err(format!(
            "this worker ran flaky {} times, expected 2",
            attempts.len()
        ));
    };
    if first.succeeded || !second.succeeded {
        return Err("flaky should fail once, then succeed".to_owned());
    }
    let gap = second.started.saturating_duration_since(first.started);
    if gap < FLAKY_RETRY_DELAY {
        return Err(format!(
            "flaky's second attempt started {gap:?} after the first, before its retry delay of {FLAKY_RETRY_DELAY:?}"
        ));
    }
    Ok(gap)
}

/// What the example prints: the per-task table, the retry of `flaky`, and
/// the verdict.
pub fn render(finished: &Finished) -> String {
    let mut out = runner::task_table(&finished.run);
    if let Ok(gap) = flaky_retry_gap(finished) {
        out.push_str(&format!(
            "flaky's second attempt started {:.1} ms after its first (retry delay {} ms)\n",
            gap.as_secs_f64() * 1000.0,
            FLAKY_RETRY_DELAY.as_millis()
        ));
    }
    let cleanup_ran = finished.run.context.get("cleanup_done") == Some(&json!(true));
    out.push_str(&format!("cleanup ran despite the failure: {cleanup_ran}\n"));
    let problems = deviations(finished);
    if problems.is_empty() {
        out.push_str(
            "As expected: the run FAILED, the failure stayed in its branch, the retry succeeded.\n",
        );
    } else {
        out.push_str("NOT as expected:\n");
        for problem in problems {
            out.push_str(&format!("  - {problem}\n"));
        }
    }
    out
}
