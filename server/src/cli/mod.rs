//! The `tributary` command line: `serve`, `health`, and client commands that
//! talk to a running server over gRPC.

mod client;
mod executor;
mod health;
mod key;
mod output;
mod retry;
mod run;
mod run_view;
mod schedule;
mod waiting;
mod watch;
mod workflow;

pub use workflow::read_definition_file;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, ServeConfig};

/// Tributary: a gRPC-native DAG workflow orchestrator.
#[derive(Debug, Parser)]
#[command(name = "tributary", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeConfig),
    /// Exit 0 when a server reports SERVING, 1 otherwise.
    Health(client::ClientOptions),
    /// Register and inspect workflows.
    #[command(subcommand)]
    Workflow(workflow::WorkflowCommand),
    /// Start, inspect and cancel runs.
    #[command(subcommand)]
    Run(run::RunCommand),
    /// Inspect connected executors.
    #[command(subcommand)]
    Executor(executor::ExecutorCommand),
    /// Create, list and revoke API keys.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Schedules: start runs of a workflow at the times a cron expression
    /// names.
    #[command(subcommand)]
    Schedule(schedule::ScheduleCommand),
}

/// A failure the CLI reports before exiting non-zero.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Serve(#[from] crate::server::ServeError),
    /// `--server` is not a URL a server can have.
    #[error("{0}")]
    ServerUrl(String),
    /// The server could not be reached; the message says why.
    #[error("{0}")]
    Unreachable(String),
    /// Whoever read stdout stopped reading (`| head`): the command ends
    /// quietly with status 0.
    #[error("stdout was closed")]
    ClosedOutput,
    #[error("cannot write to stdout: {0}")]
    Output(std::io::Error),
    #[error("{:?}: {}", .0.code(), .0.message())]
    Rpc(#[from] tonic::Status),
    #[error("{0}")]
    Input(String),
    #[error("cannot install the signal handler: {0}")]
    Signal(std::io::Error),
    #[error("invalid log filter {filter:?}: {message}")]
    LogFilter { filter: String, message: String },
    #[error("{0}")]
    Trace(#[from] crate::telemetry::traces::TraceSetupError),
}

/// Parses the arguments and runs the command; the binary's whole `main`.
pub async fn run() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Serve(config) => serve(config).await.map(|()| ExitCode::SUCCESS),
        Command::Health(options) => health::run(&options).await,
        Command::Workflow(command) => workflow::run(command).await.map(|()| ExitCode::SUCCESS),
        Command::Run(command) => run::run(command).await,
        Command::Executor(command) => executor::executors(command).await,
        Command::Key(command) => key::run(command).await,
        Command::Schedule(command) => schedule::run(command).await,
    };
    match outcome {
        Ok(code) => code,
        Err(CliError::ClosedOutput) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: ServeConfig) -> Result<(), CliError> {
    let trace_provider = match &config.otlp_endpoint {
        Some(endpoint) => Some(crate::telemetry::traces::provider(endpoint)?),
        None => None,
    };
    init_logging(
        &config.log_level,
        config.log_format,
        trace_provider.as_ref(),
    )?;
    crate::accept::raise_open_files_limit();
    let served = serve_until_signal(&config).await;
    if trace_provider.is_some() {
        // Flushing waits on the exporter, which needs this runtime's
        // workers; it must not block one of them.
        let _ = tokio::task::spawn_blocking(crate::telemetry::traces::shutdown).await;
    }
    served
}

async fn serve_until_signal(config: &ServeConfig) -> Result<(), CliError> {
    let mut server = crate::server::start(config).await?;
    tokio::select! {
        signal = shutdown_signal() => {
            signal?;
            tracing::info!("shutdown requested; finishing running calls");
            server.shutdown().await?;
        }
        result = server.wait() => result?,
    }
    Ok(())
}

/// Logs to stderr, with colours only when stderr is a terminal (never in a
/// file or a pipe); with a trace provider, API call spans go to it too,
/// whatever the log filter.
fn init_logging(
    filter: &str,
    format: LogFormat,
    trace_provider: Option<&opentelemetry_sdk::trace::SdkTracerProvider>,
) -> Result<(), CliError> {
    use std::io::IsTerminal;
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let env_filter = EnvFilter::try_new(filter).map_err(|error| CliError::LogFilter {
        filter: filter.to_owned(),
        message: error.to_string(),
    })?;
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let fmt = match format {
        LogFormat::Pretty => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    }
    .with_filter(env_filter);
    let spans = trace_provider.map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(crate::telemetry::traces::tracer(provider))
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target("tributary_server::telemetry::traces", tracing::Level::INFO),
            )
    });
    // A second initialisation (only possible in-process) keeps the first.
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(spans)
        .try_init();
    Ok(())
}

async fn shutdown_signal() -> Result<(), CliError> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate()).map_err(CliError::Signal)?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.map_err(CliError::Signal),
            _ = terminate.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.map_err(CliError::Signal)
    }
}
