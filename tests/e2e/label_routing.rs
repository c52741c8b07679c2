//! Routing by labels: a task with `required_labels` goes only to an
//! executor registered with every one of them, even while another serving
//! its handler is connected and idle; with none connected the task waits and
//! `GetRun` says why, until one connects; and a server killed with such a
//! task pending hands it, after the restart, only to an executor with the
//! labels.

use std::time::Duration;

use serde_json::json;
use tributary_e2e::executor::{Handler, Outcome, TestExecutor, handler};
use tributary_e2e::{TestDatabase, TestServer, context, task};
use tributary_proto::v1 as pb;

use crate::cli;
use crate::liveness::{ServerProcess, free_port, poll_run, wait_until_finished};

/// A safety net so a broken engine fails the test instead of hanging it.
const LIMIT: Duration = Duration::from_secs(60);

/// Every task writes which executor ran it.
fn signing(executor: &'static str) -> Handler {
    handler(move |assigned| async move { Outcome::set(json!({ assigned.task_id: executor })) })
}

fn gpu_workflow() -> serde_json::Value {
    json!({"name": "train", "tasks": [
        {"id": "prepare", "handler": "work"},
        {"id": "fit-a", "dependencies": ["prepare"], "handler": "work",
         "required_labels": {"gpu": "true", "region": "eu"}},
        {"id": "fit-b", "dependencies": ["prepare"], "handler": "work",
         "required_labels": {"gpu": "true"}},
        {"id": "report", "dependencies": ["fit-a", "fit-b"], "handler": "work"}
    ]})
}

#[tokio::test]
async fn a_labeled_task_goes_only_to_an_executor_with_its_labels() {
    let server = TestServer::start().await;
    let registered = server.register("default", gpu_workflow()).await;
    let tasks = registered.definition.expect("definition").tasks;
    let fit_a = tasks.iter().find(|task| task.id == "fit-a").expect("fit-a");
    assert_eq!(
        fit_a.required_labels,
        [
            ("gpu".to_owned(), "true".to_owned()),
            ("region".to_owned(), "eu".to_owned())
        ]
        .into()
    );
    // The executor without the labels connects first and has more slots:
    // it would win every tie if labels did not count.
    let plain = TestExecutor::connect_labeled(
        server.channel().await,
        "default",
        &["work"],
        8,
        &[("gpu", "false"), ("region", "eu")],
        signing("plain"),
    )
    .await;
    let gpu = TestExecutor::connect_labeled(
        server.channel().await,
        "default",
        &["work"],
        1,
        &[("gpu", "true"), ("region", "eu"), ("zone", "b")],
        signing("gpu"),
    )
    .await;

    let run_id = server.start_run("default", "train", json!({})).await;
    let run = server.wait_for_run("default", &run_id, LIMIT).await;
    assert_eq!(run.status(), pb::RunStatus::Succeeded, "{run:#?}");
    let output = context(&run);
    assert_eq!(output["fit-a"], "gpu");
    assert_eq!(output["fit-b"], "gpu");
    // The unlabeled tasks may go anywhere; least loaded is the plain one.
    assert_eq!(output["prepare"], "plain");
    let gpu_id = gpu.executor_id();
    for labeled in ["fit-a", "fit-b"] {
        let attempts = &task(&run, labeled).attempts;
        assert_eq!(attempts.len(), 1, "{labeled}");
        assert_eq!(attempts[0].executor_id, gpu_id, "{labeled}");
    }
    drop(plain);
    server.stop().await;
}

#[tokio::test]
async fn a_task_no_executor_can_take_waits_saying_why_until_one_connects() {
    let server = TestServer::start().await;
    server
        .register(
            "default",
            json!({"name": "eu-only", "tasks": [
                {"id": "ship", "handler": "work", "required_labels": {"region": "eu"}}
            ]}),
        )
        .await;
    let run_id = server.start_run("default", "eu-only", json!({})).await;
    server
        .wait_until("default", &run_id, LIMIT, |run| {
            task(run, "ship").waiting_reason() == pb::WaitingReason::NoExecutor
        })
        .await;

    let us = TestExecutor::connect_labeled(
        server.channel().await,
        "default",
        &["work"],
        4,
        &[("region", "us")],
        signing("us"),
    )
    .await;
    let waiting = server
        .wait_until("default", &run_id, LIMIT, |run| {
            task(run, "ship").waiting_reason() == pb::WaitingReason::NoMatchingLabels
        })
        .await;
    assert_eq!(
        task(&waiting, "ship").waiting_message,
        "none of the 1 executor(s) serving handler \"work\" has the required labels region=eu"
    );
    assert_eq!(waiting.status(), pb::RunStatus::Pending);
    assert_eq!(task(&waiting, "ship").state(), pb::TaskState::Ready);
    assert!(us.observed.lock().expect("lock").assigned.is_empty());

    let _eu = TestExecutor::connect_labeled(
        server.channel().await,
        "default",
        &["work"],
        1,
        &[("region", "eu")],
        signing("eu"),
    )
    .await;
    let run = server.wait_for_run("default", &run_id, LIMIT).await;
    assert_eq!(run.status(), pb::RunStatus::Succeeded, "{run:#?}");
    assert_eq!(context(&run)["ship"], "eu");
    assert!(us.observed.lock().expect("lock").assigned.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn the_cli_shows_required_labels_executor_labels_and_why_a_task_waits() {
    let server = TestServer::start().await;
    let url = server.url();
    // The definition-file format carries required labels.
    let directory = tempfile::tempdir().expect("temporary directory");
    let file = directory.path().join("train.workflow.yaml");
    std::fs::write(
        &file,
        "name: train\ntasks:\n  - id: prepare\n    handler: work\n  - id: fit-a\n    handler: work\n    dependencies: [prepare]\n    required_labels:\n      region: eu\n      gpu: \"true\"\n",
    )
    .expect("written");
    cli(&[
        "workflow",
        "register",
        file.to_str().expect("UTF-8 path"),
        "--server",
        &url,
    ])
    .await;
    let listing = cli(&["workflow", "get", "train", "--server", &url]).await;
    let fit_a = listing
        .lines()
        .find(|line| line.starts_with("fit-a"))
        .expect("a row for fit-a");
    assert!(fit_a.contains("gpu=true, region=eu"), "{listing}");
    assert!(listing.contains("REQUIRED LABELS"), "{listing}");

    server
        .register(
            "default",
            json!({"name": "eu-only", "tasks": [
                {"id": "ship", "handler": "work", "required_labels": {"region": "eu"}}
            ]}),
        )
        .await;
    let _us = TestExecutor::connect_labeled(
        server.channel().await,
        "default",
        &["work"],
        4,
        &[("region", "us")],
        signing("us"),
    )
    .await;
    let executors = cli(&["executor", "list", "--server", &url]).await;
    assert!(executors.contains("LABELS"), "{executors}");
    assert!(executors.contains("region=us, suite=e2e"), "{executors}");
    let run_id = server.start_run("default", "eu-only", json!({})).await;
    server
        .wait_until("default", &run_id, LIMIT, |run| {
            task(run, "ship").waiting_reason() == pb::WaitingReason::NoMatchingLabels
        })
        .await;
    let shown = cli(&["run", "get", &run_id, "--server", &url]).await;
    assert!(
        shown.contains(
            "waiting: none of the 1 executor(s) serving handler \"work\" has the required labels region=eu"
        ),
        "{shown}"
    );
    let json = cli(&["run", "get", &run_id, "--json", "--server", &url]).await;
    let json: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    let ship = json["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .find(|task| task["task_id"] == "ship")
        .expect("ship");
    assert_eq!(ship["waiting"]["reason"], "no_matching_labels", "{ship}");
    server.stop().await;
}

#[tokio::test]
async fn a_labeled_task_pending_at_a_server_kill_goes_to_an_executor_with_its_labels() {
    let database = TestDatabase::fresh().await;
    let port = free_port();
    let server = ServerProcess::start(&database, port, None).await;
    server
        .register(json!({"name": "eu-only", "tasks": [
            {"id": "ship", "handler": "work", "required_labels": {"region": "eu"}}
        ]}))
        .await;
    let us = TestExecutor::connect_labeled(
        server.channel().await,
        "default",
        &["work"],
        4,
        &[("region", "us")],
        signing("us"),
    )
    .await;
    let mut client = server.run_client().await;
    let run_id = client
        .start_run(pb::StartRunRequest {
            workflow_name: "eu-only".into(),
            ..pb::StartRunRequest::default()
        })
        .await
        .expect("starts")
        .into_inner()
        .run_id;
    wait_for_reason(&mut client, &run_id, pb::WaitingReason::NoMatchingLabels).await;
    server.kill().await;
    us.kill();

    let server = ServerProcess::start(&database, port, None).await;
    let mut client = server.run_client().await;
    let us = TestExecutor::connect_labeled(
        server.channel().await,
        "default",
        &["work"],
        4,
        &[("region", "us")],
        signing("us"),
    )
    .await;
    // The restored task still requires its labels.
    wait_for_reason(&mut client, &run_id, pb::WaitingReason::NoMatchingLabels).await;
    let _eu = TestExecutor::connect_labeled(
        server.channel().await,
        "default",
        &["work"],
        1,
        &[("region", "eu")],
        signing("eu"),
    )
    .await;
    let run = wait_until_finished(&mut client, &run_id).await;
    assert_eq!(run.status(), pb::RunStatus::Succeeded, "{run:#?}");
    assert_eq!(context(&run)["ship"], "eu");
    assert_eq!(task(&run, "ship").attempts.len(), 1);
    assert!(us.observed.lock().expect("lock").assigned.is_empty());
    server.kill().await;
}

/// Polls `GetRun` on a server process until the task `ship` waits for
/// `reason` (the limit is a safety net, not an assertion about speed).
async fn wait_for_reason(
    client: &mut tributary_proto::v1::run_service_client::RunServiceClient<
        tonic::transport::Channel,
    >,
    run_id: &str,
    reason: pb::WaitingReason,
) {
    poll_run(client, run_id, true, |run| {
        task(run, "ship").waiting_reason() == reason
    })
    .await;
}
