//! A test executor as its own process, so tests can kill it for real.
//!
//! `test_executor URL HANDLER MODE` with MODE `hang` (never finishes an
//! attempt) or `exit-on-assign` (the process exits as soon as it gets an
//! attempt, like an executor a task crashes).

use std::process::ExitCode;

use tonic::transport::Endpoint;
use tributary_e2e::executor::{Outcome, TestExecutor, handler};

#[tokio::main]
async fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().collect();
    let [_, url, handler_name, mode] = arguments.as_slice() else {
        eprintln!("usage: test_executor URL HANDLER hang|exit-on-assign");
        return ExitCode::from(2);
    };
    let channel = match Endpoint::from_shared(url.clone()) {
        Ok(endpoint) => match endpoint.connect().await {
            Ok(channel) => channel,
            Err(error) => {
                eprintln!("cannot connect to {url}: {error}");
                return ExitCode::from(2);
            }
        },
        Err(error) => {
            eprintln!("invalid URL {url}: {error}");
            return ExitCode::from(2);
        }
    };
    let exit_on_assign = mode == "exit-on-assign";
    let executor = TestExecutor::connect(
        channel,
        "default",
        &[handler_name.as_str()],
        1,
        handler(move |_| async move {
            if exit_on_assign {
                std::process::exit(3);
            }
            Outcome::HangUntilCancelled
        }),
    )
    .await;
    println!("{}", executor.executor_id());
    // Runs until killed.
    std::future::pending::<()>().await;
    ExitCode::SUCCESS
}
