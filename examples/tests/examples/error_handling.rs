//! `error_handling`: a failure that stays in its branch, an `all_done`
//! cleanup, a retry after its delay.

use serde_json::json;
use tributary::{RunStatus, SkipReason, TaskState};
use tributary_examples::error_handling::{self, EXPECTED, FLAKY_RETRY_DELAY};
use tributary_examples::runner::ServerArgs;

use crate::within;

#[test]
fn the_checked_retry_delay_is_the_declared_one() {
    let definition = error_handling::workflow().definition();
    let flaky = definition
        .tasks
        .iter()
        .find(|task| task.id == "flaky")
        .expect("flaky");
    assert_eq!(
        flaky.retry_delay_ms,
        Some(i64::try_from(FLAKY_RETRY_DELAY.as_millis()).expect("small"))
    );
    assert_eq!(flaky.retry_jitter, Some(false));
    assert_eq!(flaky.retry_backoff, "fixed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_partition_fails_the_run_and_nothing_else() {
    let finished = within("the run", error_handling::run(&ServerArgs::default()))
        .await
        .expect("the example runs");
    let run = &finished.run;

    // Spelled out here rather than only through EXPECTED, so that a wrong
    // table in the example cannot make this test agree with it.
    assert_eq!(run.status, RunStatus::Failed, "{run:#?}");
    let states: Vec<(&str, TaskState, Option<SkipReason>, usize)> = run
        .tasks
        .iter()
        .map(|task| {
            (
                task.task_id.as_str(),
                task.state,
                task.skip_reason,
                task.attempts.len(),
            )
        })
        .collect();
    let mut sorted = states.clone();
    sorted.sort_by_key(|(id, ..)| *id);
    let upstream = Some(SkipReason::UpstreamFailed);
    assert_eq!(
        sorted,
        [
            ("cleanup", TaskState::Succeeded, None, 1),
            ("combine_results", TaskState::Skipped, upstream, 0),
            ("flaky", TaskState::Succeeded, None, 2),
            ("load_orders", TaskState::Succeeded, None, 1),
            ("process_partition_1", TaskState::Succeeded, None, 1),
            ("process_partition_2", TaskState::Failed, None, 1),
            ("process_partition_3", TaskState::Succeeded, None, 1),
            ("publish_report", TaskState::Skipped, upstream, 0),
        ]
    );
    let mut expected = EXPECTED.to_vec();
    expected.sort_by_key(|(id, ..)| *id);
    assert_eq!(sorted, expected);

    let failed = run.task("process_partition_2").expect("partition 2");
    assert!(
        failed.error.contains("order 17 has quantity -3"),
        "{failed:?}"
    );
    let flaky = run.task("flaky").expect("flaky");
    assert_eq!(flaky.attempts[0].number, 1);
    assert_eq!(flaky.attempts[1].number, 2);
    assert!(flaky.attempts[0].error.contains("timed out"), "{flaky:?}");

    // The other partitions' writes and the cleanup's are in the context.
    assert!(run.context.get("revenue_cents_1").is_some());
    assert!(run.context.get("revenue_cents_3").is_some());
    assert!(run.context.get("revenue_cents_2").is_none());
    assert!(run.context.get("total_revenue").is_none());
    assert_eq!(run.context.get("cleanup_done"), Some(&json!(true)));
    assert!(run.context.get("orders").is_none());

    // The worker saw flaky fail, then succeed no earlier than the retry
    // delay after the first attempt started.
    let attempts: Vec<_> = finished.attempts_of("flaky").collect();
    assert_eq!(attempts.len(), 2);
    assert!(!attempts[0].succeeded && attempts[1].succeeded);
    assert!(attempts[1].started >= attempts[0].started + FLAKY_RETRY_DELAY);

    assert_eq!(error_handling::deviations(&finished), Vec::<String>::new());
    let printed = error_handling::render(&finished);
    assert!(printed.contains("As expected"), "{printed}");
}
