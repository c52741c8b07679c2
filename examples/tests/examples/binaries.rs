//! The binaries as a user runs them: each starts its own embedded server,
//! prints what happened, and says with its exit status whether the run
//! went as it should.

use std::process::{Command, Output};

/// Runs a binary of this package to completion on a blocking thread.
async fn run(binary: &'static str, args: &'static [&'static str]) -> Output {
    let output = tokio::task::spawn_blocking(move || Command::new(binary).args(args).output())
        .await
        .expect("the thread finishes");
    output.expect("the binary starts")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn parallel_processing_without_sleeps_succeeds() {
    let output = crate::within(
        "parallel_processing",
        run(env!("CARGO_BIN_EXE_parallel_processing"), &["--no-sleep"]),
    )
    .await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("All 9 tasks succeeded."), "{stdout}");
    assert!(
        stdout.contains("All               10,000    4,950,000     259,875,000.00"),
        "{stdout}"
    );
    // The embedded server stops with the example: no hint to watch it.
    assert!(
        stderr.contains("on the embedded server at http://127.0.0.1:"),
        "{stderr}"
    );
    assert!(!stderr.contains("tributary run watch "), "{stderr}");
    // --no-sleep says its times were not slept, and gives no efficiency
    // figure the missing sleeps would make meaningless.
    assert!(stderr.contains("slept"), "{stderr}");
    assert!(
        stdout.contains("too little work for a parallel-efficiency figure"),
        "{stdout}"
    );
    assert!(!stdout.contains("Measured parallel efficiency"), "{stdout}");
}

#[tokio::test]
async fn hello_prints_its_greeting() {
    let output = crate::within(
        "hello",
        run(env!("CARGO_BIN_EXE_hello"), &["--name", "Grace"]),
    )
    .await;
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    assert!(stdout.contains("Hello, Grace!"), "{stdout}");
}

#[tokio::test]
async fn error_handling_exits_zero_when_the_run_failed_as_expected() {
    let output = crate::within(
        "error_handling",
        run(env!("CARGO_BIN_EXE_error_handling"), &[]),
    )
    .await;
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    assert!(stdout.contains(": FAILED"), "{stdout}");
    assert!(stdout.contains("As expected"), "{stdout}");
}

#[tokio::test]
async fn a_server_that_is_not_there_is_an_error() {
    let output = crate::within(
        "parallel_processing",
        run(
            env!("CARGO_BIN_EXE_parallel_processing"),
            &["--server", "http://127.0.0.1:1"],
        ),
    )
    .await;
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("error: cannot connect to http://127.0.0.1:1"),
        "{stderr}"
    );
}
