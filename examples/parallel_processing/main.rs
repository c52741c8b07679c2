//! The seed workflow (Cloacina's parallel-processing tutorial) on Tributary,
//! end to end in one process: an embedded server on SQLite, the workflow
//! registered from `examples/parallel_processing.workflow.yaml`, an executor
//! serving its nine tasks over gRPC, one run, and the tutorial's results.
//!
//! ```text
//! cargo run --release -p tributary-examples --bin parallel_processing
//! cargo run --release -p tributary-examples --bin parallel_processing -- --no-sleep
//! cargo run --release -p tributary-examples --bin parallel_processing -- --server http://127.0.0.1:50051
//! ```
//!
//! Results go to stdout, logs to stderr (`RUST_LOG` filters them). The exit
//! status is 0 only when the run SUCCEEDED.
//!
//! Until the Rust SDK exists this talks to the generated gRPC client
//! directly: `context.rs` and `executor.rs` stand in for the SDK's `Context`
//! and worker, and the task functions in `tasks.rs` are written against that
//! small API only.

mod context;
mod driver;
mod executor;
mod report;
mod tasks;
#[cfg(test)]
mod tests;
mod workflow;

use std::process::ExitCode;

use clap::Parser;

use crate::driver::Options;
use crate::tasks::Simulation;

/// Runs the seed workflow once and prints its per-category stats.
#[derive(Debug, Parser)]
#[command(name = "parallel_processing", version)]
struct Args {
    /// Use the Tributary server at this URL (e.g. http://127.0.0.1:50051)
    /// instead of starting one in this process.
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// Database of the embedded server (`sqlite://PATH` or `postgres://...`);
    /// default: a SQLite file in a temporary directory, deleted afterwards.
    #[arg(long, value_name = "URL", conflicts_with = "server")]
    database_url: Option<String>,
    /// Skip the tutorial's simulated sleeps (500 ms to load, 0.8-4 s per
    /// partition); the work and the results are otherwise the same.
    #[arg(long)]
    no_sleep: bool,
    /// Attempts the executor runs at once (the three partitions need 3 to
    /// run in parallel).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    capacity: u32,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    let options = Options {
        server: args.server,
        database_url: args.database_url,
        simulation: Simulation {
            sleeps: !args.no_sleep,
        },
        capacity: args.capacity,
    };
    match driver::run(&options).await {
        Ok(outcome) => {
            print!("{}", report::render(&outcome));
            if outcome.succeeded() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("error: {}", error_chain(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its sources, each said once (`transport error` alone does
/// not say that the connection was refused).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// Logs to stderr: this example's lines at `info`, everything else
/// (the embedded server's per-call lines among them) from `warn`, unless
/// `RUST_LOG` says otherwise.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,parallel_processing=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
