//! `ExecutorService.WatchExecutors`: the list at once, then again when an
//! executor connects, takes an attempt, finishes it, or goes away; scoped to
//! the namespace.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::Semaphore;
use tokio_stream::StreamExt;
use tonic::Streaming;
use tributary_e2e::executor::{Outcome, TestExecutor, handler};
use tributary_e2e::{Namespace, TestServer};
use tributary_proto::v1 as pb;
use tributary_proto::v1::connect_request::Message as ToServer;
use tributary_proto::v1::executor_service_client::ExecutorServiceClient;

const LIMIT: Duration = Duration::from_secs(30);

/// Reads lists until one satisfies `done`; every list read is returned.
async fn until(
    stream: &mut Streaming<pb::WatchExecutorsResponse>,
    what: &str,
    done: impl Fn(&[pb::ExecutorInfo]) -> bool,
) -> Vec<pb::ExecutorInfo> {
    tokio::time::timeout(LIMIT, async {
        loop {
            let response = stream
                .next()
                .await
                .expect("the stream goes on")
                .expect("a list");
            if done(&response.executors) {
                return response.executors;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no list where {what} within {LIMIT:?}"))
}

#[tokio::test]
async fn watch_executors_follows_connections_and_attempts_in_flight() {
    let server = TestServer::start_with(|config| {
        config.heartbeat_interval_ms = 100;
        config.lease_timeout_ms = 1_000;
    })
    .await;
    server
        .register(
            "default",
            json!({"name": "held", "tasks": [{"id": "hold", "handler": "watch.hold"}]}),
        )
        .await;
    let mut default_watch =
        ExecutorServiceClient::with_interceptor(server.channel().await, Namespace::new("default"));
    let mut watch = default_watch
        .watch_executors(pb::WatchExecutorsRequest {})
        .await
        .expect("watches")
        .into_inner();
    let first = watch.next().await.expect("a first list").expect("a list");
    assert!(first.executors.is_empty(), "{first:?}");

    let release = Arc::new(Semaphore::new(0));
    let executor = {
        let release = release.clone();
        TestExecutor::connect(
            server.channel().await,
            "default",
            &["watch.hold"],
            2,
            handler(move |_| {
                let release = release.clone();
                async move {
                    let _permit = release.acquire().await.expect("open");
                    Outcome::set(json!({"held": true}))
                }
            }),
        )
        .await
    };
    let connected = until(&mut watch, "the executor is connected", |list| {
        list.len() == 1
    })
    .await;
    assert_eq!(connected[0].executor_id, executor.executor_id());
    assert_eq!(connected[0].handlers, ["watch.hold"]);
    assert_eq!(connected[0].max_concurrent_attempts, 2);

    // Another namespace sees none of it.
    let mut other =
        ExecutorServiceClient::with_interceptor(server.channel().await, Namespace::new("other"));
    let other_first = other
        .watch_executors(pb::WatchExecutorsRequest {})
        .await
        .expect("watches")
        .into_inner()
        .next()
        .await
        .expect("a first list")
        .expect("a list");
    assert!(other_first.executors.is_empty(), "{other_first:?}");

    let run_id = server.start_run("default", "held", json!({})).await;
    until(&mut watch, "the attempt is in flight", |list| {
        list.len() == 1 && list[0].in_flight_attempt_ids.len() == 1
    })
    .await;
    release.add_permits(1);
    let run = server.wait_for_run("default", &run_id, LIMIT).await;
    assert_eq!(run.status(), pb::RunStatus::Succeeded);
    until(&mut watch, "the attempt is done", |list| {
        list.len() == 1 && list[0].in_flight_attempt_ids.is_empty()
    })
    .await;

    executor
        .send(ToServer::CapacityChanged(pb::CapacityChanged {
            max_concurrent_attempts: 0,
        }))
        .await;
    until(&mut watch, "the capacity is 0", |list| {
        list.len() == 1 && list[0].max_concurrent_attempts == 0
    })
    .await;

    // Silent past its lease, the executor is dropped by the server.
    executor.go_silent();
    until(&mut watch, "the executor is gone", <[_]>::is_empty).await;
    server.stop().await;
}
