//! Executors die, servers are killed: nothing is lost or applied twice.
//! Executors and servers run as real processes where a test kills them.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::process::{Child, Command};
use tonic::transport::Endpoint;
use tributary_e2e::executor::{Outcome, TestExecutor, handler};
use tributary_e2e::resilient::ResilientExecutor;
use tributary_e2e::{TestDatabase, TestServer, context, task};
use tributary_proto::v1 as pb;
use tributary_proto::v1::run_service_client::RunServiceClient;
use tributary_proto::v1::workflow_service_client::WorkflowServiceClient;

const LIMIT: Duration = Duration::from_secs(60);

fn short_leases(config: &mut tributary_server::config::ServeConfig) {
    config.heartbeat_interval_ms = 100;
    config.lease_timeout_ms = 500;
}

fn spawn_executor_process(url: &str, handler_name: &str, mode: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_test_executor"))
        .args([url, handler_name, mode])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("test executor starts")
}

#[tokio::test]
async fn an_executor_killed_mid_attempt_loses_it_to_another_and_its_late_result_is_stale() {
    let server = TestServer::start_with(short_leases).await;
    server
        .register("default", json!({"name": "w", "tasks": [{"id": "a"}]}))
        .await;
    let mut doomed = spawn_executor_process(&server.url(), "w.a", "hang");
    let run_id = server.start_run("default", "w", json!({})).await;
    server
        .wait_until("default", &run_id, LIMIT, |run| {
            task(run, "a").state() == pb::TaskState::Running
        })
        .await;
    doomed.kill().await.expect("killed");
    let survivor = TestExecutor::connect(
        server.channel().await,
        "default",
        &["w.a"],
        1,
        handler(|_| async { Outcome::set(json!({"by": "survivor"})) }),
    )
    .await;
    let run = server.wait_for_run("default", &run_id, LIMIT).await;
    assert_eq!(run.status(), pb::RunStatus::Succeeded);
    let attempts = &task(&run, "a").attempts;
    assert_eq!(
        attempts.len(),
        2,
        "no retry budget was needed: losing an executor is free"
    );
    assert_eq!(attempts[0].state(), pb::AttemptState::Lost);
    assert_eq!(attempts[1].state(), pb::AttemptState::Succeeded);
    assert_eq!(attempts[1].executor_id, survivor.executor_id());
    // The dead executor's attempt, reported by another instance, is not
    // that instance's to report: nothing changes.
    survivor
        .send(pb::connect_request::Message::Completed(pb::Completed {
            attempt_id: attempts[0].id.clone(),
            set_json: "{\"by\": \"ghost\"}".into(),
            removed_keys: vec![],
        }))
        .await;
    wait_for_ack(&survivor, &attempts[0].id, pb::ResultDisposition::NotHeld).await;
    // A duplicate of the accepted result is acknowledged again, applied once.
    survivor
        .send(pb::connect_request::Message::Completed(pb::Completed {
            attempt_id: attempts[1].id.clone(),
            set_json: "{\"by\": \"duplicate\"}".into(),
            removed_keys: vec![],
        }))
        .await;
    let accepted = survivor
        .acks()
        .iter()
        .filter(|(attempt, _)| *attempt == attempts[1].id)
        .count();
    assert!(accepted >= 1);
    wait_for_acks(
        &survivor,
        &attempts[1].id,
        pb::ResultDisposition::Accepted,
        2,
    )
    .await;
    let run = server.get_run("default", &run_id).await;
    assert_eq!(context(&run), json!({"by": "survivor"}));
    server.stop().await;
}

async fn wait_for_ack(
    executor: &TestExecutor,
    attempt_id: &str,
    disposition: pb::ResultDisposition,
) {
    wait_for_acks(executor, attempt_id, disposition, 1).await;
}

async fn wait_for_acks(
    executor: &TestExecutor,
    attempt_id: &str,
    disposition: pb::ResultDisposition,
    count: usize,
) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let seen = executor
            .acks()
            .iter()
            .filter(|(attempt, d)| attempt == attempt_id && *d == disposition as i32)
            .count();
        if seen >= count {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "acks so far: {:?}",
            executor.acks()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_silent_executor_is_dropped_within_its_lease_and_its_work_requeued() {
    let server = TestServer::start_with(short_leases).await;
    server
        .register("default", json!({"name": "w", "tasks": [{"id": "a"}]}))
        .await;
    let silent = TestExecutor::connect(
        server.channel().await,
        "default",
        &["w.a"],
        1,
        handler(|_| async { Outcome::HangUntilCancelled }),
    )
    .await;
    let run_id = server.start_run("default", "w", json!({})).await;
    server
        .wait_until("default", &run_id, LIMIT, |run| {
            task(run, "a").state() == pb::TaskState::Running
        })
        .await;
    // The stream stays open; only the heartbeats stop.
    silent.go_silent();
    let healthy = TestExecutor::connect(
        server.channel().await,
        "default",
        &["w.a"],
        1,
        handler(|_| async { Outcome::set(json!({"done": true})) }),
    )
    .await;
    let run = server.wait_for_run("default", &run_id, LIMIT).await;
    assert_eq!(run.status(), pb::RunStatus::Succeeded);
    let attempts = &task(&run, "a").attempts;
    assert_eq!(attempts[0].executor_id, silent.executor_id());
    assert_eq!(attempts[0].state(), pb::AttemptState::Lost);
    assert_eq!(attempts[1].executor_id, healthy.executor_id());
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !silent.is_closed() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server never closed the silent stream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn an_executor_that_crashes_on_every_attempt_fails_the_task_after_max_reassignments() {
    let server = TestServer::start_with(|config| {
        short_leases(config);
        config.max_reassignments = 2;
    })
    .await;
    server
        .register(
            "default",
            json!({"name": "poison", "tasks": [{"id": "bad", "retry_attempts": 5}]}),
        )
        .await;
    server
        .register("default", json!({"name": "fine", "tasks": [{"id": "ok"}]}))
        .await;
    let _healthy = TestExecutor::connect(
        server.channel().await,
        "default",
        &["fine.ok"],
        1,
        handler(|_| async { Outcome::set(json!({"ok": true})) }),
    )
    .await;
    let poison_run = server.start_run("default", "poison", json!({})).await;
    let mut crashes = 0;
    loop {
        let run = server.get_run("default", &poison_run).await;
        if run.status() == pb::RunStatus::Failed {
            break;
        }
        assert!(crashes < 10, "the task should have failed by now: {run:#?}");
        let mut executor = spawn_executor_process(&server.url(), "poison.bad", "exit-on-assign");
        let status = executor.wait().await.expect("exits");
        assert_eq!(
            status.code(),
            Some(3),
            "the executor crashed on its attempt"
        );
        crashes += 1;
        // The next executor starts once the crash was noticed.
        server
            .wait_until("default", &poison_run, LIMIT, |run| {
                run.status() == pb::RunStatus::Failed
                    || task(run, "bad").state() == pb::TaskState::Ready
            })
            .await;
    }
    assert_eq!(crashes, 3);
    let run = server.get_run("default", &poison_run).await;
    let bad = task(&run, "bad");
    assert_eq!(bad.state(), pb::TaskState::Failed);
    assert_eq!(
        bad.error,
        "the task lost its executor 3 times (max_reassignments is 2)"
    );
    assert!(
        bad.attempts
            .iter()
            .all(|a| a.state() == pb::AttemptState::Lost)
    );
    let fine_run = server.start_run("default", "fine", json!({})).await;
    let fine = server.wait_for_run("default", &fine_run, LIMIT).await;
    assert_eq!(fine.status(), pb::RunStatus::Succeeded);
    server.stop().await;
}

/// The server as a child process on a fixed port, so that executors can
/// reconnect to the same address after it is killed and restarted.
pub(crate) struct ServerProcess {
    child: Child,
    url: String,
}

impl ServerProcess {
    pub(crate) async fn start(
        database: &TestDatabase,
        port: u16,
        crash_after_commits: Option<u64>,
    ) -> ServerProcess {
        let crash = crash_after_commits.map(|commits| commits.to_string());
        let environment: Vec<(&str, &str)> = crash
            .as_deref()
            .map(|commits| ("TRIBUTARY_TEST_CRASH_AFTER_COMMITS", commits))
            .into_iter()
            .collect();
        ServerProcess::start_with_env(database, port, &environment).await
    }

    /// Starts the server with these environment variables (fault-injection
    /// hooks).
    pub(crate) async fn start_with_env(
        database: &TestDatabase,
        port: u16,
        environment: &[(&str, &str)],
    ) -> ServerProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_test_server"));
        command
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--database-url",
                database.url(),
                "--heartbeat-interval-ms",
                "100",
                "--lease-timeout-ms",
                "1000",
                "--log-level",
                "error",
            ])
            .stdout(Stdio::null())
            .kill_on_drop(true);
        command.envs(environment.iter().copied());
        let mut child = command.spawn().expect("server starts");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + LIMIT;
        loop {
            // Whatever answers on the port must be this process.
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the server on port {port} exited before serving: {status}");
            }
            let endpoint = Endpoint::from_shared(url.clone()).expect("valid URL");
            if let Ok(channel) = endpoint.connect().await {
                let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
                if let Ok(response) = health
                    .check(tonic_health::pb::HealthCheckRequest::default())
                    .await
                    && response.into_inner().status
                        == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
                {
                    break;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "server did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ServerProcess { child, url }
    }

    pub(crate) async fn kill(mut self) {
        let _ = self.child.kill().await;
    }

    /// Waits until the process ends by itself (a crash point: true) or
    /// every run is terminal (false).
    async fn crashes_before_runs_finish(&mut self, run_ids: &[String]) -> bool {
        let deadline = tokio::time::Instant::now() + LIMIT;
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            if let Ok(mut client) = self.try_run_client().await {
                let mut all_done = true;
                for run_id in run_ids {
                    match client
                        .get_run(pb::GetRunRequest {
                            run_id: run_id.clone(),
                            omit_contexts: false,
                            ..Default::default()
                        })
                        .await
                    {
                        Ok(response) => {
                            let status = response.into_inner().run.map(|run| run.status());
                            all_done &= matches!(
                                status,
                                Some(pb::RunStatus::Succeeded | pb::RunStatus::Failed)
                            );
                        }
                        Err(_) => all_done = false,
                    }
                }
                if all_done {
                    return false;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "neither crashed nor finished"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn try_run_client(
        &self,
    ) -> Result<RunServiceClient<tonic::transport::Channel>, tonic::transport::Error> {
        let channel = Endpoint::from_shared(self.url.clone())?.connect().await?;
        Ok(RunServiceClient::new(channel))
    }

    /// Registers a definition given in the definition-file JSON format.
    pub(crate) async fn register(&self, definition: serde_json::Value) {
        let input: tributary_core::WorkflowDefinition =
            serde_json::from_value(definition).expect("definition format");
        let channel = Endpoint::from_shared(self.url.clone())
            .expect("valid URL")
            .connect()
            .await
            .expect("connects");
        WorkflowServiceClient::new(channel)
            .register_workflow(pb::RegisterWorkflowRequest {
                definition: Some(pb::WorkflowDefinition::from(&input)),
            })
            .await
            .expect("registers");
    }

    pub(crate) async fn channel(&self) -> tonic::transport::Channel {
        Endpoint::from_shared(self.url.clone())
            .expect("valid URL")
            .connect()
            .await
            .expect("connects")
    }

    pub(crate) async fn run_client(&self) -> RunServiceClient<tonic::transport::Channel> {
        let channel = Endpoint::from_shared(self.url.clone())
            .expect("valid URL")
            .connect()
            .await
            .expect("connects");
        RunServiceClient::new(channel)
    }
}

/// Polls `GetRun` on a server process until the run succeeded or failed
/// (the limit is a safety net, not an assertion about speed).
pub(crate) async fn wait_until_finished(
    client: &mut RunServiceClient<tonic::transport::Channel>,
    run_id: &str,
) -> pb::Run {
    poll_run(client, run_id, false, |run| {
        run.status() == pb::RunStatus::Succeeded || run.status() == pb::RunStatus::Failed
    })
    .await
}

/// Polls `GetRun` on a server process (with or without the contexts) until
/// `done` holds (the limit is a safety net, not an assertion about speed).
pub(crate) async fn poll_run(
    client: &mut RunServiceClient<tonic::transport::Channel>,
    run_id: &str,
    omit_contexts: bool,
    done: impl Fn(&pb::Run) -> bool,
) -> pb::Run {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let run = client
            .get_run(pb::GetRunRequest {
                run_id: run_id.to_owned(),
                omit_contexts,
                ..Default::default()
            })
            .await
            .expect("run exists")
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

/// A port for a server the test kills and starts again on it.
pub(crate) use tributary_e2e::ports::reserved_port as free_port;

/// Every task writes `{task: sum of its input's numbers + 1}`, so the final
/// context is fixed by the DAG alone.
fn counting_handler() -> tributary_e2e::executor::Handler {
    handler(|assigned| async move {
        let sum: i64 = assigned
            .input
            .as_object()
            .map(|object| object.values().filter_map(|v| v.as_i64()).sum())
            .unwrap_or(0);
        Outcome::set(json!({ assigned.task_id: sum + 1 }))
    })
}

fn layered_workflow() -> (serde_json::Value, serde_json::Value) {
    let tasks = json!([
        {"id": "a", "handler": "count"},
        {"id": "b", "dependencies": ["a"], "handler": "count"},
        {"id": "c", "dependencies": ["a"], "handler": "count"},
        {"id": "d", "dependencies": ["b", "c"], "handler": "count"},
        {"id": "e", "dependencies": ["d"], "handler": "count"},
        {"id": "f", "dependencies": ["d"], "handler": "count"},
        {"id": "g", "dependencies": ["e", "f"], "handler": "count"}
    ]);
    // a=1, b=c=2, d=1+2+2+1=6, e=f=1+2+2+6+1=12, g=1+2+2+6+12+12+1=36
    let expected = json!({"a": 1, "b": 2, "c": 2, "d": 6, "e": 12, "f": 12, "g": 36});
    (json!({"name": "layers", "tasks": tasks}), expected)
}

#[tokio::test]
async fn a_server_killed_at_many_points_finishes_every_run_with_each_result_applied_once() {
    let database = TestDatabase::fresh().await;
    let port = free_port();
    let server = ServerProcess::start(&database, port, None).await;
    let (definition, expected) = layered_workflow();
    server.register(definition).await;
    let mut run_ids = Vec::new();
    let mut client = server.run_client().await;
    for _ in 0..3 {
        run_ids.push(
            client
                .start_run(pb::StartRunRequest {
                    workflow_name: "layers".into(),
                    ..pb::StartRunRequest::default()
                })
                .await
                .expect("starts")
                .into_inner()
                .run_id,
        );
    }
    // No executor yet: kill the server with all runs pending.
    server.kill().await;
    let executor = ResilientExecutor::start(
        format!("http://127.0.0.1:{port}"),
        vec!["count".into()],
        4,
        counting_handler(),
    );
    // Restart with crash points at different depths: each server dies right
    // after that many commits, before acting on the last one.
    let mut crashes = 0;
    for crash_after in [1, 2, 3, 5, 1, 8, 2] {
        let mut server = ServerProcess::start(&database, port, Some(crash_after)).await;
        if !server.crashes_before_runs_finish(&run_ids).await {
            server.kill().await;
            break; // Every run finished before the crash point.
        }
        crashes += 1;
    }
    // The early crash points come before the runs can possibly finish.
    assert!(crashes >= 3, "only {crashes} crash points were reached");
    let server = ServerProcess::start(&database, port, None).await;
    let mut client = server.run_client().await;
    for run_id in &run_ids {
        let run = wait_until_finished(&mut client, run_id).await;
        assert_eq!(run.status(), pb::RunStatus::Succeeded);
        assert_eq!(context(&run), expected, "run {run_id}");
        for task_run in &run.tasks {
            let succeeded = task_run
                .attempts
                .iter()
                .filter(|a| a.state() == pb::AttemptState::Succeeded)
                .count();
            assert_eq!(
                succeeded, 1,
                "task {} of run {run_id}: {task_run:#?}",
                task_run.task_id
            );
        }
    }
    // In the database: one delta per task of every run, no more.
    let pool = sqlx_pool(&database).await;
    for run_id in &run_ids {
        let deltas = pool.count_deltas(run_id).await;
        assert_eq!(deltas, 7, "run {run_id}");
    }
    executor.stop().await;
    server.kill().await;
}

#[tokio::test]
async fn executors_reclaim_their_attempts_after_a_restart_without_rerunning_them() {
    reclaim_after_a_restart(0).await;
}

/// The reclaim window opens when the restarted server accepts connections,
/// however long recovery took, and recovery reads active runs in batches:
/// with thousands of active runs the held attempt is still reclaimed.
#[tokio::test]
async fn attempts_are_reclaimed_after_a_restart_with_thousands_of_active_runs() {
    reclaim_after_a_restart(3_000).await;
}

/// Starts `backlog` runs of a workflow nobody serves, so that they stay
/// active, 32 calls at a time.
async fn start_backlog(server: &ServerProcess, backlog: usize) {
    if backlog == 0 {
        return;
    }
    server
        .register(json!({"name": "backlog", "tasks": [{"id": "wait", "handler": "nobody"}]}))
        .await;
    let client = server.run_client().await;
    let mut started = 0;
    while started < backlog {
        let batch = (backlog - started).min(32);
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..batch {
            let mut client = client.clone();
            calls.spawn(async move {
                client
                    .start_run(pb::StartRunRequest {
                        workflow_name: "backlog".into(),
                        ..pb::StartRunRequest::default()
                    })
                    .await
                    .expect("starts");
            });
        }
        while let Some(joined) = calls.join_next().await {
            joined.expect("the call ran");
        }
        started += batch;
    }
}

async fn reclaim_after_a_restart(backlog: usize) {
    let database = TestDatabase::fresh().await;
    let port = free_port();
    let server = ServerProcess::start(&database, port, None).await;
    start_backlog(&server, backlog).await;
    server
        .register(json!({"name": "slow", "tasks": [
            {"id": "long", "handler": "long"},
            {"id": "after", "dependencies": ["long"], "handler": "long"}
        ]}))
        .await;
    let (release, released) = tokio::sync::watch::channel(false);
    let released = Arc::new(released);
    let executor = ResilientExecutor::start(
        server.url.clone(),
        vec!["long".into()],
        2,
        handler(move |assigned| {
            let mut released = (*released).clone();
            async move {
                if assigned.task_id == "long" {
                    let _ = released.wait_for(|go| *go).await;
                }
                Outcome::set(json!({ assigned.task_id: assigned.attempt_number }))
            }
        }),
    );
    let mut client = server.run_client().await;
    let run_id = client
        .start_run(pb::StartRunRequest {
            workflow_name: "slow".into(),
            ..pb::StartRunRequest::default()
        })
        .await
        .expect("starts")
        .into_inner()
        .run_id;
    let deadline = tokio::time::Instant::now() + LIMIT;
    let attempt_id = loop {
        let run = client
            .get_run(pb::GetRunRequest {
                run_id: run_id.clone(),
                omit_contexts: false,
                ..Default::default()
            })
            .await
            .expect("run")
            .into_inner()
            .run
            .expect("run");
        if task(&run, "long").state() == pb::TaskState::Running {
            break task(&run, "long").attempts[0].id.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    server.kill().await;
    let server = ServerProcess::start(&database, port, None).await;
    // Let the attempt finish only once the executor has re-registered with it.
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !executor
        .stats
        .lock()
        .expect("lock")
        .reported_held
        .contains(&attempt_id)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the executor never re-registered"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    release.send(true).expect("release");
    let mut client = server.run_client().await;
    let run = wait_until_finished(&mut client, &run_id).await;
    assert_eq!(run.status(), pb::RunStatus::Succeeded);
    let long = task(&run, "long");
    assert_eq!(
        long.attempts.len(),
        1,
        "the reclaimed attempt was not re-queued"
    );
    assert_eq!(long.attempts[0].id, attempt_id);
    let executions = executor
        .stats
        .lock()
        .expect("lock")
        .executions
        .get(&(run_id.clone(), "long".to_owned()))
        .copied();
    assert_eq!(executions, Some(1), "the handler ran once");
    // The run's log says which executor reclaimed the attempt.
    let mut history = client
        .watch_run(pb::WatchRunRequest {
            run_id: run_id.clone(),
            after_sequence: 0,
        })
        .await
        .expect("watch")
        .into_inner();
    let mut reclaimed = Vec::new();
    while let Some(response) = history.message().await.expect("history") {
        let event = response.event.expect("event");
        if event.r#type == pb::RunEventType::ExecutorConnected as i32 {
            reclaimed.push(event.attempt_id);
        }
    }
    assert_eq!(reclaimed, std::slice::from_ref(&attempt_id));
    assert_eq!(context(&run), json!({"long": 1, "after": 1}));
    executor.stop().await;
    server.kill().await;
}

/// Direct reads of the database, for what the API does not show.
struct DatabaseProbe(tributary_e2e::probe::Probe);

async fn sqlx_pool(database: &TestDatabase) -> DatabaseProbe {
    DatabaseProbe(tributary_e2e::probe::Probe::connect(database.url()).await)
}

impl DatabaseProbe {
    async fn count_deltas(&self, run_id: &str) -> i64 {
        self.0
            .count(
                "SELECT COUNT(*) FROM context_deltas WHERE run_id = $1",
                run_id,
            )
            .await
    }
}

/// A run whose changes the database refuses is never left RUNNING with
/// nobody driving it: it ends FAILED from its last committed state, with the
/// reason in its tasks and its events, the executor is told its result did
/// not count, and the other runs go on.
#[tokio::test]
async fn a_run_whose_changes_cannot_be_stored_ends_failed_and_says_why() {
    let database = TestDatabase::fresh().await;
    let port = free_port();
    let server = ServerProcess::start_with_env(
        &database,
        port,
        &[("TRIBUTARY_TEST_REFUSE_RESULTS_OF_TASK", "unstorable")],
    )
    .await;
    server
        .register(json!({"name": "w", "tasks": [
            {"id": "unstorable", "handler": "h"},
            {"id": "after", "dependencies": ["unstorable"], "handler": "h"}
        ]}))
        .await;
    server
        .register(json!({"name": "fine", "tasks": [{"id": "ok", "handler": "h"}]}))
        .await;
    let executor = TestExecutor::connect(
        server.channel().await,
        "default",
        &["h"],
        2,
        handler(|_| async { Outcome::set(json!({"written": true})) }),
    )
    .await;
    let mut client = server.run_client().await;
    let start = |workflow: &str| pb::StartRunRequest {
        workflow_name: workflow.into(),
        ..pb::StartRunRequest::default()
    };
    let run_id = client
        .start_run(start("w"))
        .await
        .expect("starts")
        .into_inner()
        .run_id;
    let run = wait_until_finished(&mut client, &run_id).await;
    assert_eq!(run.status(), pb::RunStatus::Failed);
    let reason = "the server could not store this run's changes (a database error; the server log has the details)";
    for task_id in ["unstorable", "after"] {
        let stopped = task(&run, task_id);
        assert_eq!(stopped.state(), pb::TaskState::Failed, "{task_id}");
        assert_eq!(stopped.error, reason, "{task_id}");
    }
    let attempt_id = task(&run, "unstorable").attempts[0].id.clone();
    wait_for_ack(&executor, &attempt_id, pb::ResultDisposition::Stale).await;
    let mut history = client
        .watch_run(pb::WatchRunRequest {
            run_id: run_id.clone(),
            after_sequence: 0,
        })
        .await
        .expect("watch")
        .into_inner();
    let mut finished = None;
    while let Some(response) = history.message().await.expect("history") {
        let event = response.event.expect("event");
        if event.r#type == pb::RunEventType::RunFinished as i32 {
            finished = Some(event);
        }
    }
    let finished = finished.expect("a RUN_FINISHED event");
    assert_eq!(finished.run_status(), pb::RunStatus::Failed);
    assert_eq!(finished.error, reason);
    let cancelled = client
        .cancel_run(pb::CancelRunRequest {
            run_id: run_id.clone(),
        })
        .await
        .expect_err("finished");
    assert_eq!(cancelled.code(), tonic::Code::FailedPrecondition);
    assert_eq!(
        cancelled.message(),
        format!("run {run_id} is already failed")
    );
    let fine_id = client
        .start_run(start("fine"))
        .await
        .expect("starts")
        .into_inner()
        .run_id;
    let fine = wait_until_finished(&mut client, &fine_id).await;
    assert_eq!(fine.status(), pb::RunStatus::Succeeded);
    server.kill().await;
}
