//! What `tributary serve` logs, read from its stderr written to a file: no
//! colour codes, no line per successful call at INFO, a failed task with
//! whether it retries, a finished run with its id and status, and an
//! executor that drained and left told apart from one that was lost.

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tributary_e2e::process::ServeProcess;
use tributary_e2e::scripted::{ScriptedExecutor, registration};
use tributary_e2e::{Namespace, TestDatabase};
use tributary_proto::v1 as pb;
use tributary_proto::v1::connect_request::Message as ToServer;
use tributary_proto::v1::connect_response::Message as FromServer;
use tributary_proto::v1::run_service_client::RunServiceClient;
use tributary_proto::v1::workflow_service_client::WorkflowServiceClient;

const LIMIT: Duration = Duration::from_secs(60);

async fn wait_for_line(path: &std::path::Path, wanted: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(line) = log.lines().find(|line| wanted(line)) {
            return line.to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no such line in:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn next_assign(executor: &mut ScriptedExecutor) -> pb::Assign {
    loop {
        let message = tokio::time::timeout(LIMIT, executor.next())
            .await
            .expect("a message in time")
            .expect("the stream is open");
        if let Some(FromServer::Assign(assign)) = message {
            return assign;
        }
    }
}

#[tokio::test]
async fn the_log_says_what_happened_without_colours_or_a_line_per_call() {
    let database = TestDatabase::fresh().await;
    let directory = tempfile::tempdir().expect("temporary directory");
    let log_path = directory.path().join("server.log");
    let log_file = std::fs::File::create(&log_path).expect("log file");
    let server = ServeProcess::start(
        env!("CARGO_BIN_EXE_test_server"),
        &database,
        &[
            "--log-level",
            "info",
            "--heartbeat-interval-ms",
            "100",
            "--lease-timeout-ms",
            "1000",
        ],
        &[],
        Stdio::from(log_file),
    )
    .await;
    let definition: tributary_core::WorkflowDefinition = serde_json::from_value(json!({
        "name": "flaky",
        "tasks": [{"id": "f", "retry_attempts": 1, "retry_delay_ms": 10}]
    }))
    .expect("definition");
    WorkflowServiceClient::with_interceptor(server.channel.clone(), Namespace::new("default"))
        .register_workflow(pb::RegisterWorkflowRequest {
            definition: Some(pb::WorkflowDefinition::from(&definition)),
        })
        .await
        .expect("registers");
    let mut worker = ScriptedExecutor::connect(
        server.channel.clone(),
        "default",
        registration("graceful", &["flaky.f"], 1),
    )
    .await;
    let worker_id = worker.registered.executor_id.clone();
    let silent = ScriptedExecutor::connect(
        server.channel.clone(),
        "default",
        registration("silent", &["other.x"], 1),
    )
    .await;
    let silent_id = silent.registered.executor_id.clone();
    let run_id =
        RunServiceClient::with_interceptor(server.channel.clone(), Namespace::new("default"))
            .start_run(pb::StartRunRequest {
                workflow_name: "flaky".into(),
                input_context_json: "{}".into(),
                ..pb::StartRunRequest::default()
            })
            .await
            .expect("starts")
            .into_inner()
            .run_id;
    for message in ["disk full", "disk still full"] {
        let assign = next_assign(&mut worker).await;
        worker.fail(&assign.attempt_id, message).await;
    }
    let finished = wait_for_line(&log_path, |line| line.contains("run finished")).await;
    assert!(finished.contains(&run_id), "{finished}");
    assert!(finished.contains("failed"), "{finished}");
    assert!(finished.contains("duration_ms"), "{finished}");
    let retried = wait_for_line(&log_path, |line| {
        line.contains("task failed") && line.contains("disk full")
    })
    .await;
    assert!(retried.contains("WARN"), "{retried}");
    assert!(retried.contains("will_retry=true"), "{retried}");
    assert!(retried.contains(&run_id), "{retried}");
    let failed = wait_for_line(&log_path, |line| {
        line.contains("task failed") && line.contains("disk still full")
    })
    .await;
    assert!(failed.contains("will_retry=false"), "{failed}");
    assert!(failed.contains("attempt=2"), "{failed}");

    // The worker drains (capacity 0), then closes its stream.
    worker
        .send(ToServer::CapacityChanged(pb::CapacityChanged {
            max_concurrent_attempts: 0,
        }))
        .await;
    // The heartbeat's answer means the stream's reader has read (and queued
    // for the coordinator) the capacity change before it.
    worker
        .send(ToServer::Heartbeat(pb::Heartbeat::default()))
        .await;
    loop {
        let message = tokio::time::timeout(LIMIT, worker.next())
            .await
            .expect("a message in time")
            .expect("the stream is open");
        if let Some(FromServer::HeartbeatAck(_)) = message {
            break;
        }
    }
    drop(worker);
    let left = wait_for_line(&log_path, |line| {
        line.contains(&worker_id) && line.contains("executor left")
    })
    .await;
    assert!(left.contains("INFO"), "{left}");
    assert!(left.contains("drained=true"), "{left}");
    // The silent one never heartbeats: its lease expires.
    let lost = wait_for_line(&log_path, |line| {
        line.contains(&silent_id) && line.contains("executor lost")
    })
    .await;
    assert!(lost.contains("WARN"), "{lost}");
    assert!(lost.contains("its lease expired"), "{lost}");
    drop(silent);
    server.stop_gracefully().await;

    let log = std::fs::read_to_string(&log_path).expect("log");
    assert!(!log.contains('\u{1b}'), "no ANSI escapes in a file:\n{log}");
    assert!(
        !log.lines()
            .any(|line| line.contains("call finished") && line.contains("status=\"0\"")),
        "successful calls are logged at DEBUG:\n{log}"
    );
    assert!(
        !log.lines()
            .any(|line| line.contains(&worker_id) && line.contains("executor lost")),
        "{log}"
    );
}
