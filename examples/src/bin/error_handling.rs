//! A run that fails on purpose: one partition fails for good, its
//! dependants are skipped, the other partitions succeed, an `all_done`
//! cleanup runs, a flaky task succeeds on its retry, and the run ends
//! FAILED.
//!
//! ```text
//! cargo run -p tributary-examples --bin error_handling
//! cargo run -p tributary-examples --bin error_handling -- --server http://127.0.0.1:50051
//! ```
//!
//! The exit status is 0 when the run behaved exactly as expected (FAILED,
//! with the expected state and attempts for every task), 1 otherwise.

use std::process::ExitCode;

use clap::Parser;
use tributary_examples::error_handling;
use tributary_examples::runner::{self, ServerArgs};

/// Runs the `error_handling` workflow once and checks what happened.
#[derive(Debug, Parser)]
#[command(name = "error_handling", version)]
struct Args {
    #[command(flatten)]
    server: ServerArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    runner::init_logging();
    runner::exit_code(error_handling::run(&args.server).await, |finished| {
        print!("{}", error_handling::render(finished));
        error_handling::deviations(finished).is_empty()
    })
}
