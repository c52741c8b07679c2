//! `RetryRun` end to end: a failed run re-run from its failure (what
//! succeeded is not run again), from a chosen task, refused while active,
//! idempotent by request id, its event log continuing without a gap, and a
//! retried run recovered after the server is killed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio_stream::StreamExt;
use tributary_e2e::executor::{Handler, Outcome, TestExecutor, handler};
use tributary_e2e::{TestDatabase, TestServer, context, task};
use tributary_proto::v1 as pb;

use crate::liveness::{ServerProcess, free_port, wait_until_finished};

/// A safety net so a broken engine fails the test instead of hanging it.
const LIMIT: Duration = Duration::from_secs(60);

const NS: &str = "default";

/// Calls per task id, counted by the handler.
type Calls = Arc<Mutex<BTreeMap<String, u32>>>;

/// Every task records `{task: [keys of its input]}`; the tasks in
/// `fail_once` fail without retry on their first call and succeed after.
fn counting_handler(calls: &Calls, fail_once: &'static [&'static str]) -> Handler {
    let calls = calls.clone();
    handler(move |assigned| {
        let calls = calls.clone();
        async move {
            let call = {
                let mut calls = calls.lock().expect("calls");
                let count = calls.entry(assigned.task_id.clone()).or_default();
                *count += 1;
                *count
            };
            if call == 1 && fail_once.contains(&assigned.task_id.as_str()) {
                return Outcome::fail_for_good("first call fails");
            }
            let keys: Vec<String> = assigned
                .input
                .as_object()
                .map(|object| object.keys().cloned().collect())
                .unwrap_or_default();
            Outcome::set(json!({ assigned.task_id: keys }))
        }
    })
}

fn calls_of(calls: &Calls) -> BTreeMap<String, u32> {
    calls.lock().expect("calls").clone()
}

fn counts(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
    pairs
        .iter()
        .map(|(task, count)| ((*task).to_owned(), *count))
        .collect()
}

/// The seed's shape: three partitions, a fan-in, and an `all_done` cleanup.
fn partitions_workflow() -> serde_json::Value {
    json!({"name": "partitions", "tasks": [
        {"id": "generate", "handler": "work"},
        {"id": "part_1", "dependencies": ["generate"], "handler": "work"},
        {"id": "part_2", "dependencies": ["generate"], "handler": "work"},
        {"id": "part_3", "dependencies": ["generate"], "handler": "work"},
        {"id": "combine", "dependencies": ["part_1", "part_2", "part_3"], "handler": "work"},
        {"id": "cleanup", "dependencies": ["combine"], "handler": "work", "trigger_rule": "all_done"}
    ]})
}

fn retry_request(run_id: &str, from_task: &str, request_id: &str) -> pb::RetryRunRequest {
    pb::RetryRunRequest {
        run_id: run_id.to_owned(),
        from_task: from_task.to_owned(),
        request_id: request_id.to_owned(),
    }
}

/// Every event of the run, read with WatchRun from the start; the stream
/// must end on its own once the run's log ends.
async fn all_events(server: &TestServer, run_id: &str) -> Vec<pb::RunEvent> {
    let mut stream = server
        .run_client(NS)
        .await
        .watch_run(pb::WatchRunRequest {
            run_id: run_id.to_owned(),
            after_sequence: 0,
        })
        .await
        .expect("watch")
        .into_inner();
    let mut events = Vec::new();
    while let Some(item) = tokio::time::timeout(LIMIT, stream.next())
        .await
        .expect("the watch of a finished run ends by itself")
    {
        events.push(item.expect("event").event.expect("event"));
    }
    events
}

#[tokio::test]
async fn a_failed_run_retried_reruns_only_what_failed_or_depends_on_it_and_succeeds() {
    let server = TestServer::start().await;
    server.register(NS, partitions_workflow()).await;
    let calls = Calls::default();
    let _executor = TestExecutor::connect(
        server.channel().await,
        NS,
        &["work"],
        4,
        counting_handler(&calls, &["part_2"]),
    )
    .await;
    let run_id = server.start_run(NS, "partitions", json!({"seed": 1})).await;
    let failed = server.wait_for_run(NS, &run_id, LIMIT).await;
    assert_eq!(failed.status(), pb::RunStatus::Failed);
    assert_eq!(task(&failed, "part_2").state(), pb::TaskState::Failed);
    assert_eq!(task(&failed, "combine").state(), pb::TaskState::Skipped);
    assert_eq!(task(&failed, "cleanup").state(), pb::TaskState::Succeeded);
    assert_eq!(failed.retry_count, 0);
    let events_before = all_events(&server, &run_id).await;

    let mut client = server.run_client(NS).await;
    let retried = client
        .retry_run(retry_request(&run_id, "", "retry-1"))
        .await
        .expect("a failed run can be retried")
        .into_inner();
    assert_eq!(retried.run_id, run_id);
    assert_eq!(retried.retry_count, 1);
    assert_eq!(
        retried.retried_task_ids,
        ["part_2", "combine", "cleanup"],
        "the failed and skipped tasks, and the cleanup downstream of them"
    );
    // The same request again is answered again, not retried twice.
    let again = client
        .retry_run(retry_request(&run_id, "", "retry-1"))
        .await
        .expect("a repeated request is answered")
        .into_inner();
    assert_eq!(again.retry_count, 1);
    assert_eq!(again.retried_task_ids, retried.retried_task_ids);

    let run = server.wait_for_run(NS, &run_id, LIMIT).await;
    assert_eq!(run.status(), pb::RunStatus::Succeeded, "{run:#?}");
    assert_eq!(run.retry_count, 1);
    assert_eq!(
        calls_of(&calls),
        counts(&[
            ("cleanup", 2),
            ("combine", 1),
            ("generate", 1),
            ("part_1", 1),
            ("part_2", 2),
            ("part_3", 1),
        ]),
        "succeeded tasks upstream of the failure ran once"
    );
    // The fan-in's input was rebuilt from every partition, the kept ones
    // and the re-run one alike.
    assert_eq!(
        context(&run)["combine"],
        json!(["generate", "part_1", "part_2", "part_3", "seed"])
    );
    let part_2 = task(&run, "part_2");
    let numbers: Vec<u32> = part_2.attempts.iter().map(|a| a.number).collect();
    assert_eq!(numbers, [1, 2], "the first run's attempt stays as history");
    assert_eq!(part_2.attempts[0].state(), pb::AttemptState::Failed);
    assert_eq!(part_2.attempts[1].state(), pb::AttemptState::Succeeded);
    assert!(run.finished_at.is_some());

    // One log: the first run's events unchanged, then RUN_RETRIED and the
    // rest, numbered on without a gap, ending with the new RUN_FINISHED.
    let events = all_events(&server, &run_id).await;
    let sequences: Vec<u64> = events.iter().map(|event| event.sequence).collect();
    assert_eq!(sequences, (1..=events.len() as u64).collect::<Vec<_>>());
    assert_eq!(&events[..events_before.len()], &events_before[..]);
    let retried_event = &events[events_before.len()];
    assert_eq!(retried_event.r#type(), pb::RunEventType::RunRetried);
    assert_eq!(retried_event.retried_task_ids, retried.retried_task_ids);
    assert_eq!(
        events[events_before.len() + 1].r#type(),
        pb::RunEventType::TaskReady
    );
    assert_eq!(events[events_before.len() + 1].task_id, "part_2");
    let last = events.last().expect("events");
    assert_eq!(last.r#type(), pb::RunEventType::RunFinished);
    assert_eq!(last.run_status(), pb::RunStatus::Succeeded);
    let finishes = events
        .iter()
        .filter(|event| event.r#type() == pb::RunEventType::RunFinished)
        .count();
    assert_eq!(finishes, 2);

    // After the run ended again, the request id still names that retry.
    let late = client
        .retry_run(retry_request(&run_id, "", "retry-1"))
        .await
        .expect("answered again")
        .into_inner();
    assert_eq!(
        (late.retry_count, late.status()),
        (1, pb::RunStatus::Succeeded)
    );
    // A succeeded run has nothing to retry unless a task is named.
    let status = client
        .retry_run(retry_request(&run_id, "", ""))
        .await
        .expect_err("nothing to retry");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(status.message().contains("SUCCEEDED"), "{status:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_retry_from_a_task_reruns_it_and_its_descendants_only() {
    let server = TestServer::start().await;
    server
        .register(
            NS,
            json!({"name": "chain", "tasks": [
                {"id": "a", "handler": "work"},
                {"id": "b", "dependencies": ["a"], "handler": "work"},
                {"id": "c", "dependencies": ["b"], "handler": "work"},
                {"id": "side", "handler": "work"}
            ]}),
        )
        .await;
    let calls = Calls::default();
    let _executor = TestExecutor::connect(
        server.channel().await,
        NS,
        &["work"],
        2,
        counting_handler(&calls, &[]),
    )
    .await;
    let run_id = server.start_run(NS, "chain", json!({})).await;
    let first = server.wait_for_run(NS, &run_id, LIMIT).await;
    assert_eq!(first.status(), pb::RunStatus::Succeeded);
    let mut client = server.run_client(NS).await;

    let unknown = client
        .retry_run(retry_request(&run_id, "nope", ""))
        .await
        .expect_err("unknown task");
    assert_eq!(unknown.code(), tonic::Code::InvalidArgument);
    assert!(unknown.message().contains("\"nope\""), "{unknown:?}");
    let missing = client
        .retry_run(retry_request("no-such-run", "", ""))
        .await
        .expect_err("unknown run");
    assert_eq!(missing.code(), tonic::Code::NotFound);

    let retried = client
        .retry_run(retry_request(&run_id, "b", ""))
        .await
        .expect("retry from b")
        .into_inner();
    assert_eq!(retried.retried_task_ids, ["b", "c"]);
    let run = server.wait_for_run(NS, &run_id, LIMIT).await;
    assert_eq!(run.status(), pb::RunStatus::Succeeded);
    assert_eq!(
        calls_of(&calls),
        counts(&[("a", 1), ("b", 2), ("c", 2), ("side", 1)])
    );
    assert_eq!(run.retry_count, 1);
    server.stop().await;
}

#[tokio::test]
async fn an_active_run_cannot_be_retried() {
    let server = TestServer::start().await;
    server
        .register(
            NS,
            json!({"name": "idle", "tasks": [{"id": "a", "handler": "nobody_serves_this"}]}),
        )
        .await;
    let run_id = server.start_run(NS, "idle", json!({})).await;
    let mut client = server.run_client(NS).await;
    for request_id in ["", "some-id"] {
        let status = client
            .retry_run(retry_request(&run_id, "", request_id))
            .await
            .expect_err("the run is pending");
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        assert_eq!(
            status.message(),
            format!("run {run_id} is PENDING; only a finished run can be retried")
        );
    }
    let run = server.get_run(NS, &run_id).await;
    assert_eq!(run.retry_count, 0);
    assert_eq!(run.status(), pb::RunStatus::Pending);
    server.stop().await;
}

#[tokio::test]
async fn a_cancelled_run_retried_runs_its_cancelled_tasks() {
    let server = TestServer::start().await;
    server
        .register(
            NS,
            json!({"name": "halted", "tasks": [
                {"id": "a", "handler": "work"},
                {"id": "b", "dependencies": ["a"], "handler": "later"}
            ]}),
        )
        .await;
    let calls = Calls::default();
    let _executor = TestExecutor::connect(
        server.channel().await,
        NS,
        &["work"],
        1,
        counting_handler(&calls, &[]),
    )
    .await;
    let run_id = server.start_run(NS, "halted", json!({})).await;
    server
        .wait_until(NS, &run_id, LIMIT, |run| {
            task(run, "b").state() == pb::TaskState::Ready
        })
        .await;
    let mut client = server.run_client(NS).await;
    client
        .cancel_run(pb::CancelRunRequest {
            run_id: run_id.clone(),
        })
        .await
        .expect("cancels");
    let retried = client
        .retry_run(retry_request(&run_id, "", ""))
        .await
        .expect("a cancelled run can be retried")
        .into_inner();
    assert_eq!(retried.retried_task_ids, ["b"]);
    assert_eq!(retried.status(), pb::RunStatus::Running);
    let _later = TestExecutor::connect(
        server.channel().await,
        NS,
        &["later"],
        1,
        counting_handler(&calls, &[]),
    )
    .await;
    let run = server.wait_for_run(NS, &run_id, LIMIT).await;
    assert_eq!(run.status(), pb::RunStatus::Succeeded);
    assert_eq!(calls_of(&calls), counts(&[("a", 1), ("b", 1)]));
    server.stop().await;
}

#[tokio::test]
async fn a_retried_run_survives_a_server_killed_right_after_the_retry() {
    let database = TestDatabase::fresh().await;
    let port = free_port();
    let server = ServerProcess::start(&database, port, None).await;
    server
        .register(json!({"name": "crash", "tasks": [
            {"id": "a", "handler": "work"},
            {"id": "b", "dependencies": ["a"], "handler": "work"},
            {"id": "c", "dependencies": ["b"], "handler": "work"}
        ]}))
        .await;
    let calls = Calls::default();
    let executor = TestExecutor::connect(
        server.channel().await,
        NS,
        &["work"],
        1,
        counting_handler(&calls, &["b"]),
    )
    .await;
    let mut client = server.run_client().await;
    let run_id = client
        .start_run(pb::StartRunRequest {
            workflow_name: "crash".into(),
            ..pb::StartRunRequest::default()
        })
        .await
        .expect("starts")
        .into_inner()
        .run_id;
    let failed = wait_until_finished(&mut client, &run_id).await;
    assert_eq!(failed.status(), pb::RunStatus::Failed);
    // Nobody serves the retried tasks until the restart, so what the retry
    // committed is all the restarted server has.
    executor.kill();
    let retried = client
        .retry_run(retry_request(&run_id, "", "before-crash"))
        .await
        .expect("retried")
        .into_inner();
    assert_eq!(retried.retried_task_ids, ["b", "c"]);
    server.kill().await;

    let server = ServerProcess::start(&database, port, None).await;
    let mut client = server.run_client().await;
    let again = client
        .retry_run(retry_request(&run_id, "", "before-crash"))
        .await
        .expect("the retry is remembered across the restart")
        .into_inner();
    assert_eq!(again.retry_count, 1);
    let _executor = TestExecutor::connect(
        server.channel().await,
        NS,
        &["work"],
        1,
        counting_handler(&calls, &[]),
    )
    .await;
    let run = wait_until_finished(&mut client, &run_id).await;
    assert_eq!(run.status(), pb::RunStatus::Succeeded, "{run:#?}");
    assert_eq!(run.retry_count, 1);
    assert_eq!(calls_of(&calls), counts(&[("a", 1), ("b", 2), ("c", 1)]));
    assert_eq!(context(&run)["c"], json!(["a", "b"]));
    server.kill().await;
}

/// The store's side of a retry: it reopens a run only as it was read, so a
/// second retry from the same reading, or a retry of a run the retention
/// job deleted, fails cleanly; and retention never deletes a reopened run.
#[tokio::test]
async fn the_store_reopens_a_run_only_as_it_was_read_and_retention_leaves_it_alone() {
    use tributary_server::engine::records::{RunChanges, RunRetry, RunStatus};
    use tributary_server::store::StoreError;

    let server = TestServer::start().await;
    server
        .register(
            NS,
            json!({"name": "once", "tasks": [{"id": "a", "handler": "work"}]}),
        )
        .await;
    let calls = Calls::default();
    let executor = TestExecutor::connect(
        server.channel().await,
        NS,
        &["work"],
        1,
        counting_handler(&calls, &["a"]),
    )
    .await;
    let retried_id = server.start_run(NS, "once", json!({})).await;
    let deleted_id = server.start_run(NS, "once", json!({})).await;
    for run_id in [&retried_id, &deleted_id] {
        server.wait_for_run(NS, run_id, LIMIT).await;
    }
    executor.kill();
    let database = server.stop().await;
    let store = tributary_server::store::connect(database.url())
        .await
        .expect("connects");
    let retry_of = |run_id: &str, expected_status| RunRetry {
        changes: RunChanges {
            run_id: run_id.to_owned(),
            namespace: NS.to_owned(),
            workflow_name: "once".to_owned(),
            ..RunChanges::default()
        },
        expected_status,
        expected_retry_count: 0,
        retry_count: 1,
        request_id: None,
        reset_task_ids: vec!["a".to_owned()],
        dropped_map_task_ids: Vec::new(),
    };
    let first = store
        .get_run(NS, &retried_id)
        .await
        .expect("run")
        .run
        .status;
    store
        .retry_run(&retry_of(&retried_id, first))
        .await
        .expect("reopens");
    let stale = store.retry_run(&retry_of(&retried_id, first)).await;
    assert!(
        matches!(&stale, Err(StoreError::NotFound(message)) if message.contains(&retried_id)),
        "{stale:?}"
    );
    let reopened = store.get_run(NS, &retried_id).await.expect("run");
    assert_eq!(reopened.run.status, RunStatus::Running);
    assert_eq!(reopened.run.retry_count, 1);
    assert_eq!(reopened.run.finished_at_ms, None);
    assert!(reopened.deltas.is_empty());

    // Retention takes the other (finished) run and leaves the reopened one.
    assert_eq!(
        store
            .delete_finished_runs(i64::MAX, 100)
            .await
            .expect("retention"),
        1
    );
    store.get_run(NS, &retried_id).await.expect("still there");
    let gone = store.retry_run(&retry_of(&deleted_id, first)).await;
    assert!(matches!(gone, Err(StoreError::NotFound(_))), "{gone:?}");
    store.close().await;
}

/// `tributary run retry`, as a process of the real binary.
async fn cli(arguments: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_test_server"))
        .args(arguments)
        .output()
        .await
        .expect("the CLI runs")
}

#[tokio::test]
async fn the_cli_retries_a_failed_run_and_waits_for_its_new_end() {
    let server = TestServer::start().await;
    server.register(NS, partitions_workflow()).await;
    let calls = Calls::default();
    let _executor = TestExecutor::connect(
        server.channel().await,
        NS,
        &["work"],
        4,
        counting_handler(&calls, &["part_3"]),
    )
    .await;
    let run_id = server.start_run(NS, "partitions", json!({})).await;
    let failed = server.wait_for_run(NS, &run_id, LIMIT).await;
    assert_eq!(failed.status(), pb::RunStatus::Failed);
    let url = server.url();

    let output = cli(&["run", "retry", &run_id, "--from", "nope", "--server", &url]).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("InvalidArgument") && stderr.contains("\"nope\""),
        "{stderr}"
    );

    let output = cli(&[
        "run", "retry", &run_id, "--wait", "--json", "--server", &url,
    ])
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    let mut lines = stdout.lines();
    let retried: serde_json::Value =
        serde_json::from_str(lines.next().expect("the retry")).expect("JSON");
    assert_eq!(
        retried,
        json!({
            "run_id": run_id,
            "status": "running",
            "retry_count": 1,
            "retried_task_ids": ["part_3", "combine", "cleanup"],
        })
    );
    let ended: serde_json::Value =
        serde_json::from_str(lines.next().expect("the end")).expect("JSON");
    assert_eq!(ended["status"], "succeeded");
    assert_eq!(ended["tasks"]["part_3"], "succeeded");
    assert_eq!(calls_of(&calls)["part_3"], 2);
    assert_eq!(calls_of(&calls)["part_1"], 1);

    // The run is SUCCEEDED now: text output, and the refusal's message.
    let output = cli(&["run", "retry", &run_id, "--server", &url]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("FailedPrecondition"),
        "{output:?}"
    );
    let output = cli(&[
        "run", "retry", &run_id, "--from", "combine", "--server", &url,
    ])
    .await;
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("run {run_id} retried (retry 2), running: combine, cleanup")
    );
    server.stop().await;
}
