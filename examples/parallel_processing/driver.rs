//! One run of the seed workflow from start to finish: start an embedded
//! server on SQLite (unless a server URL is given), register the workflow,
//! connect the executor, start a run, poll `GetRun` until it is terminal,
//! and stop everything again.

use std::time::{Duration, Instant};

use tonic::transport::Channel;
use tracing::{info, warn};
use tributary_proto::v1 as pb;
use tributary_proto::v1::run_service_client::RunServiceClient;
use tributary_proto::v1::workflow_service_client::WorkflowServiceClient;
use tributary_server::config::ServeConfig;
use tributary_server::server::{RunningServer, ServeError};

use crate::executor::{AttemptTiming, Executor, ExecutorError, ExecutorOptions};
use crate::tasks::{self, Simulation};
use crate::workflow;

/// How often `GetRun` is polled while the run is going.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// The largest `GetRun` answer accepted. While the run goes, its context
/// holds the whole catalog twice (about 1.7 MB here); tonic's default 4 MiB
/// would leave little room for a larger catalog.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// What to run against and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// A running server's URL; `None` starts an embedded one.
    pub server: Option<String>,
    /// The embedded server's database; `None` is a SQLite file in a
    /// temporary directory, deleted afterwards.
    pub database_url: Option<String>,
    /// Whether tasks sleep as the tutorial does.
    pub simulation: Simulation,
    /// Attempts the executor runs at once.
    pub capacity: u32,
}

/// A finished run and what was measured around it.
#[derive(Debug)]
pub struct Outcome {
    /// The run as `GetRun` returned it once terminal.
    pub run: pb::Run,
    /// The run's final context.
    pub context: serde_json::Value,
    /// From sending `StartRun` to seeing the run terminal (includes up to one
    /// poll interval).
    pub observed: Duration,
    /// The run's attempts as the executor saw them, in the order they ended.
    pub timings: Vec<AttemptTiming>,
}

impl Outcome {
    /// Whether the run succeeded.
    pub fn succeeded(&self) -> bool {
        self.run.status() == pb::RunStatus::Succeeded
    }
}

/// Why the run could not be carried out (a run that ends FAILED is an
/// [`Outcome`], not an error).
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("cannot create a temporary directory for the database: {0}")]
    TemporaryDirectory(std::io::Error),
    #[error("cannot start the embedded server: {0}")]
    Serve(#[from] ServeError),
    #[error("invalid server URL {url:?}: {source}")]
    Url {
        url: String,
        source: tonic::codegen::http::uri::InvalidUri,
    },
    #[error("cannot connect to {url}: {source}")]
    Connect {
        url: String,
        source: tonic::transport::Error,
    },
    #[error("cannot register the workflow: {0}")]
    Register(tonic::Status),
    #[error("task {0:?} of the definition has no function in this example")]
    MissingTask(String),
    #[error("the executor failed: {0}")]
    Executor(#[from] ExecutorError),
    #[error("cannot start the run: {0}")]
    StartRun(tonic::Status),
    #[error("cannot read run {run_id}: {source}")]
    GetRun {
        run_id: String,
        source: tonic::Status,
    },
    #[error("the server answered GetRun without a run")]
    MissingRun,
    #[error("the run's context is not JSON: {0}")]
    Context(serde_json::Error),
}

/// Runs the seed workflow once.
pub async fn run(options: &Options) -> Result<Outcome, DriverError> {
    let embedded = match &options.server {
        Some(_) => None,
        None => Some(EmbeddedServer::start(options.database_url.as_deref()).await?),
    };
    let url = match (&options.server, &embedded) {
        (Some(url), _) => url.clone(),
        (None, Some(embedded)) => embedded.server.url(),
        (None, None) => unreachable!("an embedded server is started when no URL is given"),
    };
    let result = run_against(&url, options).await;
    if let Some(embedded) = embedded {
        embedded.shutdown().await;
    }
    result
}

async fn run_against(url: &str, options: &Options) -> Result<Outcome, DriverError> {
    let channel = Channel::from_shared(url.to_owned())
        .map_err(|source| DriverError::Url {
            url: url.to_owned(),
            source,
        })?
        .connect()
        .await
        .map_err(|source| DriverError::Connect {
            url: url.to_owned(),
            source,
        })?;

    let definition = workflow::definition();
    let registered = WorkflowServiceClient::new(channel.clone())
        .register_workflow(pb::RegisterWorkflowRequest {
            definition: Some(workflow::definition_proto()),
        })
        .await
        .map_err(DriverError::Register)?
        .into_inner();
    let version = registered
        .workflow
        .map(|workflow| workflow.version)
        .unwrap_or_default();
    info!(workflow = %definition.name, %version, "workflow registered");

    let mut functions = tasks::all();
    let mut handlers = Vec::new();
    for (task_id, handler) in workflow::handlers(&definition) {
        let position = functions
            .iter()
            .position(|(id, _)| *id == task_id)
            .ok_or_else(|| DriverError::MissingTask(task_id.clone()))?;
        handlers.push((handler, functions.swap_remove(position).1));
    }
    let mut executor = Executor::connect(
        channel.clone(),
        ExecutorOptions {
            name: format!("parallel_processing example (pid {})", std::process::id()),
            handlers,
            capacity: options.capacity,
            simulation: options.simulation,
        },
    )
    .await?;
    info!(
        executor_id = executor.executor_id(),
        capacity = options.capacity,
        "executor connected"
    );

    let mut runs = RunServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let started = Instant::now();
    let run_id = runs
        .start_run(pb::StartRunRequest {
            workflow_name: definition.name.clone(),
            workflow_version: version,
            input_context_json: "{}".to_owned(),
            idempotency_key: String::new(),
        })
        .await
        .map_err(DriverError::StartRun)?
        .into_inner()
        .run_id;
    info!(%run_id, "run started");

    let finished = tokio::select! {
        run = wait_for_run(&mut runs, &run_id) => run,
        error = executor.stopped() => Err(error.into()),
    };
    let observed = started.elapsed();
    let timings = executor
        .timings()
        .into_iter()
        .filter(|timing| timing.run_id == run_id)
        .collect();
    executor.shutdown().await;
    let run = finished?;
    let context = serde_json::from_str(&run.context_json).map_err(DriverError::Context)?;
    info!(%run_id, status = run.status().as_str_name(), "run finished");
    Ok(Outcome {
        run,
        context,
        observed,
        timings,
    })
}

/// Polls `GetRun` until the run is terminal.
async fn wait_for_run(
    runs: &mut RunServiceClient<Channel>,
    run_id: &str,
) -> Result<pb::Run, DriverError> {
    loop {
        let run = runs
            .get_run(pb::GetRunRequest {
                run_id: run_id.to_owned(),
            })
            .await
            .map_err(|source| DriverError::GetRun {
                run_id: run_id.to_owned(),
                source,
            })?
            .into_inner()
            .run
            .ok_or(DriverError::MissingRun)?;
        if matches!(
            run.status(),
            pb::RunStatus::Succeeded | pb::RunStatus::Failed | pb::RunStatus::Cancelled
        ) {
            return Ok(run);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// A server in this process, on a loopback port.
struct EmbeddedServer {
    server: RunningServer,
    // Holds the SQLite file's directory until the server has stopped.
    _directory: Option<tempfile::TempDir>,
}

impl EmbeddedServer {
    async fn start(database_url: Option<&str>) -> Result<EmbeddedServer, DriverError> {
        let (database_url, directory) = match database_url {
            Some(url) => (url.to_owned(), None),
            None => {
                let directory = tempfile::Builder::new()
                    .prefix("tributary-parallel-processing-")
                    .tempdir()
                    .map_err(DriverError::TemporaryDirectory)?;
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
