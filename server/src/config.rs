//! Server configuration: one struct, read from flags and `TRIBUTARY_*`
//! environment variables by clap.

use std::net::SocketAddr;
use std::time::Duration;

use crate::dag::DefinitionLimits;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Everything `tributary serve` can be told.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// Address to listen on for gRPC (and gRPC-Web).
    #[arg(long, env = "TRIBUTARY_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// `sqlite://PATH` (created if missing) or `postgres://USER:PASS@HOST/DB`.
    #[arg(
        long,
        env = "TRIBUTARY_DATABASE_URL",
        default_value = "sqlite://tributary.db"
    )]
    pub database_url: String,
    /// Log filter: a level (`info`) or a tracing directive (`tributary_server=debug`).
    #[arg(long, env = "TRIBUTARY_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Log line format.
    #[arg(
        long,
        env = "TRIBUTARY_LOG_FORMAT",
        value_enum,
        default_value = "pretty"
    )]
    pub log_format: LogFormat,
    /// Deadline of a unary call in milliseconds; streams are not cut by it.
    #[arg(long, env = "TRIBUTARY_REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    pub request_timeout_ms: u64,
    /// Calls handled at once across all connections; more wait for a slot.
    #[arg(long, env = "TRIBUTARY_CONCURRENCY_LIMIT", default_value_t = 1024)]
    pub concurrency_limit: usize,
    /// Largest number of tasks in one workflow definition.
    #[arg(long, env = "TRIBUTARY_MAX_TASKS_PER_WORKFLOW", default_value_t = DefinitionLimits::default().max_tasks)]
    pub max_tasks_per_workflow: usize,
    /// Largest encoded workflow definition in bytes.
    #[arg(long, env = "TRIBUTARY_MAX_DEFINITION_BYTES", default_value_t = DefinitionLimits::default().max_definition_bytes)]
    pub max_definition_bytes: usize,
    /// Largest context in bytes: a run's input, or an attempt's result.
    #[arg(long, env = "TRIBUTARY_MAX_CONTEXT_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_context_bytes: usize,
    /// Attempt timeout in milliseconds for tasks that set no `timeout_ms`.
    #[arg(
        long,
        env = "TRIBUTARY_DEFAULT_TASK_TIMEOUT_MS",
        default_value_t = 3_600_000
    )]
    pub default_task_timeout_ms: u64,
    /// Executor losses a task survives before it fails.
    #[arg(long, env = "TRIBUTARY_MAX_REASSIGNMENTS", default_value_t = 3)]
    pub max_reassignments: u32,
    /// How often executors send heartbeats, in milliseconds.
    #[arg(long, env = "TRIBUTARY_HEARTBEAT_INTERVAL_MS", default_value_t = 5_000)]
    pub heartbeat_interval_ms: u64,
    /// Silence after which an executor is considered gone, in milliseconds.
    #[arg(long, env = "TRIBUTARY_LEASE_TIMEOUT_MS", default_value_t = 15_000)]
    pub lease_timeout_ms: u64,
}

impl ServeConfig {
    /// The defaults, with a given listen address and database; used by tests
    /// and embedded servers.
    pub fn new(listen: SocketAddr, database_url: impl Into<String>) -> ServeConfig {
        ServeConfig {
            listen,
            database_url: database_url.into(),
            log_level: "info".to_owned(),
            log_format: LogFormat::Pretty,
            request_timeout_ms: 30_000,
            concurrency_limit: 1024,
            max_tasks_per_workflow: DefinitionLimits::default().max_tasks,
            max_definition_bytes: DefinitionLimits::default().max_definition_bytes,
            max_context_bytes: 16 * 1024 * 1024,
            default_task_timeout_ms: 3_600_000,
            max_reassignments: 3,
            heartbeat_interval_ms: 5_000,
            lease_timeout_ms: 15_000,
        }
    }

    pub fn definition_limits(&self) -> DefinitionLimits {
        DefinitionLimits {
            max_tasks: self.max_tasks_per_workflow,
            max_definition_bytes: self.max_definition_bytes,
        }
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// The largest gRPC message the server decodes or encodes: room for the
    /// largest definition or context plus the envelope, and never below
    /// gRPC's usual 4 MiB.
    pub fn max_message_bytes(&self) -> usize {
        self.max_definition_bytes
            .max(self.max_context_bytes)
            .max(4 * 1024 * 1024)
            + 64 * 1024
    }
}
