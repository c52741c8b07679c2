//! Concurrency policies of workflows: the policy is stored with the version
//! (normalized, and part of the version only when present), and a start
//! whose input has no key at the policy's pointer is refused, naming the
//! pointer, with nothing stored. Enforcing the limit is not wired yet (see
//! CONCURRENCY-STATUS.md).

use serde_json::json;
use tonic::Code;
use tributary_e2e::TestServer;
use tributary_proto::v1 as pb;

fn start(workflow: &str, input: &str) -> pb::StartRunRequest {
    pb::StartRunRequest {
        workflow_name: workflow.into(),
        input_context_json: input.into(),
        ..pb::StartRunRequest::default()
    }
}

#[tokio::test]
async fn a_policy_is_stored_normalized_and_enters_the_version_only_when_present() {
    let server = TestServer::start().await;
    let plain = server
        .register("default", json!({"name": "w", "tasks": [{"id": "a"}]}))
        .await;
    let limited = server
        .register(
            "default",
            json!({"name": "w", "tasks": [{"id": "a"}],
                   "concurrency": {"key_pointer": "/customer"}}),
        )
        .await;
    assert_ne!(plain.version, limited.version);
    assert_eq!(plain.definition.expect("definition").concurrency, None);
    assert_eq!(
        limited.definition.expect("definition").concurrency,
        Some(pb::ConcurrencyPolicy {
            key_pointer: "/customer".into(),
            fixed_key: String::new(),
            max_active_runs: Some(1),
            strategy: "queue".into(),
        })
    );
}

#[tokio::test]
async fn a_start_without_a_key_in_its_input_is_refused_naming_the_pointer() {
    let server = TestServer::start().await;
    server
        .register(
            "default",
            json!({"name": "w", "tasks": [{"id": "a"}],
                   "concurrency": {"key_pointer": "/customer/id", "max_active_runs": 2}}),
        )
        .await;
    let mut runs = server.run_client("default").await;
    let status = runs
        .start_run(start("w", r#"{"customer": {"name": "acme"}}"#))
        .await
        .expect_err("no key");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "the input has no value at \"/customer/id\", the workflow's concurrency key_pointer"
    );
    let listed = runs
        .list_runs(pb::ListRunsRequest::default())
        .await
        .expect("lists")
        .into_inner();
    assert!(listed.runs.is_empty(), "nothing stored: {listed:?}");
    let long = "k".repeat(300);
    let status = runs
        .start_run(start("w", &json!({"customer": {"id": long}}).to_string()))
        .await
        .expect_err("key too long");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "the concurrency key at \"/customer/id\" is 300 bytes, over the limit of 256"
    );
    runs.start_run(start("w", r#"{"customer": {"id": 42}}"#))
        .await
        .expect("a number is a key");
}

#[tokio::test]
async fn the_cli_registers_a_policy_from_a_file_and_shows_it() {
    let server = TestServer::start().await;
    let url = server.url();
    let directory = tempfile::tempdir().expect("temp dir");
    let file = directory.path().join("sync.workflow.json");
    std::fs::write(
        &file,
        json!({"name": "sync", "tasks": [{"id": "a"}],
               "concurrency": {"key_pointer": "/customer", "max_active_runs": 2,
                               "strategy": "cancel_in_progress"}})
        .to_string(),
    )
    .expect("writes");
    let cli = |arguments: Vec<&str>| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_test_server"))
            .args(arguments)
            .output()
    };
    let file = file.to_str().expect("UTF-8 path");
    let registered = cli(vec!["workflow", "register", file, "--server", &url])
        .await
        .expect("runs");
    assert!(registered.status.success(), "{registered:?}");
    let shown = cli(vec!["workflow", "get", "sync", "--server", &url])
        .await
        .expect("runs");
    assert!(shown.status.success(), "{shown:?}");
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        text.contains(
            "concurrency: at most 2 active runs per key /customer of the input; beyond that: cancel_in_progress"
        ),
        "{text}"
    );
    let json_output = cli(vec!["workflow", "get", "sync", "--json", "--server", &url])
        .await
        .expect("runs");
    let got: serde_json::Value = serde_json::from_slice(&json_output.stdout).expect("JSON");
    assert_eq!(
        got["definition"]["concurrency"],
        json!({"key_pointer": "/customer", "max_active_runs": 2, "strategy": "cancel_in_progress"})
    );
}
