//! End-to-end tests: a real server on a loopback socket over a real
//! database, SQLite by default and Postgres when
//! `TRIBUTARY_TEST_DATABASE_URL` is set (see `scripts/test.sh`).

mod auth;
mod cli;
mod concurrency;
mod executor_watch;
mod fd_limit;
mod handler_limit;
mod hostile;
mod label_routing;
mod limits;
mod liveness;
mod map;
mod map_paging;
mod operations;
mod protocol_contract;
mod run_api;
mod run_events;
mod run_flows;
mod run_retry;
mod schedules;
mod security_doc;
mod server_logs;
mod serving;
mod store_conformance;
mod store_events;
mod store_queued;
mod store_runs;
mod tls;
mod traces;
mod value_refs;
mod workflow_api;

/// Runs the `tributary` CLI (the test server binary) and returns its
/// standard output, asserting that it succeeded.
pub(crate) async fn cli(arguments: &[&str]) -> String {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_test_server"))
        .args(arguments)
        .output()
        .await
        .expect("the CLI runs");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).expect("UTF-8 output")
}
