//! The `tributary` command line against a real server: registration, get,
//! list, health, and errors that print the server's message and exit 1.
//! `test_server` is the same `cli::run` as the `tributary` binary.

use std::process::Output;

use serde_json::Value;
use tributary_e2e::TestServer;

async fn tributary(arguments: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_test_server"))
        .args(arguments)
        .output()
        .await
        .expect("the CLI runs")
}

fn stdout_json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "stdout is not JSON ({error}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[tokio::test]
async fn register_get_and_list_the_seed_workflow() {
    let server = TestServer::start().await;
    let url = server.url();
    let seed = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/parallel_processing.workflow.yaml"
    );
    let registered = tributary(&["workflow", "register", seed, "--server", &url, "--json"]).await;
    assert!(registered.status.success(), "{registered:?}");
    let registered = stdout_json(&registered);
    assert_eq!(registered["name"], "parallel_processing");
    assert_eq!(registered["created"], true);
    assert_eq!(registered["sequence"], 1);
    let version = registered["version"].as_str().expect("version").to_owned();

    let got = tributary(&[
        "workflow",
        "get",
        "parallel_processing",
        "--server",
        &url,
        "--json",
    ])
    .await;
    assert!(got.status.success());
    let got = stdout_json(&got);
    assert_eq!(got["version"], version.as_str());
    assert_eq!(got["definition"]["tasks"].as_array().map(Vec::len), Some(9));

    let by_sequence = tributary(&[
        "workflow",
        "get",
        "parallel_processing",
        "--version",
        "1",
        "--server",
        &url,
        "--json",
    ])
    .await;
    assert_eq!(stdout_json(&by_sequence)["version"], version.as_str());

    let listed = tributary(&["workflow", "list", "--server", &url]).await;
    assert!(listed.status.success());
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        text.contains("parallel_processing") && text.contains(&version),
        "{text}"
    );

    let healthy = tributary(&["health", "--server", &url]).await;
    assert!(healthy.status.success());
    assert_eq!(String::from_utf8_lossy(&healthy.stdout).trim(), "SERVING");
    server.stop().await;
}

#[tokio::test]
async fn errors_print_the_server_message_and_exit_non_zero() {
    let server = TestServer::start().await;
    let url = server.url();
    let directory = tempfile::tempdir().expect("temporary directory");
    let cyclic = directory.path().join("cyclic.json");
    std::fs::write(
        &cyclic,
        r#"{"name": "loop", "tasks": [{"id": "a", "dependencies": ["b"]}, {"id": "b", "dependencies": ["a"]}]}"#,
    )
    .expect("written");
    let output = tributary(&[
        "workflow",
        "register",
        cyclic.to_str().expect("utf-8"),
        "--server",
        &url,
    ])
    .await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("InvalidArgument: cycle detected: a -> b -> a"),
        "{stderr}"
    );

    let typo = directory.path().join("typo.yaml");
    std::fs::write(&typo, "name: w\ntasks:\n  - id: a\n    retry_attempt: 3\n").expect("written");
    let output = tributary(&[
        "workflow",
        "register",
        typo.to_str().expect("utf-8"),
        "--server",
        &url,
    ])
    .await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown field `retry_attempt`"), "{stderr}");

    let output = tributary(&["workflow", "get", "missing", "--server", &url]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("workflow \"missing\" not found"));
    server.stop().await;

    // Nothing listens there any more.
    let output = tributary(&["health", "--server", &url]).await;
    assert_eq!(output.status.code(), Some(1));
}

#[tokio::test]
async fn run_commands_start_wait_list_get_cancel_and_list_executors() {
    use serde_json::json;
    use tributary_e2e::executor::{Outcome, TestExecutor, handler};
    let server = TestServer::start().await;
    let url = server.url();
    server
        .register(
            "default",
            json!({"name": "w", "tasks": [{"id": "ok"}, {"id": "bad", "handler": "w.bad"}]}),
        )
        .await;
    server
        .register(
            "default",
            json!({"name": "good", "tasks": [{"id": "ok", "handler": "w.ok"}]}),
        )
        .await;
    server
        .register(
            "default",
            json!({"name": "idle", "tasks": [{"id": "x", "handler": "nobody"}]}),
        )
        .await;
    let _executor = TestExecutor::connect(
        server.channel().await,
        "default",
        &["w.ok", "w.bad"],
        2,
        handler(|assigned| async move {
            if assigned.handler == "w.bad" {
                Outcome::fail_for_good("bad on purpose")
            } else {
                Outcome::set(json!({"greeting": assigned.input["name"].clone()}))
            }
        }),
    )
    .await;
    let succeeded = tributary(&[
        "run",
        "start",
        "good",
        "--input",
        r#"{"name": "ada"}"#,
        "--wait",
        "--json",
        "--server",
        &url,
    ])
    .await;
    assert!(succeeded.status.success(), "{succeeded:?}");
    let value = stdout_json(&succeeded);
    assert_eq!(value["status"], "succeeded");
    assert_eq!(value["context"]["greeting"], "ada");
    let run_id = value["run_id"].as_str().expect("id").to_owned();

    let failed = tributary(&["run", "start", "w", "--wait", "--server", &url]).await;
    assert_eq!(failed.status.code(), Some(1), "a failed run exits non-zero");
    assert!(String::from_utf8_lossy(&failed.stdout).contains("bad on purpose"));

    let got = tributary(&["run", "get", &run_id, "--json", "--server", &url]).await;
    assert_eq!(stdout_json(&got)["tasks"][0]["state"], "succeeded");

    let listed = tributary(&[
        "run",
        "list",
        "--workflow",
        "good",
        "--json",
        "--server",
        &url,
    ])
    .await;
    let listed = stdout_json(&listed);
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    assert_eq!(listed[0]["run_id"], run_id.as_str());
    let bad_status = tributary(&["run", "list", "--status", "sleeping", "--server", &url]).await;
    assert_eq!(bad_status.status.code(), Some(1));

    let idle = tributary(&["run", "start", "idle", "--server", &url]).await;
    let idle_id = String::from_utf8_lossy(&idle.stdout).trim().to_owned();
    let cancelled = tributary(&["run", "cancel", &idle_id, "--server", &url]).await;
    assert!(cancelled.status.success());
    assert_eq!(
        String::from_utf8_lossy(&cancelled.stdout).trim(),
        format!("run {idle_id} cancelled")
    );
    let again = tributary(&["run", "cancel", &idle_id, "--server", &url]).await;
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("is already cancelled"));

    let watched = tributary(&["run", "watch", &run_id, "--json", "--server", &url]).await;
    assert!(watched.status.success(), "{watched:?}");
    let events: Vec<Value> = String::from_utf8_lossy(&watched.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON event per line"))
        .collect();
    assert_eq!(
        events.first().map(|e| e["type"].clone()),
        Some(json!("run_started"))
    );
    assert_eq!(
        events.last().map(|e| e["run_status"].clone()),
        Some(json!("succeeded"))
    );
    let sequences: Vec<u64> = events
        .iter()
        .filter_map(|e| e["sequence"].as_u64())
        .collect();
    assert_eq!(sequences, (1..=events.len() as u64).collect::<Vec<_>>());
    let watched_text =
        tributary(&["run", "watch", &run_id, "--after", "1", "--server", &url]).await;
    let text = String::from_utf8_lossy(&watched_text.stdout);
    assert!(!text.contains("run_started"), "{text}");
    assert!(
        text.lines().any(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            words.get(1..3) == Some(&["task_succeeded", "ok"][..])
        }),
        "{text}"
    );

    let executors = tributary(&["executor", "list", "--json", "--server", &url]).await;
    let executors = stdout_json(&executors);
    assert_eq!(executors[0]["handlers"], json!(["w.bad", "w.ok"]));
    server.stop().await;
}
