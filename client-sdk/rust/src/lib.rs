//! The Rust SDK of Tributary, a gRPC-native DAG workflow orchestrator.
//!
//! Write tasks as async functions with [`#[task]`](macro@task), group them
//! with [`workflow!`], register the workflow and start runs with a
//! [`Client`], and run the tasks in a [`Worker`] (an executor connected to
//! the server):
//!
//! ```no_run
//! use std::time::Duration;
//! use serde_json::json;
//! use tributary::{task, Client, Context, TaskError, Worker};
//!
//! #[task(id = "generate_data", dependencies = [], retry_attempts = 2)]
//! async fn generate_data(context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
//!     context.insert("numbers", json!([1, 2, 3]))?;
//!     Ok(())
//! }
//!
//! #[task(id = "sum", dependencies = ["generate_data"])]
//! async fn sum(context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
//!     let numbers: Vec<i64> = context.get("numbers")?;
//!     context.insert("sum", json!(numbers.iter().sum::<i64>()))?;
//!     Ok(())
//! }
//!
//! # async fn example() -> Result<(), tributary::Error> {
//! let workflow = tributary::workflow!("numbers", [generate_data, sum]);
//! let worker = Worker::builder("http://127.0.0.1:50051").workflow(&workflow).start()?;
//! let client = Client::connect("http://127.0.0.1:50051").await?;
//! client.register_workflow(&workflow).await?;
//! let started = client.start_run("numbers", json!({})).await?;
//! let run = client.wait(&started.run_id).await?;
//! assert_eq!(run.context["sum"], 6);
//! worker.shutdown(Duration::from_secs(10)).await;
//! # Ok(()) }
//! ```
//!
//! Contexts travel as JSON text. Integers that fit an `i64` or a `u64` are
//! kept exactly (so values beyond 2^53 survive); larger integers become
//! floating-point numbers, because this crate does not turn on serde_json's
//! `arbitrary_precision` (it would change `serde_json` for every crate of a
//! build).
//!
//! Semantics (trigger rules, retries, the context rule) are in the
//! repository's `docs/semantics.md`;
//! `retry_attempts` counts retries after the first attempt.

#![warn(missing_docs)]

extern crate self as tributary;

mod attempt;
mod client;
mod connection;
mod context;
mod error;
mod events;
mod retry;
mod runs;
mod schedule;
mod value_cache;
mod worker;
mod workflow;

pub use client::{
    Client, GetRunOptions, ListRuns, RegisteredWorkflow, RunPage, StartOptions, StartedRun,
};
pub use connection::ConnectOptions;
pub use context::{Context, ContextError};
pub use error::{Error, TaskError};
pub use events::{RunEvent, RunEventKind, RunEvents};
pub use retry::{RetriedRun, RetryOptions};
pub use runs::{AttemptInfo, Run, RunStatus, SkipReason, TaskOutcome, TaskState};
pub use schedule::{CatchUpPolicy, NewSchedule, OverlapPolicy, Schedule};
pub use worker::{Attempt, Cancellation, ShutdownReport, Worker, WorkerBuilder, WorkerStatus};
pub use workflow::{Handler, Task, TaskFuture, Workflow};
// Definitions and their validation are `tributary-core`'s, shared with the
// server, so both accept and reject the same definitions with the same
// messages. Versions are computed by the server only.
pub use tributary_core::{
    BACKOFFS, CONCURRENCY_STRATEGIES, ConcurrencyDefinition, DefinitionError, Labels,
    MAP_ELEMENT_KEY, MAP_INDEX_KEY, MAP_MAX_INSTANCES_LIMIT, MAX_ACTIVE_RUNS_LIMIT, MAX_DELAY_MS,
    MAX_RETRY_ATTEMPTS, MAX_TIMEOUT_MS, TRIGGER_RULES, TaskDefinition, WorkflowDefinition,
    is_valid_handler, is_valid_identifier,
};

/// Turns `async fn f(context: &mut Context<serde_json::Value>) -> Result<(), TaskError>`
/// into a task: the function stays as written, and a function `f_task()`
/// returning a [`Task`] (its definition and a handler calling `f`) is
/// generated next to it.
///
/// Attributes (all optional except `id`): `id = "..."`,
/// `dependencies = ["...", ...]`, `retry_attempts = N` (retries after the
/// first attempt), `retry_delay_ms = N`, `retry_backoff = "fixed" | "linear"
/// | "exponential"`, `retry_max_delay_ms = N`, `retry_jitter = bool`,
/// `timeout_ms = N`, `trigger_rule = "all_success" | "all_done" |
/// "one_success" | "one_failed" | "none_failed"`, `handler = "..."`,
/// `required_labels = [("key", "value"), ...]` (only workers with every one
/// of these labels, see [`WorkerBuilder::label`], are assigned the task),
/// `map_over = "key"`, `map_output = "key"`, `map_max_instances = N` (a
/// mapped task, see [`Task::map_over`]).
/// Unknown attributes and bad values are compile errors.
///
/// ```
/// use tributary::{task, Context, TaskError};
///
/// #[task(id = "partition_data", dependencies = ["generate_data"], retry_attempts = 2)]
/// async fn partition_data(context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
///     let products: Vec<u32> = context.get("products")?;
///     context.insert("count", products.len())?;
///     Ok(())
/// }
///
/// let task = partition_data_task();
/// assert_eq!(task.id(), "partition_data");
/// assert_eq!(task.definition().dependencies, ["generate_data"]);
///
/// #[task(id = "train", required_labels = [("gpu", "true")])]
/// async fn train(_context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
///     Ok(())
/// }
/// assert_eq!(train_task().definition().required_labels["gpu"], "true");
///
/// #[task(id = "fetch", map_over = "urls", map_output = "pages")]
/// async fn fetch(context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
///     let url: String = context.get(tributary::MAP_ELEMENT_KEY)?;
///     context.insert("pages", url.len())?;
///     Ok(())
/// }
/// assert_eq!(fetch_task().definition().map_over, "urls");
/// ```
pub use tributary_macros::task;

/// Groups tasks written with [`#[task]`](macro@task) into a [`Workflow`]:
/// `workflow!("name", [f, g, ...])` is
/// `Workflow::new("name").task(f_task()).task(g_task())...`. Paths work too
/// (`[tasks::f]` calls `tasks::f_task()`).
///
/// ```
/// use tributary::{task, Context, TaskError};
///
/// #[task(id = "a")]
/// async fn a(_context: &mut Context<serde_json::Value>) -> Result<(), TaskError> { Ok(()) }
///
/// #[task(id = "b", dependencies = ["a"])]
/// async fn b(_context: &mut Context<serde_json::Value>) -> Result<(), TaskError> { Ok(()) }
///
/// let workflow = tributary::workflow!("pipeline", [a, b]);
/// workflow.validate().unwrap();
/// assert_eq!(workflow.tasks().len(), 2);
/// ```
pub use tributary_macros::workflow;

/// Re-exported so that code generated by the macros names one crate.
#[doc(hidden)]
pub use serde_json;
