//! RunService and ExecutorService edges: bad input with its code and
//! message, idempotency, listing, capacity and routing.

use std::time::Duration;

use serde_json::json;
use tokio_stream::StreamExt;
use tonic::Code;
use tributary_e2e::executor::{Outcome, TestExecutor, handler};
use tributary_e2e::{Namespace, TestServer, task};
use tributary_proto::v1 as pb;
use tributary_proto::v1::executor_service_client::ExecutorServiceClient;

const LIMIT: Duration = Duration::from_secs(60);

fn start(workflow: &str, input: &str) -> pb::StartRunRequest {
    pb::StartRunRequest {
        workflow_name: workflow.into(),
        input_context_json: input.into(),
        ..pb::StartRunRequest::default()
    }
}

#[tokio::test]
async fn start_run_rejects_bad_input_with_its_code_and_message() {
    let server = TestServer::start_with(|config| config.max_context_bytes = 64).await;
    server
        .register("default", json!({"name": "w", "tasks": [{"id": "a"}]}))
        .await;
    let mut client = server.run_client("default").await;

    let error = client
        .start_run(start("nope", "{}"))
        .await
        .expect_err("unknown workflow");
    assert_eq!(error.code(), Code::NotFound);
    assert_eq!(error.message(), "workflow \"nope\" not found");

    let mut wrong_version = start("w", "{}");
    wrong_version.workflow_version = "0000000000000000".into();
    let error = client
        .start_run(wrong_version)
        .await
        .expect_err("unknown version");
    assert_eq!(error.code(), Code::NotFound);
    assert_eq!(
        error.message(),
        "version \"0000000000000000\" of workflow \"w\" not found"
    );

    let error = client
        .start_run(start("w", "{\"a\": 1,}"))
        .await
        .expect_err("invalid JSON");
    assert_eq!(error.code(), Code::InvalidArgument);
    assert_eq!(
        error.message(),
        "input_context_json is not valid JSON: key must be a string at line 1 column 9"
    );

    let error = client
        .start_run(start("w", "[1, 2]"))
        .await
        .expect_err("not an object");
    assert_eq!(error.code(), Code::InvalidArgument);
    assert_eq!(
        error.message(),
        "input_context_json must be a JSON object, got an array"
    );

    let big = json!({"data": "x".repeat(100)}).to_string();
    let error = client
        .start_run(start("w", &big))
        .await
        .expect_err("too big");
    assert_eq!(error.code(), Code::ResourceExhausted);
    assert_eq!(
        error.message(),
        format!(
            "input_context_json is {} bytes, over the max_context_bytes limit of 64 bytes by {}",
            big.len(),
            big.len() - 64
        )
    );

    let error = client
        .start_run(start("", "{}"))
        .await
        .expect_err("no name");
    assert_eq!(error.code(), Code::InvalidArgument);
    assert_eq!(error.message(), "workflow_name is missing");

    // Nothing was started by any of these.
    let runs = client
        .list_runs(pb::ListRunsRequest::default())
        .await
        .expect("lists")
        .into_inner()
        .runs;
    assert!(runs.is_empty());

    let error = client
        .get_run(pb::GetRunRequest {
            run_id: "01a2-missing".into(),
            omit_contexts: false,
            ..Default::default()
        })
        .await
        .expect_err("unknown run");
    assert_eq!(error.code(), Code::NotFound);
    assert_eq!(error.message(), "run \"01a2-missing\" not found");
    let error = client
        .cancel_run(pb::CancelRunRequest {
            run_id: "01a2-missing".into(),
        })
        .await
        .expect_err("unknown run");
    assert_eq!(error.code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test]
async fn start_run_is_idempotent_per_key() {
    let server = TestServer::start().await;
    server
        .register("default", json!({"name": "w", "tasks": [{"id": "a"}]}))
        .await;
    let mut client = server.run_client("default").await;
    let keyed = |input: &str| pb::StartRunRequest {
        idempotency_key: "order-42".into(),
        ..start("w", input)
    };
    let first = client
        .start_run(keyed("{\"n\": 1}"))
        .await
        .expect("starts")
        .into_inner();
    assert!(first.created);
    let again = client
        .start_run(keyed("{\"n\": 1}"))
        .await
        .expect("same run")
        .into_inner();
    assert!(!again.created);
    assert_eq!(again.run_id, first.run_id);
    let error = client
        .start_run(keyed("{\"n\": 2}"))
        .await
        .expect_err("different request");
    assert_eq!(error.code(), Code::AlreadyExists);
    assert_eq!(
        error.message(),
        format!(
            "idempotency key \"order-42\" is already used by run {} with a different request",
            first.run_id
        )
    );
    // The key is per namespace.
    let mut other = server.run_client("other").await;
    server
        .register("other", json!({"name": "w", "tasks": [{"id": "a"}]}))
        .await;
    let elsewhere = other
        .start_run(keyed("{\"n\": 2}"))
        .await
        .expect("starts")
        .into_inner();
    assert!(elsewhere.created);
    assert_ne!(elsewhere.run_id, first.run_id);
    let runs = client
        .list_runs(pb::ListRunsRequest::default())
        .await
        .expect("lists")
        .into_inner()
        .runs;
    assert_eq!(runs.len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_task_nobody_serves_stays_ready_until_an_executor_connects() {
    let server = TestServer::start().await;
    server
        .register(
            "default",
            json!({"name": "w", "tasks": [{"id": "a", "handler": "rare.skill"}]}),
        )
        .await;
    let run_id = server.start_run("default", "w", json!({})).await;
    let run = server
        .wait_until("default", &run_id, LIMIT, |run| {
            task(run, "a").state() == pb::TaskState::Ready
        })
        .await;
    assert_eq!(run.status(), pb::RunStatus::Pending, "nothing assigned yet");
    assert!(task(&run, "a").attempts.is_empty());
    let _executor = TestExecutor::connect(
        server.channel().await,
        "default",
        &["rare.skill"],
        1,
        handler(|_| async { Outcome::set(json!({"served": true})) }),
    )
    .await;
    let run = server.wait_for_run("default", &run_id, LIMIT).await;
    assert_eq!(run.status(), pb::RunStatus::Succeeded);
    server.stop().await;
}

#[tokio::test]
async fn an_executor_with_capacity_one_never_holds_two_attempts() {
    let server = TestServer::start().await;
    let tasks: Vec<serde_json::Value> = (0..12)
        .map(|index| json!({"id": format!("t{index}"), "handler": "one.at.a.time"}))
        .collect();
    server
        .register("default", json!({"name": "wide", "tasks": tasks}))
        .await;
    let executor = TestExecutor::connect(
        server.channel().await,
        "default",
        &["one.at.a.time"],
        1,
        handler(|_| async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Outcome::set(json!({}))
        }),
    )
    .await;
    let mut runs = Vec::new();
    for _ in 0..3 {
        runs.push(server.start_run("default", "wide", json!({})).await);
    }
    let mut executors =
        ExecutorServiceClient::with_interceptor(server.channel().await, Namespace::new("default"));
    let listed = executors
        .list_executors(pb::ListExecutorsRequest {})
        .await
        .expect("lists")
        .into_inner()
        .executors;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].handlers, ["one.at.a.time"]);
    assert_eq!(listed[0].max_concurrent_attempts, 1);
    assert!(listed[0].in_flight_attempt_ids.len() <= 1);
    for run_id in &runs {
        let run = server.wait_for_run("default", run_id, LIMIT).await;
        assert_eq!(run.status(), pb::RunStatus::Succeeded);
    }
    assert_eq!(
        executor
            .max_running
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    server.stop().await;
}

#[tokio::test]
async fn two_executors_share_the_work() {
    let server = TestServer::start().await;
    let tasks: Vec<serde_json::Value> = (0..8)
        .map(|index| json!({"id": format!("t{index}"), "handler": "shared"}))
        .collect();
    server
        .register("default", json!({"name": "spread", "tasks": tasks}))
        .await;
    let rendezvous = std::sync::Arc::new(tokio::sync::Barrier::new(2));
    let make = |rendezvous: std::sync::Arc<tokio::sync::Barrier>| {
        handler(move |assigned| {
            let rendezvous = rendezvous.clone();
            async move {
                // The first two attempts meet, which needs one per executor.
                if assigned.task_id == "t0" || assigned.task_id == "t1" {
                    rendezvous.wait().await;
                }
                Outcome::set(json!({}))
            }
        })
    };
    let first = TestExecutor::connect(
        server.channel().await,
        "default",
        &["shared"],
        1,
        make(rendezvous.clone()),
    )
    .await;
    let second = TestExecutor::connect(
        server.channel().await,
        "default",
        &["shared"],
        1,
        make(rendezvous),
    )
    .await;
    let run_id = server.start_run("default", "spread", json!({})).await;
    let run = server.wait_for_run("default", &run_id, LIMIT).await;
    assert_eq!(run.status(), pb::RunStatus::Succeeded);
    let executors: std::collections::BTreeSet<String> = run
        .tasks
        .iter()
        .map(|t| t.attempts[0].executor_id.clone())
        .collect();
    assert_eq!(
        executors,
        [first.executor_id(), second.executor_id()]
            .into_iter()
            .collect()
    );
    server.stop().await;
}

#[tokio::test]
async fn list_runs_filters_and_pages_newest_first() {
    let server = TestServer::start().await;
    server
        .register("default", json!({"name": "quick", "tasks": [{"id": "a"}]}))
        .await;
    server
        .register(
            "default",
            json!({"name": "stuck", "tasks": [{"id": "a", "handler": "nobody"}]}),
        )
        .await;
    let _executor = TestExecutor::connect(
        server.channel().await,
        "default",
        &["quick.a"],
        4,
        handler(|_| async { Outcome::set(json!({})) }),
    )
    .await;
    let mut quick = Vec::new();
    for _ in 0..5 {
        quick.push(server.start_run("default", "quick", json!({})).await);
    }
    let stuck = server.start_run("default", "stuck", json!({})).await;
    for run_id in &quick {
        server.wait_for_run("default", run_id, LIMIT).await;
    }
    let mut client = server.run_client("default").await;
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_runs(pb::ListRunsRequest {
                workflow_name: "quick".into(),
                page_size: 2,
                page_token,
                ..pb::ListRunsRequest::default()
            })
            .await
            .expect("lists")
            .into_inner();
        assert!(page.runs.len() <= 2);
        seen.extend(page.runs.into_iter().map(|run| run.id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let mut newest_first = quick.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);
    let pending = client
        .list_runs(pb::ListRunsRequest {
            status: pb::RunStatus::Pending as i32,
            ..pb::ListRunsRequest::default()
        })
        .await
        .expect("lists")
        .into_inner()
        .runs;
    let pending: Vec<String> = pending.into_iter().map(|run| run.id).collect();
    assert_eq!(pending, [stuck]);
    let error = client
        .list_runs(pb::ListRunsRequest {
            status: 99,
            ..pb::ListRunsRequest::default()
        })
        .await
        .expect_err("unknown status");
    assert_eq!(error.code(), Code::InvalidArgument);
    assert_eq!(error.message(), "unknown run status 99");
    server.stop().await;
}

async fn connect_with_first_message(
    server: &TestServer,
    first: Option<pb::connect_request::Message>,
) -> tonic::Status {
    let mut client =
        ExecutorServiceClient::with_interceptor(server.channel().await, Namespace::new("default"));
    let messages: Vec<pb::ConnectRequest> = first
        .into_iter()
        .map(|message| pb::ConnectRequest {
            message: Some(message),
        })
        .collect();
    match client.connect(tokio_stream::iter(messages)).await {
        Err(status) => status,
        Ok(response) => {
            let mut stream = response.into_inner();
            match stream.next().await {
                Some(Err(status)) => status,
                other => panic!("expected the stream to be refused, got {other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn a_stream_must_start_with_a_valid_register() {
    use pb::connect_request::Message;
    let server = TestServer::start().await;
    let status =
        connect_with_first_message(&server, Some(Message::Heartbeat(pb::Heartbeat {}))).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "the first message on the stream must be register, got heartbeat"
    );

    let status = connect_with_first_message(&server, None).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "the stream ended before its register message"
    );

    let register = |handlers: Vec<&str>, capacity: u32, instance: &str| {
        Some(Message::Register(pb::Register {
            name: "bad".into(),
            instance_id: instance.into(),
            handlers: handlers.into_iter().map(String::from).collect(),
            max_concurrent_attempts: capacity,
            ..pb::Register::default()
        }))
    };
    let cases = [
        (
            register(vec![], 1, "i"),
            "register.handlers is empty: an executor must serve at least one handler",
        ),
        (
            register(vec!["ok"], 10_001, "i"),
            "register.max_concurrent_attempts must be between 0 and 10000, got 10001",
        ),
        (
            register(vec!["ok"], 1, ""),
            "register.instance_id is missing",
        ),
        (
            register(vec!["has space"], 1, "i"),
            "invalid handler \"has space\" in register.handlers: must be 1-128 characters of a-z, A-Z, 0-9, _, -, ., : and /",
        ),
    ];
    for (first, expected) in cases {
        let status = connect_with_first_message(&server, first).await;
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), expected);
    }
    // None of them was registered.
    let mut client =
        ExecutorServiceClient::with_interceptor(server.channel().await, Namespace::new("default"));
    let listed = client
        .list_executors(pb::ListExecutorsRequest {})
        .await
        .expect("lists")
        .into_inner();
    assert!(listed.executors.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn a_result_that_is_not_an_object_fails_the_attempt_with_the_reason() {
    let server = TestServer::start().await;
    server
        .register(
            "default",
            json!({"name": "w", "tasks": [{"id": "a", "retry_attempts": 3}]}),
        )
        .await;
    let _executor = TestExecutor::connect(
        server.channel().await,
        "default",
        &["w.a"],
        1,
        handler(|_| async { Outcome::CompleteRaw("[1, 2, 3]".into()) }),
    )
    .await;
    let run_id = server.start_run("default", "w", json!({})).await;
    let run = server.wait_for_run("default", &run_id, LIMIT).await;
    assert_eq!(run.status(), pb::RunStatus::Failed);
    let failed = task(&run, "a");
    assert_eq!(
        failed.attempts.len(),
        1,
        "not retried: the same code would send it again"
    );
    assert_eq!(
        failed.error,
        "the executor's result was rejected: completed.set_json is invalid: set_json must be a JSON object, got an array"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_late_result_of_a_replaced_attempt_is_stale() {
    let server = TestServer::start().await;
    server
        .register(
            "default",
            json!({"name": "w", "tasks": [{"id": "a", "timeout_ms": 100, "retry_attempts": 1, "retry_delay_ms": 0}]}),
        )
        .await;
    let executor = TestExecutor::connect(
        server.channel().await,
        "default",
        &["w.a"],
        2,
        handler(|assigned| async move {
            if assigned.attempt_number == 1 {
                Outcome::HangUntilCancelled
            } else {
                Outcome::set(json!({"second": true}))
            }
        }),
    )
    .await;
    let run_id = server.start_run("default", "w", json!({})).await;
    let run = server.wait_for_run("default", &run_id, LIMIT).await;
    assert_eq!(run.status(), pb::RunStatus::Succeeded);
    let first_attempt = task(&run, "a").attempts[0].id.clone();
    // Replay a success for the timed-out first attempt.
    executor
        .send(pb::connect_request::Message::Completed(pb::Completed {
            attempt_id: first_attempt.clone(),
            set_json: "{\"late\": true}".into(),
            removed_keys: vec![],
        }))
        .await;
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let stale_acks = executor
            .acks()
            .into_iter()
            .filter(|(attempt, disposition)| {
                *attempt == first_attempt && *disposition == pb::ResultDisposition::Stale as i32
            })
            .count();
        if stale_acks == 2 {
            break; // One for the failure after the cancel, one for the replay.
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "acks: {:?}",
            executor.acks()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let run = server.get_run("default", &run_id).await;
    assert_eq!(tributary_e2e::context(&run), json!({"second": true}));
    server.stop().await;
}
