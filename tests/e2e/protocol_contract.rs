//! The executor contract written in `executor.proto`, one clause per test:
//! results fenced by the instance holding the attempt, honest
//! acknowledgements, text no database stores alike refused the same on both,
//! the registration rules, how the server ends a stream, and WatchEvents
//! from now.

use std::time::Duration;

use serde_json::json;
use tokio_stream::StreamExt;
use tonic::Code;
use tributary_e2e::scripted::{ScriptedExecutor, registration};
use tributary_e2e::{Namespace, TestServer, context, task};
use tributary_proto::v1 as pb;
use tributary_proto::v1::connect_request::Message as ToServer;
use tributary_proto::v1::executor_service_client::ExecutorServiceClient;

const LIMIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_result_counts_only_from_the_instance_holding_the_attempt() {
    let server = TestServer::start().await;
    server
        .register("team-a", json!({"name": "w", "tasks": [{"id": "a"}]}))
        .await;
    let mut owner = ScriptedExecutor::connect(
        server.channel().await,
        "team-a",
        registration("owner", &["w.a"], 1),
    )
    .await;
    let mut neighbour = ScriptedExecutor::connect(
        server.channel().await,
        "team-a",
        registration("neighbour", &["elsewhere"], 1),
    )
    .await;
    let mut outsider = ScriptedExecutor::connect(
        server.channel().await,
        "team-b",
        registration("outsider", &["w.a"], 1),
    )
    .await;
    let run_id = server
        .start_run("team-a", "w", json!({"owner_only": true}))
        .await;
    let attempt_id = owner.next_assign().await.attempt_id;

    // Another namespace, another instance of the same namespace, and an id
    // that never existed all get the same answer, so the answer reveals
    // nothing about other namespaces.
    for (reporter, id) in [
        (&mut outsider, attempt_id.as_str()),
        (&mut neighbour, attempt_id.as_str()),
    ] {
        reporter.complete(id, r#"{"stolen": true}"#).await;
        let ack = reporter.next_ack().await;
        assert_eq!(ack.disposition(), pb::ResultDisposition::NotHeld);
    }
    outsider
        .complete("01930000-0000-7000-8000-000000000000", "{}")
        .await;
    assert_eq!(
        outsider.next_ack().await.disposition(),
        pb::ResultDisposition::NotHeld
    );

    owner.complete(&attempt_id, r#"{"by": "owner"}"#).await;
    assert_eq!(
        owner.next_ack().await.disposition(),
        pb::ResultDisposition::Accepted
    );
    let run = server.wait_for_run("team-a", &run_id, LIMIT).await;
    assert_eq!(run.status(), pb::RunStatus::Succeeded);
    assert_eq!(context(&run), json!({"owner_only": true, "by": "owner"}));

    // Once the run has left memory the database answers, with the same
    // fencing: the owner's copy is ACCEPTED again, nobody else's counts.
    owner.complete(&attempt_id, r#"{"by": "owner"}"#).await;
    assert_eq!(
        owner.next_ack().await.disposition(),
        pb::ResultDisposition::Accepted
    );
    outsider.complete(&attempt_id, r#"{"stolen": true}"#).await;
    assert_eq!(
        outsider.next_ack().await.disposition(),
        pb::ResultDisposition::NotHeld
    );
    neighbour.fail(&attempt_id, "not mine").await;
    assert_eq!(
        neighbour.next_ack().await.disposition(),
        pb::ResultDisposition::NotHeld
    );
    let run = server.get_run("team-a", &run_id).await;
    assert_eq!(context(&run), json!({"owner_only": true, "by": "owner"}));
    server.stop().await;
}

#[tokio::test]
async fn results_refused_for_their_content_are_rejected_with_the_reason() {
    let server = TestServer::start().await;
    server
        .register(
            "default",
            json!({"name": "w", "tasks": [
                {"id": "nul_key", "retry_attempts": 2},
                {"id": "nul_message", "retry_attempts": 2},
                {"id": "both", "retry_attempts": 2},
            ]}),
        )
        .await;
    let mut executor = ScriptedExecutor::connect(
        server.channel().await,
        "default",
        registration("one", &["w.nul_key", "w.nul_message", "w.both"], 3),
    )
    .await;
    let run_id = server.start_run("default", "w", json!({})).await;
    let mut expected = Vec::new();
    for _ in 0..3 {
        let assign = executor.next_assign().await;
        let reason = match assign.task_id.as_str() {
            "nul_key" => {
                executor
                    .complete(&assign.attempt_id, r#"{"\u0000": 1}"#)
                    .await;
                "completed.set_json has a key containing U+0000"
            }
            "nul_message" => {
                executor.fail(&assign.attempt_id, "broken \0 message").await;
                "failed.message contains U+0000"
            }
            _ => {
                executor
                    .send(ToServer::Completed(pb::Completed {
                        attempt_id: assign.attempt_id.clone(),
                        set_json: r#"{"k": 1}"#.into(),
                        removed_keys: vec!["k".into()],
                    }))
                    .await;
                "completed both sets and removes the key \"k\""
            }
        };
        expected.push((assign.task_id, assign.attempt_id, reason));
    }
    for _ in 0..3 {
        let ack = executor.next_ack().await;
        let (_, _, reason) = expected
            .iter()
            .find(|(_, attempt_id, _)| *attempt_id == ack.attempt_id)
            .expect("an ack for a sent result");
        assert_eq!(ack.disposition(), pb::ResultDisposition::Rejected);
        assert_eq!(ack.reason, *reason);
    }
    let run = server.wait_for_run("default", &run_id, LIMIT).await;
    assert_eq!(run.status(), pb::RunStatus::Failed);
    for (task_id, _, reason) in &expected {
        let failed = task(&run, task_id);
        assert_eq!(failed.state(), pb::TaskState::Failed);
        assert_eq!(failed.attempts.len(), 1, "a rejected result is not retried");
        assert_eq!(
            failed.error,
            format!("the executor's result was rejected: {reason}")
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn nul_in_request_text_is_refused_naming_the_field_and_stored_losslessly_in_json() {
    let server = TestServer::start().await;
    server
        .register("default", json!({"name": "w", "tasks": [{"id": "a"}]}))
        .await;
    let mut runs = server.run_client("default").await;
    let refused = runs
        .start_run(pb::StartRunRequest {
            workflow_name: "w".into(),
            idempotency_key: "key\0".into(),
            ..pb::StartRunRequest::default()
        })
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        refused.message(),
        "idempotency_key contains U+0000, which the server does not store"
    );
    let refused = runs
        .get_run(pb::GetRunRequest {
            run_id: "\0".into(),
            omit_contexts: false,
            ..Default::default()
        })
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        refused.message(),
        "run_id contains U+0000, which the server does not store"
    );
    // Inside JSON a NUL is an escape, stored as text on both databases.
    let input = json!({"\u{0}key": "value\u{0}"});
    let run_id = server.start_run("default", "w", input.clone()).await;
    let run = server.get_run("default", &run_id).await;
    assert_eq!(context(&run), input);
    server.stop().await;
}

#[tokio::test]
async fn a_second_register_ends_the_stream_with_invalid_argument() {
    let server = TestServer::start().await;
    let mut executor = ScriptedExecutor::connect(
        server.channel().await,
        "default",
        registration("twice", &["h"], 1),
    )
    .await;
    executor
        .send(ToServer::Register(registration("twice", &["h"], 1)))
        .await;
    let status = executor.end_status().await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "register may only be the first message of a stream"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_executor_registered_with_capacity_zero_gets_work_only_after_raising_it() {
    let server = TestServer::start().await;
    server
        .register("default", json!({"name": "w", "tasks": [{"id": "a"}]}))
        .await;
    let mut executor = ScriptedExecutor::connect(
        server.channel().await,
        "default",
        registration("drained", &["w.a"], 0),
    )
    .await;
    let run_id = server.start_run("default", "w", json!({})).await;
    // ListExecutors is answered after the turn that started the run and
    // assigned whatever it could.
    let mut executors =
        ExecutorServiceClient::with_interceptor(server.channel().await, Namespace::new("default"));
    let listed = executors
        .list_executors(pb::ListExecutorsRequest {})
        .await
        .expect("lists")
        .into_inner()
        .executors;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].max_concurrent_attempts, 0);
    assert!(listed[0].in_flight_attempt_ids.is_empty());
    assert_eq!(
        task(&server.get_run("default", &run_id).await, "a").state(),
        pb::TaskState::Ready
    );
    executor
        .send(ToServer::CapacityChanged(pb::CapacityChanged {
            max_concurrent_attempts: 1,
        }))
        .await;
    let assign = executor.next_assign().await;
    assert_eq!(assign.run_id, run_id);
    server.stop().await;
}

#[tokio::test]
async fn a_silent_executor_loses_its_stream_with_unavailable_at_lease_expiry() {
    let server = TestServer::start_with(|config| {
        config.heartbeat_interval_ms = 100;
        config.lease_timeout_ms = 400;
    })
    .await;
    let mut executor = ScriptedExecutor::connect(
        server.channel().await,
        "default",
        registration("silent", &["h"], 1),
    )
    .await;
    let status = executor.end_status().await;
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(
        status.message(),
        "lease expired: nothing was heard from this executor for 400 ms; reconnect"
    );
    server.stop().await;
}

async fn next_event(stream: &mut tonic::Streaming<pb::WatchEventsResponse>) -> pb::RunEvent {
    tokio::time::timeout(LIMIT, stream.next())
        .await
        .expect("an event in time")
        .expect("the stream is open")
        .expect("no error")
        .event
        .expect("an event")
}

#[tokio::test]
async fn watch_events_from_now_skips_history_and_a_cursor_past_the_end_is_out_of_range() {
    let server = TestServer::start().await;
    server
        .register("default", json!({"name": "w", "tasks": [{"id": "a"}]}))
        .await;
    let earlier_run = server.start_run("default", "w", json!({})).await;
    let mut runs = server.run_client("default").await;
    let mut from_now = runs
        .watch_events(pb::WatchEventsRequest {
            from_now: true,
            ..pb::WatchEventsRequest::default()
        })
        .await
        .expect("accepted")
        .into_inner();
    let later_run = server.start_run("default", "w", json!({})).await;
    let first = next_event(&mut from_now).await;
    assert_eq!(
        first.run_id, later_run,
        "nothing of {earlier_run} is replayed"
    );
    assert_eq!(first.sequence, 1);

    let newest = first.cursor;
    let refused = runs
        .watch_events(pb::WatchEventsRequest {
            after_cursor: newest + 1_000,
            ..pb::WatchEventsRequest::default()
        })
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::OutOfRange);
    assert!(
        refused
            .message()
            .starts_with(&format!("after_cursor {} is beyond", newest + 1_000)),
        "{}",
        refused.message()
    );
    let refused = runs
        .watch_events(pb::WatchEventsRequest {
            after_cursor: 1,
            from_now: true,
            ..pb::WatchEventsRequest::default()
        })
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::OutOfRange);
    // The newest cursor itself is a valid place to resume from.
    let mut resumed = runs
        .watch_events(pb::WatchEventsRequest {
            after_cursor: newest,
            ..pb::WatchEventsRequest::default()
        })
        .await
        .expect("accepted")
        .into_inner();
    let next = next_event(&mut resumed).await;
    assert!(next.cursor > newest);
    server.stop().await;
}
