//! Operations: Prometheus `/metrics` scraped over HTTP/1.1 from the real
//! sockets after a run, and READY tasks saying why they wait (in GetRun and
//! in the CLI).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::Notify;
use tributary_e2e::executor::{Outcome, TestExecutor, handler};
use tributary_e2e::scrape::scrape;
use tributary_e2e::{TestServer, task};
use tributary_proto::v1 as pb;

use crate::cli;

const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn metrics_count_a_run_its_tasks_attempts_executors_and_watchers() {
    let server = TestServer::start_with(|config| {
        config.metrics_listen = Some("127.0.0.1:0".parse().expect("address"));
    })
    .await;
    // The seed's shape in small: one task, a fan-out of three, a fan-in.
    server
        .register(
            "default",
            json!({"name": "fanout", "tasks": [
                {"id": "a"},
                {"id": "b1", "dependencies": ["a"]},
                {"id": "b2", "dependencies": ["a"]},
                {"id": "b3", "dependencies": ["a"]},
                {"id": "c", "dependencies": ["b1", "b2", "b3"]}
            ]}),
        )
        .await;
    server
        .register("default", json!({"name": "lonely", "tasks": [{"id": "t"}]}))
        .await;
    let handlers = [
        "fanout.a",
        "fanout.b1",
        "fanout.b2",
        "fanout.b3",
        "fanout.c",
    ];
    let _executor = TestExecutor::connect(
        server.channel().await,
        "default",
        &handlers,
        2,
        handler(|assigned| async move { Outcome::set(json!({ assigned.task_id: true })) }),
    )
    .await;
    let mut watch = server
        .run_client("default")
        .await
        .watch_events(pb::WatchEventsRequest::default())
        .await
        .expect("watch accepted")
        .into_inner();

    let run_id = server.start_run("default", "fanout", json!({})).await;
    let run = server.wait_for_run("default", &run_id, LIMIT).await;
    assert_eq!(run.status(), pb::RunStatus::Succeeded);
    // A run nobody serves stays READY.
    let lonely = server.start_run("default", "lonely", json!({})).await;
    server
        .wait_until("default", &lonely, LIMIT, |run| {
            task(run, "t").waiting_reason() == pb::WaitingReason::NoExecutor
        })
        .await;

    let metrics_addr = server.metrics_addr().expect("a metrics listener");
    for address in [server.local_addr(), metrics_addr] {
        let scraped = scrape(address).await;
        assert!(
            scraped
                .content_type
                .starts_with("application/openmetrics-text"),
            "{}",
            scraped.content_type
        );
        let value = |name: &str, labels: &[(&str, &str)]| scraped.value(name, labels);
        assert_eq!(value("tributary_runs_started_total", &[]), 2.0);
        assert_eq!(
            value("tributary_runs_finished_total", &[("status", "succeeded")]),
            1.0
        );
        assert_eq!(
            value("tributary_runs_finished_total", &[("status", "failed")]),
            0.0
        );
        assert_eq!(
            value("tributary_attempts_total", &[("outcome", "succeeded")]),
            5.0
        );
        assert_eq!(
            value(
                "tributary_task_transitions_total",
                &[("state", "succeeded")]
            ),
            5.0
        );
        // Six tasks became ready: five of the run, and the lonely one.
        assert_eq!(
            value("tributary_task_transitions_total", &[("state", "ready")]),
            6.0
        );
        assert_eq!(value("tributary_dispatch_latency_seconds_count", &[]), 5.0);
        assert_eq!(
            value(
                "tributary_dispatch_latency_seconds_bucket",
                &[("le", "+Inf")]
            ),
            5.0
        );
        assert!(value("tributary_commit_latency_seconds_count", &[]) > 0.0);
        assert_eq!(
            value(
                "tributary_database_errors_total",
                &[("operation", "commit")]
            ),
            0.0
        );
        assert_eq!(
            value("tributary_executors_connected", &[("namespace", "default")]),
            1.0
        );
        assert_eq!(
            value("tributary_handler_executors", &[("handler", "fanout.b2")]),
            1.0
        );
        assert_eq!(
            value(
                "tributary_handler_slots",
                &[("handler", "fanout.b2"), ("state", "free")]
            ),
            2.0
        );
        assert_eq!(
            value(
                "tributary_handler_slots",
                &[("handler", "fanout.b2"), ("state", "used")]
            ),
            0.0
        );
        assert_eq!(
            value("tributary_ready_tasks_waiting", &[("handler", "lonely.t")]),
            1.0
        );
        assert_eq!(
            value("tributary_handler_executors", &[("handler", "lonely.t")]),
            0.0
        );
        assert_eq!(value("tributary_active_runs", &[]), 1.0);
        assert_eq!(value("tributary_watchers", &[]), 1.0);
    }

    // A watcher that goes away is no longer counted once it notices, at
    // the next event it would send.
    let first = tokio::time::timeout(LIMIT, watch.message())
        .await
        .expect("an event in time")
        .expect("a stream");
    assert!(first.is_some());
    drop(watch);
    let mut runs = server.run_client("default").await;
    runs.cancel_run(pb::CancelRunRequest {
        run_id: lonely.clone(),
    })
    .await
    .expect("cancelled");
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let scraped = scrape(metrics_addr).await;
        if scraped.value("tributary_watchers", &[]) == 0.0 {
            assert_eq!(
                scraped.value("tributary_runs_finished_total", &[("status", "cancelled")]),
                1.0
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{scraped:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn a_ready_task_says_it_waits_for_an_executor_then_for_a_free_slot() {
    let server = TestServer::start().await;
    let url = server.url();
    server
        .register(
            "default",
            json!({"name": "waits", "tasks": [{"id": "blocker"}, {"id": "later"}]}),
        )
        .await;
    let executors = cli(&["executor", "list", "--server", &url]).await;
    assert!(
        executors.contains("no executors connected in namespace \"default\""),
        "{executors}"
    );
    let run_id = server.start_run("default", "waits", json!({})).await;
    let run = server
        .wait_until("default", &run_id, LIMIT, |run| {
            run.tasks
                .iter()
                .all(|task| task.waiting_reason() == pb::WaitingReason::NoExecutor)
        })
        .await;
    let later = task(&run, "later");
    assert_eq!(later.state(), pb::TaskState::Ready);
    assert_eq!(
        later.waiting_message,
        "no connected executor serves handler \"waits.later\" in namespace \"default\""
    );
    let shown = cli(&["run", "get", &run_id, "--server", &url]).await;
    assert!(
        shown.contains(
            "waiting: no connected executor serves handler \"waits.blocker\" in namespace \"default\""
        ),
        "{shown}"
    );
    let shown_json: serde_json::Value =
        serde_json::from_str(&cli(&["run", "get", &run_id, "--server", &url, "--json"]).await)
            .expect("JSON");
    assert_eq!(shown_json["tasks"][1]["waiting"]["reason"], "no_executor");

    // One slot, taken by the blocker until released: the other task waits
    // for a free slot (handlers are dispatched in name order, so the
    // blocker goes first).
    let release = Arc::new(Notify::new());
    let executor = {
        let release = release.clone();
        TestExecutor::connect(
            server.channel().await,
            "default",
            &["waits.blocker", "waits.later"],
            1,
            handler(move |assigned| {
                let release = release.clone();
                async move {
                    if assigned.task_id == "blocker" {
                        release.notified().await;
                    }
                    Outcome::set(json!({ assigned.task_id: true }))
                }
            }),
        )
        .await
    };
    let run = server
        // The stored states may trail the coordinator by one commit: the
        // blocker's slot can be taken before its assignment is readable.
        .wait_until("default", &run_id, LIMIT, |run| {
            task(run, "later").waiting_reason() == pb::WaitingReason::AllSlotsBusy
                && task(run, "blocker").state() != pb::TaskState::Ready
        })
        .await;
    assert_eq!(
        task(&run, "blocker").waiting_reason(),
        pb::WaitingReason::Unspecified
    );
    assert_eq!(
        task(&run, "later").waiting_message,
        "all 1 slots of the 1 executor(s) serving handler \"waits.later\" are busy"
    );
    release.notify_one();
    let run = server.wait_for_run("default", &run_id, LIMIT).await;
    assert_eq!(run.status(), pb::RunStatus::Succeeded);
    for task in &run.tasks {
        assert_eq!(task.waiting_reason(), pb::WaitingReason::Unspecified);
        assert!(task.waiting_message.is_empty());
    }
    let executors = cli(&["executor", "list", "--server", &url]).await;
    assert!(executors.contains(&executor.executor_id()), "{executors}");
    server.stop().await;
}
