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
    /// Only serve the workflow's tasks, starting no run: connect to
    /// --server, serve until SIGTERM or SIGINT, then finish what runs and
    /// exit (runs come from elsewhere, e.g. `tributary run start`).
    #[arg(long, visible_alias = "worker-only", requires = "server")]
    worker: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    runner::init_logging();
    if args.worker {
        return runner::exit_code(error_handling::serve_only(&args.server).await, |shutdown| {
            shutdown.drained
        });
    }
    runner::exit_code(error_handling::run(&args.server).await, |finished| {
        print!("{}", error_handling::render(finished));
        error_handling::deviations(finished).is_empty()
    })
}
