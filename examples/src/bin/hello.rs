//! One task, one run: the greeting it wrote into the context.
//!
//! ```text
//! cargo run -p tributary-examples --bin hello -- --name Ada
//! cargo run -p tributary-examples --bin hello -- --server http://127.0.0.1:50051
//! ```
//!
//! The exit status is 0 only when the run SUCCEEDED.

use std::process::ExitCode;

use clap::Parser;
use tributary_examples::hello;
use tributary_examples::runner::{self, ServerArgs};

/// Runs the `hello` workflow once and prints its greeting.
#[derive(Debug, Parser)]
#[command(name = "hello", version)]
struct Args {
    #[command(flatten)]
    server: ServerArgs,
    /// Only serve the workflow's tasks, starting no run: connect to
    /// --server, serve until SIGTERM or SIGINT, then finish what runs and
    /// exit (runs come from elsewhere, e.g. `tributary run start`).
    #[arg(long, visible_alias = "worker-only", requires = "server")]
    worker: bool,
    /// Who to greet.
    #[arg(long, default_value = "world")]
    name: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    runner::init_logging();
    if args.worker {
        return runner::exit_code(hello::serve_only(&args.server).await, |shutdown| {
            shutdown.drained
        });
    }
    runner::exit_code(hello::run(&args.server, &args.name).await, |finished| {
        print!("{}", runner::task_table(&finished.run));
        match hello::greeting(&finished.run) {
            Some(greeting) => println!("{greeting}"),
            None => println!("(no greeting in the final context)"),
        }
        finished.succeeded()
    })
}
