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

    // Without --server, `health` asks the address TRIBUTARY_LISTEN names,
    // the unspecified address read as loopback: the Docker HEALTHCHECK.
    let port = url.rsplit(':').next().expect("a port");
    let from_listen = tokio::process::Command::new(env!("CARGO_BIN_EXE_test_server"))
        .arg("health")
        .env_remove("TRIBUTARY_SERVER")
        .env("TRIBUTARY_LISTEN", format!("0.0.0.0:{port}"))
        .output()
        .await
        .expect("the CLI runs");
    assert!(from_listen.status.success(), "{from_listen:?}");
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
    // JSON lines: the started run at once, the finished run at the end.
    let lines: Vec<Value> = String::from_utf8_lossy(&succeeded.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["run_id"], lines[1]["run_id"]);
    assert_eq!(lines[0]["created"], true);
    let value = lines[1].clone();
    assert_eq!(value["status"], "succeeded");
    assert!(
        value["duration_ms"].as_i64().is_some_and(|ms| ms >= 0),
        "{value}"
    );
    assert_eq!(value["context"]["greeting"], "ada");
    let run_id = value["run_id"].as_str().expect("id").to_owned();

    let failed = tributary(&["run", "start", "w", "--wait", "--server", &url]).await;
    assert_eq!(failed.status.code(), Some(1), "a failed run exits non-zero");
    let failed_text = String::from_utf8_lossy(&failed.stdout);
    assert!(failed_text.contains("bad on purpose"), "{failed_text}");
    // The run id comes first, alone on its line, then the finished run.
    let first_line = failed_text.lines().next().unwrap_or_default();
    assert!(
        failed_text.contains(&format!("run:       {first_line}")),
        "{failed_text}"
    );
    assert!(failed_text.contains("status:    failed"), "{failed_text}");
    assert!(failed_text.contains("created:   20"), "{failed_text}");

    // A sequence number picks a version in `run start` as in `workflow get`.
    let by_sequence = tributary(&[
        "run",
        "start",
        "good",
        "--version",
        "1",
        "--input",
        r#"{"name": "bo"}"#,
        "--wait",
        "--no-context",
        "--server",
        &url,
    ])
    .await;
    assert!(by_sequence.status.success(), "{by_sequence:?}");
    let text = String::from_utf8_lossy(&by_sequence.stdout);
    assert!(!text.contains("context"), "--no-context: {text}");

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
    // Newest first: the run started by sequence number, then the first.
    assert_eq!(listed.as_array().map(Vec::len), Some(2));
    assert_eq!(listed[1]["run_id"], run_id.as_str());
    assert!(
        listed[1]["created"]
            .as_str()
            .is_some_and(|at| at.ends_with('Z'))
    );
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
    // TIME SEQUENCE TYPE TASK (attempt N) in DURATION
    assert!(
        text.lines().any(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            words
                .first()
                .is_some_and(|time| time.starts_with("20") && time.ends_with('Z'))
                && words.get(2..4) == Some(&["task_succeeded", "ok"][..])
                && words.get(6) == Some(&"in")
        }),
        "{text}"
    );

    let executors = tributary(&["executor", "list", "--json", "--server", &url]).await;
    let executors = stdout_json(&executors);
    assert_eq!(executors[0]["handlers"], json!(["w.bad", "w.ok"]));
    server.stop().await;
}

#[tokio::test]
async fn server_urls_are_checked_and_connection_failures_say_why() {
    let no_scheme = tributary(&["run", "list", "--server", "127.0.0.1:50051"]).await;
    assert_eq!(no_scheme.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&no_scheme.stderr).trim(),
        "error: --server must start with http:// or https://: got \"127.0.0.1:50051\""
    );

    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let refused = tributary(&["workflow", "list", "--server", &url]).await;
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.starts_with(&format!(
            "error: nothing is listening at {url} (connection refused)"
        )),
        "{stderr}"
    );

    let unresolvable =
        tributary(&["health", "--server", "http://no-such-host.invalid:50051"]).await;
    assert_eq!(unresolvable.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&unresolvable.stderr);
    assert!(
        stderr.starts_with("error: cannot resolve the host of http://no-such-host.invalid:50051"),
        "{stderr}"
    );

    let loud = tributary(&["serve", "--log-level", "loud"]).await;
    assert_eq!(loud.status.code(), Some(2), "refused at parse time");
    let stderr = String::from_utf8_lossy(&loud.stderr);
    assert!(stderr.contains("\"loud\" is not a level"), "{stderr}");
}

#[tokio::test]
async fn a_closed_stdout_ends_the_command_quietly_and_big_contexts_are_summarized() {
    use serde_json::json;
    use tributary_e2e::executor::{Outcome, TestExecutor, handler};
    let server = TestServer::start().await;
    let url = server.url();
    server
        .register(
            "default",
            json!({"name": "big", "tasks": [{"id": "fill", "handler": "big.fill"}]}),
        )
        .await;
    let _executor = TestExecutor::connect(
        server.channel().await,
        "default",
        &["big.fill"],
        1,
        handler(|_| async move { Outcome::set(json!({"blob": "x".repeat(70_000), "small": 1})) }),
    )
    .await;
    let started = tributary(&["run", "start", "big", "--wait", "--server", &url]).await;
    assert!(started.status.success(), "{started:?}");
    let text = String::from_utf8_lossy(&started.stdout);
    let run_id = text.lines().next().expect("the run id").to_owned();
    assert!(
        text.contains("context: 2 keys, 68.4 KiB (--context prints all of it"),
        "{text}"
    );
    assert!(
        !text.contains("xxxxxxxx"),
        "summarized, not printed: {text}"
    );

    let all = tributary(&["run", "get", &run_id, "--context", "--server", &url]).await;
    assert!(String::from_utf8_lossy(&all.stdout).contains(&"x".repeat(70_000)));

    // The reader is gone before the command writes anything: `| head -0`.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_test_server"))
        .args(["run", "get", &run_id, "--context", "--server", &url])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the CLI runs");
    drop(child.stdout.take());
    let output = child.wait_with_output().await.expect("the CLI ends");
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    server.stop().await;
}

#[tokio::test]
async fn a_postgres_that_cannot_be_reached_or_lacks_the_database_is_named_with_the_cause() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let refused = tributary(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        &format!("postgres://someone:secret@127.0.0.1:{port}/jobs"),
    ])
    .await;
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&format!(
            "cannot connect to Postgres at 127.0.0.1:{port} (database \"jobs\", user \"someone\"): \
             nothing is listening there (connection refused)"
        )),
        "{stderr}"
    );
    assert!(
        !stderr.contains("secret"),
        "the password is never printed: {stderr}"
    );

    // With a real Postgres: a database that does not exist.
    let Ok(admin_url) = std::env::var("TRIBUTARY_TEST_DATABASE_URL") else {
        return;
    };
    let mut url = url_without_database(&admin_url);
    url.push_str("/tributary_no_such_database");
    let missing = tributary(&["serve", "--listen", "127.0.0.1:0", "--database-url", &url]).await;
    assert_eq!(missing.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("database \"tributary_no_such_database\" does not exist; create it first, e.g. `createdb "),
        "{stderr}"
    );
    assert!(!stderr.contains(" at line "), "{stderr}");
}

/// `postgres://user@host:port` of an admin URL, without its path or query.
fn url_without_database(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    format!("{scheme}://{authority}")
}
