//! The seed workflow (Cloacina's parallel-processing tutorial) on
//! Tributary: generate 10,000 products, split them into three partitions,
//! compute per-category stats of each partition in parallel (the tutorial's
//! random sleeps standing in for expensive work), combine them, then report,
//! notify and clean up.
//!
//! ```text
//! generate_data -> partition_data -> process_partition_{1,2,3} -> combine_results
//!     combine_results -> generate_report, send_notifications -> cleanup (all_done)
//! ```

pub mod followup;
pub mod report;
mod seed;
pub mod simulated;

use serde_json::json;
use tributary::ShutdownReport;

use crate::runner::{self, ExampleError, Finished, ServerArgs};
use crate::serving::{self, Serve};

pub use seed::{DESCRIPTION, workflow};

/// The partition tasks, which run in parallel.
pub const PARTITION_TASKS: [&str; 3] = [
    "process_partition_1",
    "process_partition_2",
    "process_partition_3",
];

/// What to run against and how.
#[derive(Debug, Clone)]
pub struct Options {
    pub server: ServerArgs,
    /// Whether the tutorial's `tokio::time::sleep` calls sleep (500 ms to
    /// load, 0.8-4 s per partition). Process-wide: see [`simulated`].
    pub sleeps: bool,
    /// Attempts the worker runs at once (the partitions need 3 to overlap).
    pub capacity: u32,
}

/// Runs the workflow once.
pub async fn run(options: &Options) -> Result<Finished, ExampleError> {
    run_serving(options, &Serve::All).await
}

/// Runs the workflow once, this process's worker serving only the tasks
/// `serve` selects (or none).
pub async fn run_serving(options: &Options, serve: &Serve) -> Result<Finished, ExampleError> {
    simulated::set_sleeps(options.sleeps);
    runner::run_once_serving(
        &options.server,
        &workflow(),
        json!({}),
        options.capacity,
        serve,
    )
    .await
}

/// Serves the tasks `serve` selects against `--server` until SIGTERM or
/// SIGINT, starting no run (see [`serving::serve_until_signal`]).
pub async fn serve_only(options: &Options, serve: &Serve) -> Result<ShutdownReport, ExampleError> {
    simulated::set_sleeps(options.sleeps);
    serving::serve_workflow(&options.server, &workflow(), options.capacity, serve).await
}
