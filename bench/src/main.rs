//! `tributary-bench`: drives a real Tributary server (its own process, a
//! fresh database per scenario) over loopback gRPC with workers built on
//! the Rust SDK, and reports dispatch latency, throughput, server CPU and
//! memory per scenario.
//!
//! ```text
//! cargo run --release -p tributary-bench                      # every scenario on SQLite
//! cargo run --release -p tributary-bench -- --database postgres --postgres-url postgres://...
//! cargo run --release -p tributary-bench -- --scenario chain --chain 10000 --json
//! ```

mod database;
mod report;
mod scenarios;
mod seed;
mod server_process;
mod timeline;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::database::DatabaseKind;
use crate::report::{Machine, Report};
use crate::scenarios::{Scenario, WorkerSettings};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("the Tributary SDK failed: {0}")]
    Sdk(#[from] tributary::Error),
    #[error("the server failed: {0}")]
    Server(String),
    #[error("cannot start a process or create a file: {0}")]
    Spawn(std::io::Error),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("--database postgres needs --postgres-url (or TRIBUTARY_BENCH_POSTGRES_URL)")]
    NoPostgresUrl,
}

#[derive(Debug, Parser)]
#[command(
    name = "tributary-bench",
    version,
    about = "Benchmarks a real Tributary server"
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Scenarios to run (comma-separated); default all.
    #[arg(long, value_enum, value_delimiter = ',')]
    scenario: Vec<ScenarioName>,
    /// Databases to run them on (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "sqlite")]
    database: Vec<DatabaseKind>,
    /// An admin connection to a Postgres cluster; each scenario creates
    /// (and drops) its own database in it.
    #[arg(long, env = "TRIBUTARY_BENCH_POSTGRES_URL", value_name = "URL")]
    postgres_url: Option<String>,
    /// Length of the chain scenario.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(2..))]
    chain: u32,
    /// Width of the fan-out scenario.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    fan_out: u32,
    /// Elements of the map scenario's array (instances of its mapped task).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    map: u32,
    /// Concurrent runs of the diamond scenario (4 tasks each).
    #[arg(long, default_value_t = 25_000, value_parser = clap::value_parser!(u32).range(1..))]
    diamonds: u32,
    /// Runs of the seed workflow, one after the other.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    seed_runs: u32,
    /// Workers serving the seed workflow, each its own connection
    /// (comma-separated: one seed scenario per count).
    #[arg(long, value_delimiter = ',', default_value = "1,3", value_parser = clap::value_parser!(u32).range(1..))]
    seed_workers: Vec<u32>,
    /// Each worker's value cache in bytes; 0 sends whole contexts in every
    /// Assign (the protocol before values by reference).
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    value_cache_bytes: u64,
    /// Idle executors of the executors scenario.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    idle_executors: u32,
    /// Length of the chain run while the idle executors are connected.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(2..))]
    executors_chain: u32,
    /// Attempts the benchmark's worker runs at once: the offered
    /// concurrency (one worker with this many slots stands for a fleet).
    #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u32).range(1..))]
    capacity: u32,
    /// Tiny sizes, to check that every scenario works (CI); the numbers mean
    /// nothing.
    #[arg(long)]
    smoke: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Internal: the server under test, in its own process.
    #[command(hide = true)]
    ServerChild {
        #[arg(long)]
        database_url: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ScenarioName {
    Chain,
    FanOut,
    Diamonds,
    Seed,
    Executors,
    Map,
}

impl Args {
    fn scenarios(&self) -> Vec<Scenario> {
        let names = if self.scenario.is_empty() {
            ScenarioName::value_variants().to_vec()
        } else {
            self.scenario.clone()
        };
        let size = |full: u32, smoke: usize| if self.smoke { smoke } else { full as usize };
        names
            .into_iter()
            .flat_map(|name| match name {
                ScenarioName::Chain => vec![Scenario::Chain {
                    length: size(self.chain, 20),
                }],
                ScenarioName::FanOut => vec![Scenario::FanOut {
                    width: size(self.fan_out, 20),
                }],
                ScenarioName::Diamonds => vec![Scenario::Diamonds {
                    runs: size(self.diamonds, 10),
                }],
                ScenarioName::Seed => self
                    .seed_workers
                    .iter()
                    .map(|&workers| Scenario::Seed {
                        runs: size(self.seed_runs, 1),
                        workers: workers as usize,
                    })
                    .collect(),
                ScenarioName::Executors => vec![Scenario::Executors {
                    idle: size(self.idle_executors, 5),
                    length: size(self.executors_chain, 20),
                }],
                ScenarioName::Map => vec![Scenario::Map {
                    width: size(self.map, 20),
                }],
            })
            .collect()
    }
}

fn main() -> ExitCode {
    use std::io::IsTerminal;
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match &args.command {
            Some(Command::ServerChild { database_url }) => {
                server_process::serve_child(database_url).await
            }
            None => bench(&args).await,
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn bench(args: &Args) -> Result<(), BenchError> {
    let mut results = Vec::new();
    let workers = WorkerSettings {
        capacity: args.capacity,
        value_cache_bytes: args.value_cache_bytes,
    };
    for &database in &args.database {
        for scenario in args.scenarios() {
            eprintln!("running {} on {database:?}...", scenario.label());
            results.push(
                scenario
                    .run(database, args.postgres_url.as_deref(), &workers)
                    .await?,
            );
        }
    }
    let report = Report {
        machine: Machine::describe(),
        results,
    };
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(error) => return Err(BenchError::Server(error.to_string())),
        }
    } else {
        print!("{}", report.to_table());
    }
    let failed: usize = report.results.iter().map(|result| result.failed_runs).sum();
    if failed > 0 {
        return Err(BenchError::Server(format!("{failed} runs did not succeed")));
    }
    Ok(())
}
