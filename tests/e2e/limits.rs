//! Bounded resources, over real sockets: streams never hold the slots of
//! the unary concurrency limit, a stream that never registers is closed,
//! registrations and per-namespace quotas are bounded with
//! RESOURCE_EXHAUSTED naming the limit, and a result over the message limit
//! ends its stream with RESOURCE_EXHAUSTED and fails its task saying so.

use std::time::Duration;

use prost::Message;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tributary_e2e::scripted::{ScriptedExecutor, registration};
use tributary_e2e::{Namespace, TestServer, task};
use tributary_proto::v1 as pb;
use tributary_proto::v1::connect_request::Message as ToServer;
use tributary_proto::v1::executor_service_client::ExecutorServiceClient;
use tributary_proto::v1::run_service_client::RunServiceClient;
use tributary_proto::v1::workflow_service_client::WorkflowServiceClient;

/// A safety net, never a measure of speed.
const LIMIT: Duration = Duration::from_secs(20);

/// Opens a `Connect` stream that sends `register` (or nothing) and returns
/// how the server answered the open: `Err` when the stream was refused.
async fn open(
    channel: Channel,
    namespace: &str,
    register: Option<pb::Register>,
) -> (
    mpsc::Sender<pb::ConnectRequest>,
    Result<tonic::Streaming<pb::ConnectResponse>, Status>,
) {
    let (sender, receiver) = mpsc::channel(4);
    if let Some(register) = register {
        sender
            .send(pb::ConnectRequest {
                message: Some(ToServer::Register(register)),
            })
            .await
            .expect("queue register");
    }
    let mut client = ExecutorServiceClient::with_interceptor(channel, Namespace::new(namespace));
    let answer = client
        .connect(ReceiverStream::new(receiver))
        .await
        .map(tonic::Response::into_inner);
    (sender, answer)
}

#[tokio::test]
async fn never_registering_streams_hold_no_unary_slot_and_are_closed_at_the_register_timeout() {
    const STREAMS: usize = 1_100;
    let server = TestServer::start_with(|config| {
        // Above STREAMS, as the default 1,024 is: the streams would fill
        // it if they took slots.
        config.concurrency_limit = 1_024;
        config.register_timeout_ms = 8_000;
    })
    .await;
    let channel = server.channel().await;
    let mut streams = Vec::with_capacity(STREAMS);
    for _ in 0..STREAMS {
        let channel = channel.clone();
        streams.push(tokio::spawn(async move {
            let (_sender, answer) = open(channel, "default", None).await;
            answer.map(|_| ())
        }));
    }
    // The streams are open on the same connection; unary calls and health
    // checks are answered while every one of them waits for its register.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let listed = tokio::time::timeout(
        Duration::from_secs(5),
        WorkflowServiceClient::with_interceptor(channel.clone(), Namespace::new("default"))
            .list_workflows(pb::ListWorkflowsRequest::default()),
    )
    .await
    .expect("ListWorkflows is answered while the streams wait")
    .expect("lists");
    assert!(listed.into_inner().workflows.is_empty());
    let health = tokio::time::timeout(
        Duration::from_secs(5),
        HealthClient::new(channel.clone()).check(HealthCheckRequest::default()),
    )
    .await
    .expect("health is answered while the streams wait")
    .expect("healthy");
    assert_eq!(health.into_inner().status, 1);
    for stream in streams {
        let status = tokio::time::timeout(LIMIT, stream)
            .await
            .expect("the stream is closed at the register timeout")
            .expect("task")
            .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "no register message within 8000 ms of opening the stream"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_register_over_its_limits_is_resource_exhausted_naming_the_limit() {
    let server = TestServer::start_with(|config| {
        config.max_register_handlers = 10;
        config.max_register_bytes = 4_096;
    })
    .await;
    let handlers: Vec<String> = (0..11).map(|n| format!("h{n}")).collect();
    let handlers: Vec<&str> = handlers.iter().map(String::as_str).collect();
    let (_sender, answer) = open(
        server.channel().await,
        "default",
        Some(registration("many", &handlers, 1)),
    )
    .await;
    let status = answer.expect_err("refused");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(
        status.message(),
        "register.handlers has 11 handlers, over the limit of 10 by 1"
    );

    let mut large = registration("large", &["h"], 1);
    large.name = "n".repeat(200);
    large.labels = (0..20)
        .map(|n| (format!("k{n}"), "v".repeat(250)))
        .collect();
    let (_sender, answer) = open(server.channel().await, "default", Some(large)).await;
    let status = answer.expect_err("refused");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status
            .message()
            .contains("over the max_register_bytes limit of 4096 bytes by"),
        "{status:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn executors_beyond_the_namespace_quota_are_refused_until_one_leaves() {
    let server = TestServer::start_with(|config| config.max_executors_per_namespace = 2).await;
    let first = ScriptedExecutor::connect(
        server.channel().await,
        "team-a",
        registration("one", &["h"], 1),
    )
    .await;
    let _second = ScriptedExecutor::connect(
        server.channel().await,
        "team-a",
        registration("two", &["h"], 1),
    )
    .await;
    let (_sender, answer) = open(
        server.channel().await,
        "team-a",
        Some(registration("three", &["h"], 1)),
    )
    .await;
    let status = answer.expect_err("over the quota");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(
        status.message(),
        "namespace \"team-a\" already has 2 executors connected, the max_executors_per_namespace quota of 2"
    );
    // Another namespace has a quota of its own.
    let _elsewhere = ScriptedExecutor::connect(
        server.channel().await,
        "team-b",
        registration("b", &["h"], 1),
    )
    .await;
    // A place frees up when an executor leaves.
    drop(first);
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let (_sender, answer) = open(
            server.channel().await,
            "team-a",
            Some(registration("three", &["h"], 1)),
        )
        .await;
        match answer {
            Ok(_) => break,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted);
                assert!(tokio::time::Instant::now() < deadline, "no place freed up");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn runs_beyond_the_namespace_quota_are_refused_until_one_ends() {
    let server = TestServer::start_with(|config| config.max_active_runs_per_namespace = 2).await;
    for namespace in ["team-a", "team-b"] {
        server
            .register(namespace, json!({"name": "w", "tasks": [{"id": "a"}]}))
            .await;
    }
    // Nobody serves the task, so the runs stay active.
    let first = server.start_run("team-a", "w", json!({})).await;
    server.start_run("team-a", "w", json!({})).await;
    let status = server
        .run_client("team-a")
        .await
        .start_run(pb::StartRunRequest {
            workflow_name: "w".to_owned(),
            input_context_json: "{}".to_owned(),
            ..pb::StartRunRequest::default()
        })
        .await
        .expect_err("over the quota");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(
        status.message(),
        "namespace \"team-a\" already has 2 active runs, the max_active_runs_per_namespace quota of 2; start more when some have finished"
    );
    server.start_run("team-b", "w", json!({})).await;
    server
        .run_client("team-a")
        .await
        .cancel_run(pb::CancelRunRequest {
            run_id: first.clone(),
        })
        .await
        .expect("cancels");
    server.wait_for_run("team-a", &first, LIMIT).await;
    server.start_run("team-a", "w", json!({})).await;
    server.stop().await;
}

#[tokio::test]
async fn a_result_over_the_message_limit_ends_the_stream_and_fails_the_task_with_the_size() {
    let server = TestServer::start().await;
    let limit = server.config.max_message_bytes();
    server
        .register(
            "default",
            json!({"name": "w", "tasks": [{"id": "big", "retry_attempts": 3}]}),
        )
        .await;
    let mut executor = ScriptedExecutor::connect(
        server.channel().await,
        "default",
        registration("big", &["w.big"], 1),
    )
    .await;
    let run_id = server.start_run("default", "w", json!({})).await;
    let assign = executor.next_assign().await;
    let set_json = format!("{{\"big\": \"{}\"}}", "x".repeat(limit));
    executor.complete(&assign.attempt_id, &set_json).await;
    let status = executor.end_status().await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains(&format!(
            "over the server's message limit of {limit} bytes by"
        )),
        "{status:?}"
    );
    let run = server.wait_for_run("default", &run_id, LIMIT).await;
    assert_eq!(run.status(), pb::RunStatus::Failed);
    let big = task(&run, "big");
    assert_eq!(big.state(), pb::TaskState::Failed);
    assert_eq!(big.attempts.len(), 1, "no retry and no reassignment");
    let sent = pb::ConnectRequest {
        message: Some(ToServer::Completed(pb::Completed {
            attempt_id: assign.attempt_id.clone(),
            set_json,
            removed_keys: Vec::new(),
        })),
    }
    .encoded_len();
    assert_eq!(
        big.error,
        format!(
            "the executor's result was rejected: the executor sent a message (its result) of {sent} bytes, over the message limit of {limit} bytes by {}",
            sent - limit
        )
    );
    server.stop().await;
}

#[tokio::test]
async fn a_result_taking_the_run_context_over_its_limit_fails_its_task_and_the_run_stays_readable()
{
    let server = TestServer::start_with(|config| config.max_run_context_bytes = 64 * 1024).await;
    server
        .register(
            "default",
            json!({"name": "w", "tasks": [
                {"id": "w1"}, {"id": "w2"}, {"id": "w3", "retry_attempts": 3},
                {"id": "join", "dependencies": ["w1", "w2", "w3"], "trigger_rule": "all_done"},
            ]}),
        )
        .await;
    let mut executor = ScriptedExecutor::connect(
        server.channel().await,
        "default",
        registration("writer", &["w.w1", "w.w2", "w.w3", "w.join"], 3),
    )
    .await;
    let run_id = server.start_run("default", "w", json!({})).await;
    let value = "x".repeat(30 * 1024);
    let mut writers = Vec::new();
    for _ in 0..3 {
        writers.push(executor.next_assign().await);
    }
    writers.sort_by(|a, b| a.task_id.cmp(&b.task_id));
    for (assign, key) in writers.iter().zip(["a", "b", "c"]) {
        executor
            .complete(&assign.attempt_id, &json!({ key: value }).to_string())
            .await;
        assert_eq!(
            executor.next_ack().await.disposition(),
            pb::ResultDisposition::Accepted
        );
    }
    // The executor keeps its stream: it broke no rule.
    let join = executor.next_assign().await;
    assert_eq!(join.task_id, "join");
    assert!(join.input_context_json.len() <= 64 * 1024);
    executor.complete(&join.attempt_id, "{}").await;
    let run = server.wait_for_run("default", &run_id, LIMIT).await;
    assert_eq!(run.status(), pb::RunStatus::Failed);
    let third = task(&run, "w3");
    assert_eq!(third.state(), pb::TaskState::Failed);
    assert_eq!(third.attempts.len(), 1, "no retry");
    assert!(
        third
            .error
            .starts_with(&format!("context of run {run_id} would be ")),
        "{}",
        third.error
    );
    assert!(
        third
            .error
            .contains("bytes, above the limit of 65536 bytes (max_run_context_bytes) by"),
        "{}",
        third.error
    );
    assert_eq!(task(&run, "join").state(), pb::TaskState::Succeeded);
    server.stop().await;
}

#[tokio::test]
async fn get_run_and_list_runs_leave_out_contexts_that_would_not_fit_and_say_so() {
    let server = TestServer::start().await;
    let limit = server.config.max_message_bytes();
    server
        .register("default", json!({"name": "w", "tasks": [{"id": "a"}]}))
        .await;
    let mut executor = ScriptedExecutor::connect(
        server.channel().await,
        "default",
        registration("one", &["w.a"], 1),
    )
    .await;
    // The input and the context are each within their limits, but not the
    // two together in one answer.
    let input = json!({ "big": "x".repeat(limit * 6 / 10) });
    let mut runs =
        RunServiceClient::with_interceptor(server.channel().await, Namespace::new("default"))
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
    let run_id = runs
        .start_run(pb::StartRunRequest {
            workflow_name: "w".to_owned(),
            input_context_json: input.to_string(),
            ..pb::StartRunRequest::default()
        })
        .await
        .expect("starts")
        .into_inner()
        .run_id;
    let second = runs
        .start_run(pb::StartRunRequest {
            workflow_name: "w".to_owned(),
            input_context_json: input.to_string(),
            ..pb::StartRunRequest::default()
        })
        .await
        .expect("starts")
        .into_inner()
        .run_id;
    let assign = executor.next_assign().await;
    executor
        .complete(&assign.attempt_id, r#"{"done": true}"#)
        .await;
    let finished = if assign.run_id == run_id {
        &run_id
    } else {
        &second
    };
    let run = loop {
        let run = runs
            .get_run(pb::GetRunRequest {
                run_id: finished.clone(),
                omit_contexts: false,
                ..Default::default()
            })
            .await
            .expect("GetRun answers")
            .into_inner()
            .run
            .expect("run");
        if run.status() == pb::RunStatus::Succeeded {
            break run;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(run.contexts_omitted);
    assert!(run.input_context_json.is_empty() && run.context_json.is_empty());
    assert_eq!(run.input_context_bytes, input.to_string().len() as u64);
    assert_eq!(
        run.context_bytes,
        run.input_context_bytes + r#","done":true"#.len() as u64
    );
    assert_eq!(task(&run, "a").state(), pb::TaskState::Succeeded);

    // A page of runs fits too: the first run whole, the next without its
    // contexts.
    let listed = runs
        .list_runs(pb::ListRunsRequest::default())
        .await
        .expect("ListRuns answers")
        .into_inner()
        .runs;
    assert_eq!(listed.len(), 2);
    assert!(!listed[0].contexts_omitted);
    assert_eq!(
        listed[0].input_context_json.len() as u64,
        listed[0].input_context_bytes
    );
    assert!(listed[1].contexts_omitted);
    assert!(listed[1].input_context_json.is_empty());
    assert_eq!(listed[1].input_context_bytes, listed[0].input_context_bytes);

    // Asked to, the server leaves out the contexts of any run, stating
    // their sizes.
    let small = runs
        .start_run(pb::StartRunRequest {
            workflow_name: "w".to_owned(),
            input_context_json: r#"{"small":1}"#.to_owned(),
            ..pb::StartRunRequest::default()
        })
        .await
        .expect("starts")
        .into_inner()
        .run_id;
    let without = runs
        .get_run(pb::GetRunRequest {
            run_id: small.clone(),
            omit_contexts: true,
            ..Default::default()
        })
        .await
        .expect("GetRun answers")
        .into_inner()
        .run
        .expect("run");
    assert!(without.contexts_omitted);
    assert!(without.input_context_json.is_empty() && without.context_json.is_empty());
    assert_eq!(without.input_context_bytes, r#"{"small":1}"#.len() as u64);
    let with = runs
        .get_run(pb::GetRunRequest {
            run_id: small,
            omit_contexts: false,
            ..Default::default()
        })
        .await
        .expect("GetRun answers")
        .into_inner()
        .run
        .expect("run");
    assert!(!with.contexts_omitted);
    assert_eq!(with.input_context_json, r#"{"small":1}"#);
    server.stop().await;
}
