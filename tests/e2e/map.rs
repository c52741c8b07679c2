//! Dynamic fan-out over a real socket and database: a mapped task runs one
//! instance per element of its array, instances are retried one by one,
//! their outputs are gathered in element order for the dependants, `GetRun`
//! and the event log show the instances under their task, and a server
//! killed halfway through a map finishes it after the restart without
//! running the finished instances again.

use std::time::Duration;

use serde_json::json;
use tokio_stream::StreamExt;
use tributary_e2e::executor::{Handler, Outcome, TestExecutor, handler};
use tributary_e2e::{TestDatabase, TestServer, context, task};
use tributary_proto::v1 as pb;

use crate::cli;
use crate::liveness::{ServerProcess, free_port, poll_run, wait_until_finished};

/// A safety net so a broken engine fails the test instead of hanging it.
const LIMIT: Duration = Duration::from_secs(60);

fn fetch_workflow() -> serde_json::Value {
    json!({"name": "crawl", "tasks": [
        {"id": "list", "handler": "list"},
        {"id": "fetch", "dependencies": ["list"], "handler": "work",
         "map_over": "items", "map_output": "pages", "retry_attempts": 2, "retry_delay_ms": 0},
        {"id": "sink", "dependencies": ["fetch"], "handler": "sink"}
    ]})
}

/// `list` writes `count` items; each instance doubles its element, later
/// elements faster (so they end out of order), and the first attempt of
/// element 3 fails; `sink` counts the pages.
fn crawler(count: usize) -> Handler {
    handler(move |assigned| async move {
        match assigned.handler.as_str() {
            "list" => Outcome::set(json!({"items": (0..count).collect::<Vec<_>>()})),
            "work" => {
                let element = assigned.input["map_element"].as_u64().unwrap_or(0);
                assert_eq!(assigned.input["map_index"], element);
                assert!(assigned.input.get("items").is_none(), "{}", assigned.input);
                if element == 3 && assigned.attempt_number == 1 {
                    return Outcome::fail("flaky");
                }
                let delay = (count as u64).saturating_sub(element) * 5;
                tokio::time::sleep(Duration::from_millis(delay)).await;
                Outcome::set(json!({"pages": element * 2}))
            }
            _ => {
                let pages = assigned.input["pages"].as_array().map_or(0, Vec::len);
                Outcome::set(json!({"pages_seen": pages}))
            }
        }
    })
}

#[tokio::test]
async fn instances_run_per_element_retry_alone_and_gather_in_element_order() {
    let server = TestServer::start().await;
    let registered = server.register("default", fetch_workflow()).await;
    let fetch = registered
        .definition
        .expect("definition")
        .tasks
        .into_iter()
        .find(|task| task.id == "fetch")
        .expect("fetch");
    assert_eq!(
        (fetch.map_over.as_str(), fetch.map_output.as_str()),
        ("items", "pages")
    );
    assert_eq!(fetch.map_max_instances, Some(10_000));
    let _executor = TestExecutor::connect(
        server.channel().await,
        "default",
        &["list", "work", "sink"],
        8,
        crawler(12),
    )
    .await;
    let run_id = server.start_run("default", "crawl", json!({})).await;
    let run = server.wait_for_run("default", &run_id, LIMIT).await;
    assert_eq!(run.status(), pb::RunStatus::Succeeded, "{run:#?}");
    let output = context(&run);
    let expected: Vec<u64> = (0..12).map(|element| element * 2).collect();
    assert_eq!(output["pages"], json!(expected));
    assert_eq!(output["pages_seen"], 12);

    let fetch = task(&run, "fetch");
    assert_eq!(fetch.state(), pb::TaskState::Succeeded);
    assert_eq!(fetch.map_size, 12);
    assert!(
        fetch.attempts.is_empty(),
        "the mapped task itself runs nothing"
    );
    let indexes: Vec<Option<u32>> = fetch.instances.iter().map(|i| i.map_index).collect();
    assert_eq!(indexes, (0..12).map(Some).collect::<Vec<_>>());
    for instance in &fetch.instances {
        assert_eq!(instance.task_id, "fetch");
        assert_eq!(instance.state(), pb::TaskState::Succeeded);
        let expected_attempts = if instance.map_index == Some(3) { 2 } else { 1 };
        assert_eq!(instance.attempts.len(), expected_attempts, "{instance:#?}");
    }
    // The run's tasks are the workflow's: the instances are under fetch.
    assert_eq!(run.tasks.len(), 3);

    let events = history(&server, &run_id).await;
    let mapped: Vec<&pb::RunEvent> = events
        .iter()
        .filter(|event| event.r#type() == pb::RunEventType::TaskMapped)
        .collect();
    assert_eq!(mapped.len(), 1);
    assert_eq!(
        (mapped[0].task_id.as_str(), mapped[0].map_size),
        ("fetch", 12)
    );
    let retried: Vec<Option<u32>> = events
        .iter()
        .filter(|event| event.r#type() == pb::RunEventType::TaskRetryScheduled)
        .map(|event| event.map_index)
        .collect();
    assert_eq!(retried, [Some(3)]);
    let succeeded_instances = events
        .iter()
        .filter(|event| {
            event.r#type() == pb::RunEventType::TaskSucceeded && event.map_index.is_some()
        })
        .count();
    assert_eq!(succeeded_instances, 12);

    // The CLI shows the instances under their task, and names them.
    let url = server.url();
    let shown = cli(&["run", "get", &run_id, "--server", &url]).await;
    assert!(shown.contains("succeeded (12 instances)"), "{shown}");
    assert!(shown.contains("  [11]"), "{shown}");
    let json: serde_json::Value =
        serde_json::from_str(&cli(&["run", "get", &run_id, "--json", "--server", &url]).await)
            .expect("JSON");
    let fetch = json["tasks"]
        .as_array()
        .and_then(|tasks| tasks.iter().find(|task| task["task_id"] == "fetch"))
        .expect("fetch");
    assert_eq!(fetch["map_size"], 12);
    assert_eq!(fetch["instances"][3]["attempts"], 2);
    let watched = cli(&["run", "watch", &run_id, "--server", &url]).await;
    assert!(
        watched.contains("task_mapped            fetch into 12 instances"),
        "{watched}"
    );
    assert!(
        watched.contains("task_retry_scheduled   fetch[3] (attempt 1)"),
        "{watched}"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_empty_array_succeeds_and_a_missing_one_fails_naming_the_key() {
    let server = TestServer::start().await;
    server
        .register(
            "default",
            json!({"name": "over-input", "tasks": [
                {"id": "fetch", "handler": "work", "map_over": "items"},
                {"id": "sink", "dependencies": ["fetch"], "handler": "sink"}
            ]}),
        )
        .await;
    let _executor = TestExecutor::connect(
        server.channel().await,
        "default",
        &["work", "sink"],
        4,
        handler(|assigned| async move {
            Outcome::set(json!({"saw": assigned.input.get("fetch").cloned()}))
        }),
    )
    .await;
    let empty = server
        .start_run("default", "over-input", json!({"items": []}))
        .await;
    let run = server.wait_for_run("default", &empty, LIMIT).await;
    assert_eq!(run.status(), pb::RunStatus::Succeeded, "{run:#?}");
    // The output key defaults to the task's id.
    assert_eq!(context(&run)["fetch"], json!([]));
    assert_eq!(context(&run)["saw"], json!([]));
    assert!(task(&run, "fetch").instances.is_empty());

    let missing = server
        .start_run("default", "over-input", json!({"other": 1}))
        .await;
    let run = server.wait_for_run("default", &missing, LIMIT).await;
    assert_eq!(run.status(), pb::RunStatus::Failed);
    assert_eq!(
        task(&run, "fetch").error,
        "map_over key \"items\" is not in the task's input"
    );
    assert_eq!(task(&run, "sink").state(), pb::TaskState::Skipped);
    server.stop().await;
}

#[tokio::test]
async fn a_retried_run_expands_its_mapped_task_again() {
    let server = TestServer::start().await;
    server
        .register(
            "default",
            json!({"name": "over-input", "tasks": [
                {"id": "fetch", "handler": "work", "map_over": "items", "map_output": "pages"},
                {"id": "sink", "dependencies": ["fetch"], "handler": "sink"}
            ]}),
        )
        .await;
    let broken = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = broken.clone();
    let _executor = TestExecutor::connect(
        server.channel().await,
        "default",
        &["work", "sink"],
        4,
        handler(move |assigned| {
            let broken = flag.load(std::sync::atomic::Ordering::SeqCst);
            async move {
                if assigned.handler == "sink" {
                    return Outcome::set(json!({"sunk": true}));
                }
                if broken && assigned.input["map_index"] == 1 {
                    return Outcome::fail_for_good("element 1 is broken");
                }
                Outcome::set(json!({"pages": assigned.input["map_element"]}))
            }
        }),
    )
    .await;
    let run_id = server
        .start_run("default", "over-input", json!({"items": ["x", "y", "z"]}))
        .await;
    let run = server.wait_for_run("default", &run_id, LIMIT).await;
    assert_eq!(run.status(), pb::RunStatus::Failed);
    assert_eq!(
        task(&run, "fetch").error,
        "1 of 3 map instances failed; the first, instance 1: element 1 is broken"
    );
    broken.store(false, std::sync::atomic::Ordering::SeqCst);
    let retried = server
        .run_client("default")
        .await
        .retry_run(pb::RetryRunRequest {
            run_id: run_id.clone(),
            ..pb::RetryRunRequest::default()
        })
        .await
        .expect("retries")
        .into_inner();
    assert_eq!(retried.retried_task_ids, ["fetch", "sink"]);
    let run = server
        .wait_until("default", &run_id, LIMIT, |run| {
            run.status() == pb::RunStatus::Succeeded
        })
        .await;
    assert_eq!(context(&run)["pages"], json!(["x", "y", "z"]));
    let fetch = task(&run, "fetch");
    assert_eq!(fetch.map_size, 3);
    for instance in &fetch.instances {
        // The first expansion's instances were replaced by the second's.
        assert_eq!(instance.attempts.len(), 1, "{instance:#?}");
        assert_eq!(instance.state(), pb::TaskState::Succeeded);
    }
    server.stop().await;
}

#[tokio::test]
async fn a_server_killed_halfway_through_a_map_finishes_it_after_the_restart() {
    let database = TestDatabase::fresh().await;
    let port = free_port();
    let server = ServerProcess::start(&database, port, None).await;
    server.register(fetch_workflow()).await;
    // Elements below 4 succeed; the others hang until the server dies.
    let first = TestExecutor::connect(
        server.channel().await,
        "default",
        &["list", "work"],
        2,
        handler(|assigned| async move {
            if assigned.handler == "list" {
                return Outcome::set(json!({"items": ["a", "b", "c", "d", "e", "f", "g"]}));
            }
            let index = assigned.input["map_index"].as_u64().unwrap_or(0);
            if index >= 4 {
                std::future::pending::<()>().await;
            }
            Outcome::set(json!({"pages": assigned.input["map_element"]}))
        }),
    )
    .await;
    let mut client = server.run_client().await;
    let run_id = client
        .start_run(pb::StartRunRequest {
            workflow_name: "crawl".into(),
            ..pb::StartRunRequest::default()
        })
        .await
        .expect("starts")
        .into_inner()
        .run_id;
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let run = get(&mut client, &run_id).await;
        let done = task(&run, "fetch")
            .instances
            .iter()
            .filter(|instance| instance.state() == pb::TaskState::Succeeded)
            .count();
        if done == 4 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{run:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill().await;
    first.kill();

    let server = ServerProcess::start(&database, port, None).await;
    let mut client = server.run_client().await;
    let restored = get(&mut client, &run_id).await;
    assert_eq!(task(&restored, "fetch").map_size, 7);
    // The instance never assigned waits, saying why, under its task.
    let waiting = poll_run(&mut client, &run_id, false, |run| {
        task(run, "fetch").instances[6].waiting_reason() == pb::WaitingReason::NoExecutor
    })
    .await;
    let last = &task(&waiting, "fetch").instances[6];
    assert!(last.waiting_message.contains("\"work\""), "{last:#?}");
    let second = TestExecutor::connect(
        server.channel().await,
        "default",
        &["work", "sink"],
        4,
        handler(|assigned| async move {
            if assigned.handler == "sink" {
                return Outcome::set(json!({"sunk": true}));
            }
            Outcome::set(json!({"pages": assigned.input["map_element"]}))
        }),
    )
    .await;
    let run = wait_until_finished(&mut client, &run_id).await;
    assert_eq!(run.status(), pb::RunStatus::Succeeded, "{run:#?}");
    assert_eq!(
        context(&run)["pages"],
        json!(["a", "b", "c", "d", "e", "f", "g"])
    );
    let fetch = task(&run, "fetch");
    let second_id = second.executor_id();
    for instance in &fetch.instances {
        assert_eq!(instance.state(), pb::TaskState::Succeeded);
        let last = instance.attempts.last().expect("an attempt");
        if instance.map_index < Some(4) {
            // The finished instances were not run again.
            assert_eq!(instance.attempts.len(), 1, "{instance:#?}");
        } else {
            // The two held by the killed executor were lost and run again;
            // the one never assigned ran once.
            assert_eq!(last.executor_id, second_id, "{instance:#?}");
            let lost = instance
                .attempts
                .iter()
                .filter(|attempt| attempt.state() == pb::AttemptState::Lost)
                .count();
            assert_eq!(instance.attempts.len(), lost + 1, "{instance:#?}");
        }
    }
    let lost_in_total: usize = fetch
        .instances
        .iter()
        .map(|instance| instance.attempts.len() - 1)
        .sum();
    assert_eq!(
        lost_in_total, 2,
        "capacity 2 held two instances at the kill"
    );
    server.kill().await;
}

async fn get(
    client: &mut tributary_proto::v1::run_service_client::RunServiceClient<
        tonic::transport::Channel,
    >,
    run_id: &str,
) -> pb::Run {
    client
        .get_run(pb::GetRunRequest {
            run_id: run_id.to_owned(),
            omit_contexts: false,
            ..Default::default()
        })
        .await
        .expect("run exists")
        .into_inner()
        .run
        .expect("run")
}

/// The run's whole event log, through `WatchRun`.
async fn history(server: &TestServer, run_id: &str) -> Vec<pb::RunEvent> {
    let mut stream = server
        .run_client("default")
        .await
        .watch_run(pb::WatchRunRequest {
            run_id: run_id.to_owned(),
            after_sequence: 0,
        })
        .await
        .expect("watches")
        .into_inner();
    let mut events = Vec::new();
    while let Some(message) = tokio::time::timeout(LIMIT, stream.next())
        .await
        .expect("events in time")
    {
        let event = message.expect("event").event.expect("event");
        let finished = event.r#type() == pb::RunEventType::RunFinished;
        events.push(event);
        if finished {
            break;
        }
    }
    events
}
