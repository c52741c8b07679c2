//! Concurrency policies of workflows: the policy is stored with the version
//! (normalized, and part of the version only when present); a start whose
//! input has no key at the policy's pointer is refused, naming the pointer,
//! with nothing stored; and the limit holds per key with each strategy:
//! `queue` (QUEUED runs with their positions, started first in, first out as
//! active runs end, cancellable while queued, and still queued in order after
//! the server is killed), `cancel_newest` and `cancel_in_progress`.
//!
//! No executor serves the workflows until a test says so, so started runs
//! stay PENDING (active) for as long as the test needs: no timing.

use std::time::Duration;

use serde_json::json;
use tonic::Code;
use tributary_e2e::executor::{Outcome, TestExecutor, handler};
use tributary_e2e::scrape::scrape;
use tributary_e2e::{TestDatabase, TestServer};
use tributary_proto::v1 as pb;

use crate::liveness::{ServerProcess, free_port, wait_until_finished};

/// A safety net so a broken coordinator fails the test instead of hanging it.
const LIMIT: Duration = Duration::from_secs(60);

fn limited(name: &str, strategy: &str) -> serde_json::Value {
    json!({"name": name, "tasks": [{"id": "a", "handler": "work"}],
           "concurrency": {"key_pointer": "/customer", "strategy": strategy}})
}

fn input(customer: &str) -> String {
    json!({ "customer": customer }).to_string()
}

async fn events(server: &TestServer, run_id: &str) -> Vec<pb::RunEvent> {
    let mut client = server.run_client("default").await;
    let mut stream = client
        .watch_run(pb::WatchRunRequest {
            run_id: run_id.to_owned(),
            ..Default::default()
        })
        .await
        .expect("watches")
        .into_inner();
    let mut events = Vec::new();
    while let Some(message) = stream.message().await.expect("streams") {
        events.extend(message.event);
        if events
            .last()
            .is_some_and(|event| event.r#type() == pb::RunEventType::RunFinished)
        {
            break;
        }
    }
    events
}

fn start(workflow: &str, input: &str) -> pb::StartRunRequest {
    pb::StartRunRequest {
        workflow_name: workflow.into(),
        input_context_json: input.into(),
        ..pb::StartRunRequest::default()
    }
}

#[tokio::test]
async fn a_policy_is_stored_normalized_and_enters_the_version_only_when_present() {
    let server = TestServer::start().await;
    let plain = server
        .register("default", json!({"name": "w", "tasks": [{"id": "a"}]}))
        .await;
    let limited = server
        .register(
            "default",
            json!({"name": "w", "tasks": [{"id": "a"}],
                   "concurrency": {"key_pointer": "/customer"}}),
        )
        .await;
    assert_ne!(plain.version, limited.version);
    assert_eq!(plain.definition.expect("definition").concurrency, None);
    assert_eq!(
        limited.definition.expect("definition").concurrency,
        Some(pb::ConcurrencyPolicy {
            key_pointer: "/customer".into(),
            fixed_key: String::new(),
            max_active_runs: Some(1),
            strategy: "queue".into(),
        })
    );
}

#[tokio::test]
async fn a_start_without_a_key_in_its_input_is_refused_naming_the_pointer() {
    let server = TestServer::start().await;
    server
        .register(
            "default",
            json!({"name": "w", "tasks": [{"id": "a"}],
                   "concurrency": {"key_pointer": "/customer/id", "max_active_runs": 2}}),
        )
        .await;
    let mut runs = server.run_client("default").await;
    let status = runs
        .start_run(start("w", r#"{"customer": {"name": "acme"}}"#))
        .await
        .expect_err("no key");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "the input has no value at \"/customer/id\", the workflow's concurrency key_pointer"
    );
    let listed = runs
        .list_runs(pb::ListRunsRequest::default())
        .await
        .expect("lists")
        .into_inner();
    assert!(listed.runs.is_empty(), "nothing stored: {listed:?}");
    let long = "k".repeat(300);
    let status = runs
        .start_run(start("w", &json!({"customer": {"id": long}}).to_string()))
        .await
        .expect_err("key too long");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "the concurrency key at \"/customer/id\" is 300 bytes, over the limit of 256"
    );
    runs.start_run(start("w", r#"{"customer": {"id": 42}}"#))
        .await
        .expect("a number is a key");
}

#[tokio::test]
async fn the_cli_registers_a_policy_from_a_file_and_shows_it() {
    let server = TestServer::start().await;
    let url = server.url();
    let directory = tempfile::tempdir().expect("temp dir");
    let file = directory.path().join("sync.workflow.json");
    std::fs::write(
        &file,
        json!({"name": "sync", "tasks": [{"id": "a"}],
               "concurrency": {"key_pointer": "/customer", "max_active_runs": 2,
                               "strategy": "cancel_in_progress"}})
        .to_string(),
    )
    .expect("writes");
    let cli = |arguments: Vec<&str>| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_test_server"))
            .args(arguments)
            .output()
    };
    let file = file.to_str().expect("UTF-8 path");
    let registered = cli(vec!["workflow", "register", file, "--server", &url])
        .await
        .expect("runs");
    assert!(registered.status.success(), "{registered:?}");
    let shown = cli(vec!["workflow", "get", "sync", "--server", &url])
        .await
        .expect("runs");
    assert!(shown.status.success(), "{shown:?}");
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        text.contains(
            "concurrency: at most 2 active runs per key /customer of the input; beyond that: cancel_in_progress"
        ),
        "{text}"
    );
    let json_output = cli(vec!["workflow", "get", "sync", "--json", "--server", &url])
        .await
        .expect("runs");
    let got: serde_json::Value = serde_json::from_slice(&json_output.stdout).expect("JSON");
    assert_eq!(
        got["definition"]["concurrency"],
        json!({"key_pointer": "/customer", "max_active_runs": 2, "strategy": "cancel_in_progress"})
    );
}

#[tokio::test]
async fn queued_runs_wait_in_fifo_order_per_key_with_their_positions() {
    let server = TestServer::start().await;
    server.register("default", limited("sync", "queue")).await;
    let mut runs = server.run_client("default").await;
    let mut start_one = async |customer: &str| {
        runs.start_run(start("sync", &input(customer)))
            .await
            .expect("starts")
            .into_inner()
            .run_id
    };
    let first = start_one("acme").await;
    let second = start_one("acme").await;
    let third = start_one("acme").await;
    let other = start_one("globex").await;
    let status = async |run_id: &str| {
        let run = server.get_run("default", run_id).await;
        (run.status(), run.queue_position, run.concurrency_key)
    };
    assert_eq!(
        status(&first).await,
        (pb::RunStatus::Pending, 0, "acme".into())
    );
    assert_eq!(
        status(&second).await,
        (pb::RunStatus::Queued, 1, "acme".into())
    );
    assert_eq!(
        status(&third).await,
        (pb::RunStatus::Queued, 2, "acme".into())
    );
    assert_eq!(
        status(&other).await,
        (pb::RunStatus::Pending, 0, "globex".into())
    );
    let shown = tokio::process::Command::new(env!("CARGO_BIN_EXE_test_server"))
        .args(["run", "get", &third, "--server", &server.url()])
        .output()
        .await
        .expect("the CLI runs");
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        text.contains("status:    queued (position 2 for key \"acme\")"),
        "{text}"
    );
    let mut client = server.run_client("default").await;
    let queued = client
        .list_runs(pb::ListRunsRequest {
            status: pb::RunStatus::Queued as i32,
            ..Default::default()
        })
        .await
        .expect("lists")
        .into_inner()
        .runs;
    let listed: Vec<_> = queued
        .iter()
        .map(|run| (run.id.clone(), run.queue_position))
        .collect();
    assert_eq!(listed, [(third.clone(), 2), (second.clone(), 1)]);
    let scraped = scrape(server.local_addr()).await;
    assert_eq!(
        scraped.value("tributary_queued_runs", &[("namespace", "default")]),
        2.0
    );

    // The active run ends: the head of the queue starts, the rest moves up.
    client
        .cancel_run(pb::CancelRunRequest {
            run_id: first.clone(),
        })
        .await
        .expect("cancels");
    server
        .wait_until("default", &second, LIMIT, |run| {
            run.status() == pb::RunStatus::Pending
        })
        .await;
    assert_eq!(
        status(&third).await,
        (pb::RunStatus::Queued, 1, "acme".into())
    );
    // A queued run can be cancelled; nothing else moves.
    client
        .cancel_run(pb::CancelRunRequest {
            run_id: third.clone(),
        })
        .await
        .expect("cancels a queued run");
    let cancelled = server.get_run("default", &third).await;
    assert_eq!(cancelled.status(), pb::RunStatus::Cancelled);
    assert!(cancelled.finished_at.is_some());
    assert!(cancelled.tasks.is_empty());

    let _executor = TestExecutor::connect(
        server.channel().await,
        "default",
        &["work"],
        4,
        handler(|_| async { Outcome::set(json!({"done": true})) }),
    )
    .await;
    for run_id in [&second, &other] {
        let run = server.wait_for_run("default", run_id, LIMIT).await;
        assert_eq!(run.status(), pb::RunStatus::Succeeded, "{run:#?}");
    }
    let log: Vec<_> = events(&server, &second)
        .await
        .iter()
        .map(|event| (event.sequence, event.r#type()))
        .take(2)
        .collect();
    assert_eq!(
        log,
        [
            (1, pb::RunEventType::RunQueued),
            (2, pb::RunEventType::RunStarted)
        ]
    );
    let queued_event = &events(&server, &second).await[0];
    assert_eq!(queued_event.concurrency_key, "acme");
    assert_eq!(queued_event.queue_position, 1);
    let third_log: Vec<_> = events(&server, &third)
        .await
        .iter()
        .map(|event| (event.sequence, event.r#type()))
        .collect();
    assert_eq!(
        third_log,
        [
            (1, pb::RunEventType::RunQueued),
            (2, pb::RunEventType::RunFinished)
        ]
    );
}

#[tokio::test]
async fn cancel_newest_creates_the_new_run_cancelled_with_the_reason() {
    let server = TestServer::start().await;
    server
        .register("default", limited("deploy", "cancel_newest"))
        .await;
    let mut runs = server.run_client("default").await;
    let first = runs
        .start_run(start("deploy", &input("acme")))
        .await
        .expect("starts")
        .into_inner()
        .run_id;
    let keyed = pb::StartRunRequest {
        idempotency_key: "second".into(),
        ..start("deploy", &input("acme"))
    };
    let second = runs
        .start_run(keyed.clone())
        .await
        .expect("answers")
        .into_inner();
    assert!(second.created);
    let run = server.get_run("default", &second.run_id).await;
    assert_eq!(run.status(), pb::RunStatus::Cancelled);
    assert!(run.finished_at.is_some() && run.tasks.is_empty());
    let log = events(&server, &second.run_id).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].r#type(), pb::RunEventType::RunFinished);
    assert_eq!(log[0].run_status(), pb::RunStatus::Cancelled);
    assert_eq!(
        log[0].error,
        "concurrency limit of 1 active runs for key \"acme\" reached"
    );
    // The idempotency key finds it; the active run is untouched.
    let again = runs.start_run(keyed).await.expect("answers").into_inner();
    assert_eq!((again.run_id, again.created), (second.run_id, false));
    assert_eq!(
        server.get_run("default", &first).await.status(),
        pb::RunStatus::Pending
    );
}

#[tokio::test]
async fn cancel_in_progress_cancels_the_oldest_active_run_and_starts_the_new_one() {
    let server = TestServer::start().await;
    server
        .register("default", limited("preview", "cancel_in_progress"))
        .await;
    let mut runs = server.run_client("default").await;
    let first = runs
        .start_run(start("preview", &input("acme")))
        .await
        .expect("starts")
        .into_inner()
        .run_id;
    let second = runs
        .start_run(start("preview", &input("acme")))
        .await
        .expect("starts")
        .into_inner()
        .run_id;
    let old = server.wait_for_run("default", &first, LIMIT).await;
    assert_eq!(old.status(), pb::RunStatus::Cancelled);
    let finished = events(&server, &first).await;
    let last = finished.last().expect("events");
    assert_eq!(last.r#type(), pb::RunEventType::RunFinished);
    assert_eq!(
        last.error,
        format!("cancelled by newer run {second} (concurrency key \"acme\")")
    );
    assert_eq!(
        server.get_run("default", &second).await.status(),
        pb::RunStatus::Pending
    );
}

#[tokio::test]
async fn queued_runs_survive_a_server_kill_in_their_order() {
    let database = TestDatabase::fresh().await;
    let port = free_port();
    let server = ServerProcess::start(&database, port, None).await;
    server.register(limited("sync", "queue")).await;
    let mut client = server.run_client().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            client
                .start_run(start("sync", &input("acme")))
                .await
                .expect("starts")
                .into_inner()
                .run_id,
        );
    }
    server.kill().await;

    let server = ServerProcess::start(&database, port, None).await;
    let mut client = server.run_client().await;
    let mut positions = Vec::new();
    for run_id in &ids {
        let run = client
            .get_run(pb::GetRunRequest {
                run_id: run_id.clone(),
                omit_contexts: false,
                ..Default::default()
            })
            .await
            .expect("reads")
            .into_inner()
            .run
            .expect("run");
        positions.push((run.status(), run.queue_position));
    }
    assert_eq!(
        positions,
        [
            (pb::RunStatus::Pending, 0),
            (pb::RunStatus::Queued, 1),
            (pb::RunStatus::Queued, 2)
        ]
    );
    // The restored queue is served in order: each run starts only after the
    // one before it ended.
    let _executor = TestExecutor::connect(
        server.channel().await,
        "default",
        &["work"],
        4,
        handler(|_| async { Outcome::set(json!({"done": true})) }),
    )
    .await;
    let mut finished = Vec::new();
    for run_id in &ids {
        let run = wait_until_finished(&mut client, run_id).await;
        assert_eq!(run.status(), pb::RunStatus::Succeeded);
        finished.push(run.finished_at.expect("finished"));
    }
    // With one slot, each run started only after the one before it ended.
    let times: Vec<_> = finished
        .iter()
        .map(|time| (time.seconds, time.nanos))
        .collect();
    assert!(times.windows(2).all(|pair| pair[0] <= pair[1]), "{times:?}");
    server.kill().await;
}

#[tokio::test]
async fn a_retried_run_counts_against_its_key_and_one_that_never_started_is_refused() {
    let server = TestServer::start().await;
    server.register("default", limited("sync", "queue")).await;
    let mut runs = server.run_client("default").await;
    let mut start_one = async || {
        runs.start_run(start("sync", &input("acme")))
            .await
            .expect("starts")
            .into_inner()
            .run_id
    };
    let first = start_one().await;
    let second = start_one().await;
    let mut client = server.run_client("default").await;
    let cancel = async |client: &mut pb::run_service_client::RunServiceClient<_>, run_id: &str| {
        client
            .cancel_run(pb::CancelRunRequest {
                run_id: run_id.to_owned(),
            })
            .await
            .expect("cancels");
    };
    // The queued run is cancelled before it ever started: nothing to retry.
    cancel(&mut client, &second).await;
    let retry = |run_id: &str| pb::RetryRunRequest {
        run_id: run_id.to_owned(),
        ..Default::default()
    };
    let status = client
        .retry_run(retry(&second))
        .await
        .expect_err("never started");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(
        status.message(),
        format!(
            "run {second} never started: it was cancelled while its concurrency key \"acme\" was full; start a new run instead"
        )
    );
    // The first run ends; a new one takes the slot; retrying the first is
    // refused while the key is full.
    cancel(&mut client, &first).await;
    let third = start_one().await;
    assert_eq!(
        server.get_run("default", &third).await.status(),
        pb::RunStatus::Pending
    );
    let status = client.retry_run(retry(&first)).await.expect_err("key full");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(
        status.message(),
        format!(
            "run {first} cannot be retried now: its concurrency key \"acme\" has 1 active run(s), the workflow's max_active_runs, or runs waiting; retry it when one has finished"
        )
    );
    // Once the key has room the retry goes through and takes the slot.
    cancel(&mut client, &third).await;
    client.retry_run(retry(&first)).await.expect("retries");
    let fourth = start_one().await;
    let run = server.get_run("default", &fourth).await;
    assert_eq!(
        (run.status(), run.queue_position),
        (pb::RunStatus::Queued, 1)
    );
    // When the retried run ends, the queued one starts.
    cancel(&mut client, &first).await;
    server
        .wait_until("default", &fourth, LIMIT, |run| {
            run.status() == pb::RunStatus::Pending
        })
        .await;
}

/// Starts that race on one idempotency key all reach the coordinator before
/// the first is stored; the losers' admissions are taken back, and with
/// them the cancellation of the run they would have superseded: that run
/// keeps its slot, so the next start supersedes it and the key never has
/// two active runs.
#[tokio::test]
async fn racing_retries_of_one_start_leave_the_key_with_one_active_run() {
    let server = TestServer::start().await;
    server
        .register("default", limited("preview", "cancel_in_progress"))
        .await;
    let runs = server.run_client("default").await;
    let retried = pb::StartRunRequest {
        idempotency_key: "deploy-7".into(),
        ..start("preview", &input("acme"))
    };
    let mut attempts = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let mut runs = runs.clone();
        let request = retried.clone();
        attempts.spawn(async move { runs.start_run(request).await });
    }
    let mut ids = Vec::new();
    while let Some(answer) = attempts.join_next().await {
        ids.push(answer.expect("joins").expect("starts").into_inner().run_id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1, "one run for one idempotency key: {ids:?}");
    let first = ids.remove(0);
    assert_eq!(
        server.get_run("default", &first).await.status(),
        pb::RunStatus::Pending
    );

    let mut runs = runs.clone();
    let second = runs
        .start_run(start("preview", &input("acme")))
        .await
        .expect("starts")
        .into_inner()
        .run_id;
    let superseded = server.wait_for_run("default", &first, LIMIT).await;
    assert_eq!(superseded.status(), pb::RunStatus::Cancelled);
    let listed = runs
        .list_runs(pb::ListRunsRequest {
            workflow_name: "preview".into(),
            ..pb::ListRunsRequest::default()
        })
        .await
        .expect("lists")
        .into_inner()
        .runs;
    let active: Vec<&str> = listed
        .iter()
        .filter(|run| run.status() == pb::RunStatus::Pending)
        .map(|run| run.id.as_str())
        .collect();
    assert_eq!(active, [second.as_str()]);
}
