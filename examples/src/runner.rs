//! What the example binaries share: a server (started in this process on a
//! temporary SQLite file, or the one `--server` names), a
//! [`tributary::Worker`] serving a workflow's tasks over gRPC, one run of the
//! workflow driven by a [`tributary::Client`], and how to print what
//! happened.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;
use tracing::{info, warn};
use tributary::{Client, Run, RunStatus, SkipReason, Task, TaskState, Worker, Workflow};
use tributary_server::config::ServeConfig;
use tributary_server::server::{RunningServer, ServeError};

use crate::serving::Serve;

/// A worker that has not registered by then will not (a wrong URL, a server
/// that refuses it); better to say so than to wait for a run that never
/// starts.
const WORKER_CONNECT_LIMIT: Duration = Duration::from_secs(10);

/// How long the worker may take to finish and report what it still runs
/// once the run is over (nothing, normally).
pub(crate) const WORKER_SHUTDOWN_LIMIT: Duration = Duration::from_secs(10);

/// Where the server comes from: the flags every example binary takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServerArgs {
    /// Use the Tributary server at this URL (e.g. http://127.0.0.1:50051)
    /// instead of starting one in this process.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// Database of the embedded server (`sqlite://PATH` or `postgres://...`);
    /// default: a SQLite file in a temporary directory, deleted afterwards.
    #[arg(long, value_name = "URL", conflicts_with = "server")]
    pub database_url: Option<String>,
}

/// Why a run could not be carried out. A run that ends FAILED is a
/// [`Finished`], not an error.
#[derive(Debug, thiserror::Error)]
pub enum ExampleError {
    #[error("cannot create a temporary directory for the database")]
    TemporaryDirectory(#[source] std::io::Error),
    #[error("cannot start the embedded server")]
    Serve(#[from] ServeError),
    #[error("cannot connect to {url}")]
    Connect {
        url: String,
        #[source]
        source: tributary::Error,
    },
    #[error("cannot register workflow {workflow}")]
    Register {
        workflow: String,
        #[source]
        source: tributary::Error,
    },
    #[error("unknown task ids in --handlers: {unknown}; the tasks of {workflow} are {known}")]
    UnknownTasks {
        workflow: String,
        unknown: String,
        known: String,
    },
    #[error("--worker needs --server URL")]
    WorkerOnlyWithoutServer,
    #[error("cannot listen for SIGTERM and SIGINT")]
    Signal(#[source] std::io::Error),
    #[error("cannot start the worker")]
    Worker(#[source] tributary::Error),
    #[error("the worker did not register with {url} within {limit:?}")]
    WorkerNotConnected { url: String, limit: Duration },
    #[error("cannot start a run of {workflow}")]
    StartRun {
        workflow: String,
        #[source]
        source: tributary::Error,
    },
    #[error("cannot follow run {run_id}")]
    Wait {
        run_id: String,
        #[source]
        source: tributary::Error,
    },
}

/// One attempt as the worker saw it: when the task's function was entered
/// and when it returned (the worker's monotonic clock).
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The run the attempt belonged to.
    pub run_id: String,
    pub task_id: String,
    pub started: Instant,
    pub finished: Instant,
    pub succeeded: bool,
}

impl Attempt {
    /// How long the task's function ran.
    pub fn duration(&self) -> Duration {
        self.finished - self.started
    }
}

/// A run that reached a terminal status, and what was measured around it.
#[derive(Debug)]
pub struct Finished {
    /// The workflow version the server computed at registration.
    pub version: String,
    /// The run as [`Client::wait`] returned it: status, every task's state
    /// and attempts, final context.
    pub run: Run,
    /// From sending `StartRun` until `wait` saw the run finished (it polls
    /// every 20 ms, so this is up to 20 ms late).
    pub elapsed: Duration,
    /// The attempts this process's worker ran, in the order they ended
    /// (none with [`Serve::Nothing`]).
    pub attempts: Vec<Attempt>,
}

impl Finished {
    /// Whether the run succeeded.
    pub fn succeeded(&self) -> bool {
        self.run.status == RunStatus::Succeeded
    }

    /// The worker's attempts of one task, oldest first.
    pub fn attempts_of<'a>(&'a self, task_id: &'a str) -> impl Iterator<Item = &'a Attempt> + 'a {
        self.attempts
            .iter()
            .filter(move |attempt| attempt.task_id == task_id)
    }

    /// From the first attempt's start to the last one's end: the run's wall
    /// time on the worker's clock, without the polling of `wait`.
    pub fn task_span(&self) -> Option<Duration> {
        let first = self.attempts.iter().map(|attempt| attempt.started).min()?;
        let last = self.attempts.iter().map(|attempt| attempt.finished).max()?;
        Some(last - first)
    }
}

/// Registers `workflow`, serves its tasks with a worker running up to
/// `capacity` attempts at once, starts one run with `input` and waits for it
/// to finish; all against the server `server` names, or against one started
/// here and stopped afterwards.
pub async fn run_once(
    server: &ServerArgs,
    workflow: &Workflow,
    input: Value,
    capacity: u32,
) -> Result<Finished, ExampleError> {
    run_once_serving(server, workflow, input, capacity, &Serve::All).await
}

/// [`run_once`] with this process's worker serving only the tasks `serve`
/// selects, or none: workers elsewhere serve the others.
pub async fn run_once_serving(
    server: &ServerArgs,
    workflow: &Workflow,
    input: Value,
    capacity: u32,
    serve: &Serve,
) -> Result<Finished, ExampleError> {
    let tasks = serve.select(workflow)?;
    let (url, embedded) = match &server.server {
        Some(url) => (url.clone(), None),
        None => {
            let embedded = EmbeddedServer::start(server.database_url.as_deref()).await?;
            (embedded.server.url(), Some(embedded))
        }
    };
    let server_outlives_us = embedded.is_none();
    let result = run_against(
        &url,
        workflow,
        input,
        capacity,
        tasks.as_deref(),
        server_outlives_us,
    )
    .await;
    if let Some(embedded) = embedded {
        embedded.shutdown().await;
    }
    result
}

async fn run_against(
    url: &str,
    workflow: &Workflow,
    input: Value,
    capacity: u32,
    tasks: Option<&[&Task]>,
    server_outlives_us: bool,
) -> Result<Finished, ExampleError> {
    let client = Client::connect(url)
        .await
        .map_err(|source| ExampleError::Connect {
            url: url.to_owned(),
            source,
        })?;
    let registered =
        client
            .register_workflow(workflow)
            .await
            .map_err(|source| ExampleError::Register {
                workflow: workflow.name().to_owned(),
                source,
            })?;
    info!(workflow = workflow.name(), version = %registered.version, "workflow registered");

    let log = AttemptLog::default();
    let worker = match tasks {
        Some(tasks) => Some(connected_worker(url, workflow, tasks, capacity, &log).await?),
        None => None,
    };

    let clock = Instant::now();
    let started = client
        .start_run(workflow.name(), input)
        .await
        .map_err(|source| ExampleError::StartRun {
            workflow: workflow.name().to_owned(),
            source,
        })?;
    // Early, and on stderr, so that the run can be followed while it goes;
    // the hint only when the server is one the watch can still reach, not
    // the embedded one that stops when this process exits.
    if server_outlives_us {
        eprintln!(
            "Started run {id} of {name} on {url}; follow it with: tributary run watch {id} --server {url}",
            id = started.run_id,
            name = workflow.name(),
        );
    } else {
        eprintln!(
            "Started run {id} of {name} on the embedded server at {url} (it stops when this \
             example exits; to watch runs from another terminal, start `tributary serve` and \
             pass --server)",
            id = started.run_id,
            name = workflow.name(),
        );
    }
    let waited = client.wait(&started.run_id).await;
    let elapsed = clock.elapsed();
    if let Some(worker) = worker {
        let report = worker.shutdown(WORKER_SHUTDOWN_LIMIT).await;
        if !report.drained {
            warn!(?report, "the worker did not drain cleanly");
        }
    }
    let run = waited.map_err(|source| ExampleError::Wait {
        run_id: started.run_id.clone(),
        source,
    })?;
    info!(run_id = %run.id, status = status_name(run.status), "run finished");
    let (attempts, others): (Vec<Attempt>, Vec<Attempt>) = log
        .take()
        .into_iter()
        .partition(|attempt| attempt.run_id == run.id);
    announce_other_runs(workflow.name(), &others);
    Ok(Finished {
        version: registered.version,
        run,
        elapsed,
        attempts,
    })
}

/// Says on stderr that this process's worker also served runs it did not
/// start: runs of the same workflow left waiting for a worker (started from
/// the CLI, say) are served by whichever worker comes, this one included.
fn announce_other_runs(workflow: &str, others: &[Attempt]) {
    let mut runs: Vec<&str> = others
        .iter()
        .map(|attempt| attempt.run_id.as_str())
        .collect();
    runs.sort_unstable();
    runs.dedup();
    if runs.is_empty() {
        return;
    }
    eprintln!(
        "This example's worker also ran {attempts} attempts of {count} other runs of {workflow}, \
         started elsewhere and waiting for a worker: {list}",
        attempts = others.len(),
        count = runs.len(),
        list = runs.join(", "),
    );
}

/// [`start_worker`], once it has registered with the server.
pub(crate) async fn connected_worker(
    url: &str,
    workflow: &Workflow,
    tasks: &[&Task],
    capacity: u32,
    log: &AttemptLog,
) -> Result<Worker, ExampleError> {
    let worker = start_worker(url, workflow, tasks, capacity, log)?;
    let mut status = worker.status();
    match tokio::time::timeout(
        WORKER_CONNECT_LIMIT,
        status.wait_for(|status| status.connected),
    )
    .await
    {
        Ok(Ok(_)) => Ok(worker),
        Ok(Err(_)) | Err(_) => {
            worker.abort().await;
            Err(ExampleError::WorkerNotConnected {
                url: url.to_owned(),
                limit: WORKER_CONNECT_LIMIT,
            })
        }
    }
}

/// A worker serving `tasks` of `workflow`, each handler wrapped to note its
/// attempt's start and end in `log`: the SDK's run view has attempts but no
/// times, and the examples report how much ran in parallel.
fn start_worker(
    url: &str,
    workflow: &Workflow,
    tasks: &[&Task],
    capacity: u32,
    log: &AttemptLog,
) -> Result<Worker, ExampleError> {
    let mut builder = Worker::builder(url)
        .name(format!(
            "{} example (pid {})",
            workflow.name(),
            std::process::id()
        ))
        .capacity(capacity);
    for task in tasks {
        let task_id = task.id().to_owned();
        let handler = task.handler();
        let log = log.clone();
        builder = builder.handler(
            task.definition().handler_name(workflow.name()),
            move |context| {
                let task_id = task_id.clone();
                let handler = handler.clone();
                let log = log.clone();
                Box::pin(async move {
                    let run_id = context
                        .attempt()
                        .map(|attempt| attempt.run_id.clone())
                        .unwrap_or_default();
                    let started = Instant::now();
                    let result = handler(context).await;
                    log.push(Attempt {
                        run_id,
                        task_id,
                        started,
                        finished: Instant::now(),
                        succeeded: result.is_ok(),
                    });
                    result
                })
            },
        );
    }
    builder.start().map_err(ExampleError::Worker)
}

/// The attempts a worker ran, shared with its wrapped handlers.
#[derive(Debug, Clone, Default)]
pub(crate) struct AttemptLog(Arc<Mutex<Vec<Attempt>>>);

impl AttemptLog {
    pub(crate) fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    fn push(&self, attempt: Attempt) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(attempt);
    }

    fn take(&self) -> Vec<Attempt> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// A server in this process, on a loopback port.
struct EmbeddedServer {
    server: RunningServer,
    // Holds the SQLite file's directory until the server has stopped.
    _directory: Option<tempfile::TempDir>,
}

impl EmbeddedServer {
    async fn start(database_url: Option<&str>) -> Result<EmbeddedServer, ExampleError> {
        let (database_url, directory) = match database_url {
            Some(url) => (url.to_owned(), None),
            None => {
                let directory = tempfile::Builder::new()
                    .prefix("tributary-example-")
                    .tempdir()
                    .map_err(ExampleError::TemporaryDirectory)?;
                let url = format!(
                    "sqlite://{}",
                    directory.path().join("tributary.db").display()
                );
                (url, Some(directory))
            }
        };
        let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let server =
            tributary_server::server::start(&ServeConfig::new(loopback, &database_url)).await?;
        info!(url = %server.url(), database = %database_url, "embedded server started");
        Ok(EmbeddedServer {
            server,
            _directory: directory,
        })
    }

    async fn shutdown(self) {
        if let Err(error) = self.server.shutdown().await {
            warn!(%error, "the embedded server did not stop cleanly");
        }
    }
}

/// `SUCCEEDED`, `FAILED`, ...
pub fn status_name(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Queued => "QUEUED",
        RunStatus::Pending => "PENDING",
        RunStatus::Running => "RUNNING",
        RunStatus::Succeeded => "SUCCEEDED",
        RunStatus::Failed => "FAILED",
        RunStatus::Cancelled => "CANCELLED",
    }
}

/// `SUCCEEDED`, `SKIPPED (upstream failed)`, ...
pub fn state_name(state: TaskState, skip_reason: Option<SkipReason>) -> String {
    let name = match state {
        TaskState::Waiting => "WAITING",
        TaskState::Ready => "READY",
        TaskState::Assigned => "ASSIGNED",
        TaskState::Running => "RUNNING",
        TaskState::Succeeded => "SUCCEEDED",
        TaskState::Failed => "FAILED",
        TaskState::Skipped => "SKIPPED",
        TaskState::Cancelled => "CANCELLED",
        TaskState::RetryScheduled => "RETRY_SCHEDULED",
    };
    match skip_reason {
        Some(SkipReason::UpstreamFailed) => format!("{name} (upstream failed)"),
        Some(SkipReason::RuleNotMet) => format!("{name} (rule not met)"),
        None => name.to_owned(),
    }
}

/// The run's header line and one line per task (canonical order): state,
/// attempts, and the last error.
pub fn task_table(run: &Run) -> String {
    let mut out = format!(
        "Run {} of {}: {}\n",
        run.id,
        run.workflow_name,
        status_name(run.status)
    );
    for task in &run.tasks {
        let mut line = format!(
            "  {:<20} {:<27} attempts: {}",
            task.task_id,
            state_name(task.state, task.skip_reason),
            task.attempts.len()
        );
        if !task.error.is_empty() {
            line.push_str("  error: ");
            line.push_str(&task.error);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The error and its causes on one line, each said once (a bare
/// `transport error` does not say that the connection was refused).
pub fn error_chain(error: &dyn std::error::Error) -> String {
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

/// What an example binary exits with: `report` prints the finished run and
/// says whether it went as the example expects; an error is printed with
/// its causes.
pub fn exit_code<T>(
    outcome: Result<T, ExampleError>,
    report: impl FnOnce(&T) -> bool,
) -> std::process::ExitCode {
    match outcome {
        Ok(finished) if report(&finished) => std::process::ExitCode::SUCCESS,
        Ok(_) => std::process::ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {}", error_chain(&error));
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs to stderr: this crate's lines at `info`, everything else (the
/// embedded server's per-call lines among them) from `warn`, unless
/// `RUST_LOG` says otherwise.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,tributary_examples=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
