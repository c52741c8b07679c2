//! The seed workflow (Cloacina's parallel-processing tutorial) on Tributary,
//! end to end in one process: an embedded server on SQLite, a
//! `tributary::Worker` serving the nine tasks over gRPC, one run, and the
//! tutorial's results.
//!
//! ```text
//! cargo run --release -p tributary-examples --bin parallel_processing
//! cargo run --release -p tributary-examples --bin parallel_processing -- --no-sleep
//! cargo run --release -p tributary-examples --bin parallel_processing -- --server http://127.0.0.1:50051
//! ```
//!
//! As a worker only, for runs started with the `tributary` CLI (see
//! examples/README.md):
//!
//! ```text
//! parallel_processing --server http://127.0.0.1:50051 --worker
//! ```
//!
//! Or split across processes, e.g. with the partitions served by a worker in
//! another language:
//!
//! ```text
//! parallel_processing --server URL --worker --handlers generate_data,partition_data,combine_results,generate_report,send_notifications,cleanup
//! parallel_processing --server URL --no-worker --no-sleep
//! ```
//!
//! Results go to stdout, the run id and logs to stderr (`RUST_LOG` filters
//! the logs). The exit status is 0 only when the run SUCCEEDED; with
//! `--worker` (alias `--worker-only`), only when the worker drained cleanly once stopped.

use std::process::ExitCode;

use clap::Parser;
use tributary_examples::parallel_processing::{self, Options, report};
use tributary_examples::runner::{self, ServerArgs};
use tributary_examples::serving::Serve;

/// Runs the seed workflow once and prints its per-category stats.
#[derive(Debug, Parser)]
#[command(name = "parallel_processing", version)]
struct Args {
    #[command(flatten)]
    server: ServerArgs,
    /// Skip the tutorial's simulated sleeps (500 ms to load, 0.8-4 s per
    /// partition); the work and the results are otherwise the same.
    #[arg(long)]
    no_sleep: bool,
    /// Attempts the worker runs at once (the three partitions need 3 to
    /// run in parallel).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    capacity: u32,
    /// Only serve the tasks, starting no run: connect to --server, serve
    /// until SIGTERM or SIGINT, then finish what runs and exit (runs come
    /// from elsewhere, e.g. `tributary run start parallel_processing`).
    #[arg(
        long,
        visible_alias = "worker-only",
        requires = "server",
        conflicts_with = "no_worker"
    )]
    worker: bool,
    /// Serve no task: start the run against --server, wait for it and print
    /// the report while workers elsewhere serve the tasks.
    #[arg(long, requires = "server")]
    no_worker: bool,
    /// Serve only these tasks (comma-separated task ids), leaving the others
    /// to workers elsewhere.
    #[arg(
        long,
        value_name = "TASK_ID,...",
        value_delimiter = ',',
        conflicts_with = "no_worker"
    )]
    handlers: Option<Vec<String>>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    runner::init_logging();
    let options = Options {
        server: args.server,
        sleeps: !args.no_sleep,
        capacity: args.capacity,
    };
    let serve = Serve::from_flags(args.no_worker, args.handlers);
    if args.worker {
        return runner::exit_code(
            parallel_processing::serve_only(&options, &serve).await,
            |shutdown| shutdown.drained,
        );
    }
    runner::exit_code(
        parallel_processing::run_serving(&options, &serve).await,
        |finished| {
            print!("{}", report::render(finished, options.sleeps));
            finished.succeeded()
        },
    )
}
