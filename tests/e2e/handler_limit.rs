//! A task's `max_in_flight`: however many executors and free slots serve
//! its handler, at most that many attempts of the handler are in flight at
//! once across the namespace; the tasks beyond it wait READY and `GetRun`
//! says why; attempts of the handler's tasks without a limit count too; and
//! after a server SIGKILL the limit holds with the reclaimed attempts
//! counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::sync::Semaphore;
use tributary_e2e::executor::{Handler, Outcome, TestExecutor, handler};
use tributary_e2e::resilient::ResilientExecutor;
use tributary_e2e::scrape::scrape;
use tributary_e2e::{TestDatabase, TestServer, task};
use tributary_proto::v1 as pb;

use crate::liveness::{ServerProcess, free_port, wait_until_finished};

/// A safety net so a broken engine fails the test instead of hanging it.
const LIMIT: Duration = Duration::from_secs(60);

/// Attempts of the handler running across every executor, and the most
/// seen at once.
#[derive(Default)]
struct Concurrency {
    running: AtomicUsize,
    most: AtomicUsize,
}

/// A handler that holds each attempt until the test adds a permit, counting
/// how many run at once across every executor sharing it.
fn gated(gate: Arc<Semaphore>, seen: Arc<Concurrency>) -> Handler {
    handler(move |assigned| {
        let gate = gate.clone();
        let seen = seen.clone();
        async move {
            let now = seen.running.fetch_add(1, Ordering::SeqCst) + 1;
            seen.most.fetch_max(now, Ordering::SeqCst);
            if let Ok(permit) = gate.acquire().await {
                permit.forget();
            }
            seen.running.fetch_sub(1, Ordering::SeqCst);
            Outcome::set(json!({ assigned.task_id: true }))
        }
    })
}

fn tasks_in(run: &pb::Run, state: pb::TaskState) -> usize {
    run.tasks
        .iter()
        .filter(|task| task.state() == state)
        .count()
}

fn in_flight(run: &pb::Run) -> usize {
    tasks_in(run, pb::TaskState::Assigned) + tasks_in(run, pb::TaskState::Running)
}

#[tokio::test]
async fn attempts_of_a_limited_handler_stay_within_max_in_flight_across_executors() {
    let server = TestServer::start().await;
    let registered = server
        .register(
            "default",
            json!({"name": "charge", "tasks": [
                {"id": "c1", "handler": "api", "max_in_flight": 2},
                {"id": "c2", "handler": "api", "max_in_flight": 2},
                {"id": "c3", "handler": "api", "max_in_flight": 2},
                {"id": "c4", "handler": "api", "max_in_flight": 2},
                {"id": "c5", "handler": "api", "max_in_flight": 2},
                {"id": "free", "handler": "api"}
            ]}),
        )
        .await;
    let stored = registered.definition.expect("definition");
    assert_eq!(task_definition(&stored, "c1").max_in_flight, Some(2));
    assert_eq!(task_definition(&stored, "free").max_in_flight, None);

    let gate = Arc::new(Semaphore::new(0));
    let seen = Arc::new(Concurrency::default());
    // Eight free slots on two executors: only the limit holds tasks back.
    let first = TestExecutor::connect(
        server.channel().await,
        "default",
        &["api"],
        4,
        gated(gate.clone(), seen.clone()),
    )
    .await;
    let second = TestExecutor::connect(
        server.channel().await,
        "default",
        &["api"],
        4,
        gated(gate.clone(), seen.clone()),
    )
    .await;

    let run_id = server.start_run("default", "charge", json!({})).await;
    // `free` has no limit and goes out at once; its attempt counts against
    // the limit of the others, so only one of them joins it.
    let waiting = server
        .wait_until("default", &run_id, LIMIT, |run| {
            in_flight(run) == 2
                && run
                    .tasks
                    .iter()
                    .any(|task| task.waiting_reason() == pb::WaitingReason::HandlerLimit)
        })
        .await;
    assert!(
        matches!(
            task(&waiting, "free").state(),
            pb::TaskState::Assigned | pb::TaskState::Running
        ),
        "{waiting:#?}"
    );
    assert_eq!(tasks_in(&waiting, pb::TaskState::Ready), 4, "{waiting:#?}");
    let held_back = waiting
        .tasks
        .iter()
        .find(|task| task.state() == pb::TaskState::Ready)
        .expect("a READY task");
    assert_eq!(held_back.waiting_reason(), pb::WaitingReason::HandlerLimit);
    assert_eq!(
        held_back.waiting_message,
        "the task's max_in_flight of 2 attempts of handler \"api\" in flight in namespace \"default\" is reached"
    );

    let scraped = scrape(server.local_addr()).await;
    let api = [("namespace", "default"), ("handler", "api")];
    assert_eq!(
        scraped.value("tributary_handler_attempts_in_flight", &api),
        2.0
    );
    assert_eq!(scraped.value("tributary_ready_tasks_waiting", &api), 4.0);
    assert_eq!(
        scraped.value(
            "tributary_handler_slots",
            &[("handler", "api"), ("state", "free")]
        ),
        6.0
    );

    // One attempt ends at a time; the next limited task takes its place.
    for _ in 0..6 {
        gate.add_permits(1);
    }
    let run = server.wait_for_run("default", &run_id, LIMIT).await;
    assert_eq!(run.status(), pb::RunStatus::Succeeded, "{run:#?}");
    assert_eq!(seen.most.load(Ordering::SeqCst), 2);
    let assigned = first.observed.lock().expect("lock").assigned.len()
        + second.observed.lock().expect("lock").assigned.len();
    assert_eq!(assigned, 6);
    server.stop().await;
}

#[tokio::test]
async fn the_limit_is_per_namespace_and_shown_by_workflow_get() {
    let server = TestServer::start().await;
    let definition = json!({"name": "charge", "tasks": [
        {"id": "c1", "handler": "api", "max_in_flight": 1},
        {"id": "c2", "handler": "api", "max_in_flight": 1}
    ]});
    server.register("default", definition.clone()).await;
    server.register("finance", definition).await;
    let gate = Arc::new(Semaphore::new(0));
    let seen = Arc::new(Concurrency::default());
    let _default = TestExecutor::connect(
        server.channel().await,
        "default",
        &["api"],
        4,
        gated(gate.clone(), seen.clone()),
    )
    .await;
    let finance_seen = Arc::new(Concurrency::default());
    let _finance = TestExecutor::connect(
        server.channel().await,
        "finance",
        &["api"],
        4,
        gated(gate.clone(), finance_seen.clone()),
    )
    .await;
    let in_default = server.start_run("default", "charge", json!({})).await;
    let in_finance = server.start_run("finance", "charge", json!({})).await;
    // Each namespace has its own count: one attempt in flight in each.
    for (namespace, run_id) in [("default", &in_default), ("finance", &in_finance)] {
        let run = server
            .wait_until(namespace, run_id, LIMIT, |run| {
                in_flight(run) == 1 && tasks_in(run, pb::TaskState::Ready) == 1
            })
            .await;
        let ready = run
            .tasks
            .iter()
            .find(|task| task.state() == pb::TaskState::Ready)
            .expect("a READY task");
        assert_eq!(ready.waiting_reason(), pb::WaitingReason::HandlerLimit);
    }

    let url = server.url();
    let shown = cli(&["workflow", "get", "charge", "--server", &url]).await;
    assert!(shown.contains("MAX IN FLIGHT"), "{shown}");
    let c1 = shown
        .lines()
        .find(|line| line.starts_with("c1"))
        .expect("a row for c1");
    assert!(c1.split_whitespace().any(|cell| cell == "1"), "{shown}");
    let waiting = cli(&["run", "get", &in_default, "--server", &url]).await;
    assert!(
        waiting.contains("waiting: the task's max_in_flight of 1 attempts of handler \"api\""),
        "{waiting}"
    );

    gate.add_permits(4);
    for (namespace, run_id) in [("default", &in_default), ("finance", &in_finance)] {
        let run = server.wait_for_run(namespace, run_id, LIMIT).await;
        assert_eq!(run.status(), pb::RunStatus::Succeeded, "{run:#?}");
    }
    assert_eq!(seen.most.load(Ordering::SeqCst), 1);
    assert_eq!(finance_seen.most.load(Ordering::SeqCst), 1);
    server.stop().await;
}

#[tokio::test]
async fn after_a_server_kill_the_reclaimed_attempt_still_counts_against_the_limit() {
    let database = TestDatabase::fresh().await;
    let port = free_port();
    let server = ServerProcess::start(&database, port, None).await;
    server
        .register(json!({"name": "charge", "tasks": [
            {"id": "c1", "handler": "api", "max_in_flight": 1},
            {"id": "c2", "handler": "api", "max_in_flight": 1},
            {"id": "c3", "handler": "api", "max_in_flight": 1}
        ]}))
        .await;
    let gate = Arc::new(Semaphore::new(0));
    let seen = Arc::new(Concurrency::default());
    let executor = ResilientExecutor::start(
        format!("http://127.0.0.1:{port}"),
        vec!["api".into()],
        4,
        gated(gate.clone(), seen.clone()),
    );
    let mut client = server.run_client().await;
    let run_id = client
        .start_run(pb::StartRunRequest {
            workflow_name: "charge".into(),
            ..pb::StartRunRequest::default()
        })
        .await
        .expect("starts")
        .into_inner()
        .run_id;
    let holding = wait_for(&mut client, &run_id, |run| {
        tasks_in(run, pb::TaskState::Running) == 1 && tasks_in(run, pb::TaskState::Ready) == 2
    })
    .await;
    let held = holding
        .tasks
        .iter()
        .find(|task| task.state() == pb::TaskState::Running)
        .expect("a RUNNING task")
        .attempts[0]
        .id
        .clone();
    server.kill().await;

    let server = ServerProcess::start(&database, port, None).await;
    let mut client = server.run_client().await;
    // The executor comes back holding the attempt; the two other tasks
    // still wait for it, with four free slots on the executor.
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !executor
        .stats
        .lock()
        .expect("lock")
        .reported_held
        .contains(&held)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the executor never re-registered"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let waiting = wait_for(&mut client, &run_id, |run| {
        run.tasks
            .iter()
            .filter(|task| task.waiting_reason() == pb::WaitingReason::HandlerLimit)
            .count()
            == 2
    })
    .await;
    assert_eq!(in_flight(&waiting), 1, "{waiting:#?}");

    gate.add_permits(3);
    let run = wait_until_finished(&mut client, &run_id).await;
    assert_eq!(run.status(), pb::RunStatus::Succeeded, "{run:#?}");
    assert_eq!(seen.most.load(Ordering::SeqCst), 1);
    // The held attempt was reclaimed, not run again.
    let reran = run
        .tasks
        .iter()
        .filter(|task| task.attempts.len() > 1)
        .count();
    assert_eq!(reran, 0, "{run:#?}");
    executor.stop().await;
    server.kill().await;
}

fn task_definition<'a>(definition: &'a pb::WorkflowDefinition, id: &str) -> &'a pb::TaskDefinition {
    definition
        .tasks
        .iter()
        .find(|task| task.id == id)
        .expect("the task is defined")
}

/// Polls `GetRun` on a server process until `done` holds (the limit is a
/// safety net, not an assertion about speed).
async fn wait_for(
    client: &mut tributary_proto::v1::run_service_client::RunServiceClient<
        tonic::transport::Channel,
    >,
    run_id: &str,
    done: impl Fn(&pb::Run) -> bool,
) -> pb::Run {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let run = client
            .get_run(pb::GetRunRequest {
                run_id: run_id.to_owned(),
                omit_contexts: true,
            })
            .await
            .expect("run")
            .into_inner()
            .run
            .expect("run");
        if done(&run) {
            return run;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never reached: {run:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn cli(arguments: &[&str]) -> String {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_test_server"))
        .args(arguments)
        .output()
        .await
        .expect("the CLI runs");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).expect("UTF-8 output")
}
