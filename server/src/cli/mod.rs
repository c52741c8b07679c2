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
    init_logging(&config.log_level, config.log_format)?;
    let mut server = crate::server::start(&config).await?;
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

fn init_logging(filter: &str, format: LogFormat) -> Result<(), CliError> {
    let env_filter = EnvFilter::try_new(filter).map_err(|error| CliError::LogFilter {
        filter: filter.to_owned(),
        message: error.to_string(),
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr);
    // A second initialisation (only possible in-process) keeps the first.
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
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
