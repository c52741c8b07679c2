//! Server configuration: one struct, read from flags and `TRIBUTARY_*`
//! environment variables by clap.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tributary_core::DefinitionLimits;

use crate::schedules::clock::ClockOverride;
use crate::schedules::{ManualClock, ScheduleClock, WallClock};
use crate::security::SecurityConfig;

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
    /// Log filter: a level (trace, debug, info, warn, error, off), or
    /// comma-separated directives `TARGET=LEVEL` (`info,tributary_server=debug`).
    #[arg(long, env = "TRIBUTARY_LOG_LEVEL", default_value = "info", value_parser = parse_log_filter)]
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
    /// Days a finished run is kept, with its tasks, attempts, deltas,
    /// conflicts and events, before a background job deletes it; 0 keeps
    /// every run forever.
    #[arg(long, env = "TRIBUTARY_RETENTION_DAYS", default_value_t = 7)]
    pub retention_days: u32,
    /// The retention in milliseconds, overriding --retention-days (for tests
    /// that cannot wait days); 0 keeps every run.
    #[arg(long, env = "TRIBUTARY_RETENTION_MS", hide = true)]
    pub retention_ms: Option<u64>,
    /// How often the retention job looks for expired runs, in milliseconds.
    #[arg(
        long,
        env = "TRIBUTARY_RETENTION_INTERVAL_MS",
        default_value_t = 3_600_000,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub retention_interval_ms: u64,
    /// Runs the retention job deletes per transaction; small batches keep
    /// each transaction short next to the engine's writes.
    #[arg(
        long,
        env = "TRIBUTARY_RETENTION_BATCH_RUNS",
        default_value_t = 100,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub retention_batch_runs: u32,
    /// Committed events kept in memory for live watchers. A watcher that falls
    /// further behind reads on from the database, so this trades memory for
    /// fewer catch-up queries; it never slows the engine.
    #[arg(
        long,
        env = "TRIBUTARY_EVENT_BUFFER",
        default_value_t = 4096,
        value_parser = clap::value_parser!(u32).range(1..=1_048_576)
    )]
    pub event_buffer: u32,
    /// Largest accumulated context of a run in bytes: its input plus every
    /// succeeded task's writes. A result that would take it over fails its
    /// task (no retry) with the size and the limit, so every task's input
    /// and the final context stay within the message limit.
    #[arg(long, env = "TRIBUTARY_MAX_RUN_CONTEXT_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_run_context_bytes: usize,
    /// Most handlers one executor's `Register` may list.
    #[arg(
        long,
        env = "TRIBUTARY_MAX_REGISTER_HANDLERS",
        default_value_t = 100_000
    )]
    pub max_register_handlers: usize,
    /// Largest encoded `Register` in bytes (handlers, labels, held attempt
    /// ids and names together): what one executor's registration may cost
    /// in memory while it is connected.
    #[arg(long, env = "TRIBUTARY_MAX_REGISTER_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_register_bytes: usize,
    /// How long an executor stream may stay open without its `Register`, in
    /// milliseconds; then it is closed.
    #[arg(long, env = "TRIBUTARY_REGISTER_TIMEOUT_MS", default_value_t = 10_000)]
    pub register_timeout_ms: u64,
    /// Runs one namespace may have active (pending or running) at once;
    /// `StartRun` beyond it is refused with RESOURCE_EXHAUSTED.
    #[arg(
        long,
        env = "TRIBUTARY_MAX_ACTIVE_RUNS_PER_NAMESPACE",
        default_value_t = 10_000
    )]
    pub max_active_runs_per_namespace: usize,
    /// Executors one namespace may have connected at once; a `Register`
    /// beyond it ends its stream with RESOURCE_EXHAUSTED.
    #[arg(
        long,
        env = "TRIBUTARY_MAX_EXECUTORS_PER_NAMESPACE",
        default_value_t = 1_000
    )]
    pub max_executors_per_namespace: usize,
    /// How long a shutdown waits for open calls to finish, in milliseconds.
    /// Watch streams end at once, but one whose client stopped reading
    /// cannot finish until it reads; after this, its connection is left to
    /// close with the process.
    #[arg(long, env = "TRIBUTARY_SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
    pub shutdown_grace_ms: u64,
    /// An origin (`https://console.example.com`, or `*` for any) whose
    /// scripts may call the API from a browser: CORS preflights are
    /// answered and the gRPC status headers exposed. Repeatable; the
    /// environment variable takes a comma-separated list. None by default:
    /// the dashboard served at `/` needs none.
    #[arg(
        long = "cors-allow-origin",
        env = "TRIBUTARY_CORS_ALLOW_ORIGIN",
        value_delimiter = ','
    )]
    pub cors_allow_origins: Vec<String>,
    /// API keys, TLS and `--insecure`.
    #[command(flatten)]
    pub security: SecurityConfig,
    /// Also serve Prometheus `/metrics` on this address (it is always served
    /// on --listen too), e.g. to keep it off a public port.
    #[arg(long, env = "TRIBUTARY_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Export OpenTelemetry traces over OTLP/gRPC to this collector URL
    /// (`http://HOST:4317`); unset exports nothing and builds no exporter.
    #[arg(long, env = "TRIBUTARY_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// For tests only: the scheduler's clock stands still at this time
    /// (milliseconds since the Unix epoch) instead of following the wall
    /// clock, so a test that runs the server as a process decides which
    /// fire times have come.
    #[arg(long, env = "TRIBUTARY_TEST_SCHEDULE_CLOCK_MS", hide = true)]
    pub test_schedule_clock_ms: Option<i64>,
    /// For tests that run the server in-process: the scheduler's clock.
    #[arg(skip)]
    pub schedule_clock: Option<ClockOverride>,
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
            retention_days: 7,
            retention_ms: None,
            retention_interval_ms: 3_600_000,
            retention_batch_runs: 100,
            event_buffer: 4096,
            shutdown_grace_ms: 10_000,
            cors_allow_origins: Vec::new(),
            security: SecurityConfig::default(),
            metrics_listen: None,
            otlp_endpoint: None,
            test_schedule_clock_ms: None,
            schedule_clock: None,
            max_run_context_bytes: 16 * 1024 * 1024,
            max_register_handlers: 100_000,
            max_register_bytes: 4 * 1024 * 1024,
            register_timeout_ms: 10_000,
            max_active_runs_per_namespace: 10_000,
            max_executors_per_namespace: 1_000,
        }
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    /// How long finished runs are kept; `None` keeps them forever.
    pub fn retention(&self) -> Option<Duration> {
        const DAY_MS: u64 = 24 * 60 * 60 * 1000;
        let retention_ms = self
            .retention_ms
            .unwrap_or_else(|| u64::from(self.retention_days).saturating_mul(DAY_MS));
        (retention_ms > 0).then(|| Duration::from_millis(retention_ms))
    }

    /// At least 1 ms: a timer cannot tick every 0 ms (the command line
    /// refuses 0 already).
    pub fn retention_interval(&self) -> Duration {
        Duration::from_millis(self.retention_interval_ms.max(1))
    }

    /// The scheduler's clock: the one a test gave, else the wall clock.
    pub fn schedule_clock(&self) -> Arc<dyn ScheduleClock> {
        match (&self.schedule_clock, self.test_schedule_clock_ms) {
            (Some(clock), _) => clock.0.clone(),
            (None, Some(frozen_ms)) => Arc::new(ManualClock::new(frozen_ms)),
            (None, None) => Arc::new(WallClock),
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
    /// largest definition, result or accumulated run context plus the
    /// envelope, and never below gRPC's usual 4 MiB.
    pub fn max_message_bytes(&self) -> usize {
        self.max_definition_bytes
            .max(self.max_context_bytes)
            .max(self.max_run_context_bytes)
            .max(4 * 1024 * 1024)
            + 64 * 1024
    }
}

/// The levels a log filter may name.
const LOG_LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Checks a `--log-level`: each comma-separated directive is a level or
/// `TARGET=LEVEL`. A bare word that is not a level would be read by tracing
/// as a target enabling everything of that target and nothing else, so a
/// typo (`loud`) would turn logging off without a word; it is refused.
pub fn parse_log_filter(filter: &str) -> Result<String, String> {
    let is_level = |text: &str| LOG_LEVELS.contains(&text.trim().to_ascii_lowercase().as_str());
    let levels = LOG_LEVELS.join(", ");
    for directive in filter.split(',').map(str::trim) {
        let shown: String = directive.chars().take(60).collect();
        match directive.rsplit_once('=') {
            _ if directive.is_empty() => {
                return Err("an empty directive: write a level or TARGET=LEVEL".to_owned());
            }
            None if !is_level(directive) => {
                return Err(format!(
                    "{shown:?} is not a level ({levels}); a target needs one: {shown}=debug"
                ));
            }
            Some((target, level)) if target.trim().is_empty() || !is_level(level) => {
                return Err(format!(
                    "{shown:?} is not TARGET=LEVEL with LEVEL one of {levels}"
                ));
            }
            _ => {}
        }
    }
    tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|error| error.to_string())
        .map(|_| filter.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_filters_are_levels_or_target_directives() {
        for good in [
            "info",
            "DEBUG",
            "warn,tributary_server=debug",
            "tower_http=off",
        ] {
            assert_eq!(parse_log_filter(good).as_deref(), Ok(good));
        }
        let loud = parse_log_filter("loud").expect_err("not a level");
        assert!(loud.contains("\"loud\" is not a level"), "{loud}");
        assert!(parse_log_filter("tributary_server=loud").is_err());
        assert!(parse_log_filter("info,").is_err());
        assert!(parse_log_filter("=debug").is_err());
    }

    fn config() -> ServeConfig {
        ServeConfig::new("127.0.0.1:0".parse().expect("address"), "sqlite://x.db")
    }

    #[test]
    fn retention_is_days_unless_milliseconds_are_given_and_zero_keeps_everything() {
        let mut config = config();
        assert_eq!(
            config.retention(),
            Some(Duration::from_secs(7 * 24 * 60 * 60))
        );
        config.retention_days = 0;
        assert_eq!(config.retention(), None);
        config.retention_ms = Some(250);
        assert_eq!(config.retention(), Some(Duration::from_millis(250)));
        config.retention_ms = Some(0);
        assert_eq!(config.retention(), None);
    }

    #[test]
    fn the_defaults_of_new_match_the_command_line_defaults() {
        use clap::Parser;
        #[derive(Parser)]
        struct Command {
            #[command(flatten)]
            serve: ServeConfig,
        }
        let parsed = Command::try_parse_from(["tributary"]).expect("parses");
        let new = config();
        assert_eq!(parsed.serve.retention_days, new.retention_days);
        assert_eq!(parsed.serve.retention_ms, new.retention_ms);
        assert_eq!(
            parsed.serve.retention_interval_ms,
            new.retention_interval_ms
        );
        assert_eq!(parsed.serve.retention_batch_runs, new.retention_batch_runs);
        assert_eq!(parsed.serve.event_buffer, new.event_buffer);
        assert_eq!(parsed.serve.shutdown_grace_ms, new.shutdown_grace_ms);
        assert_eq!(
            parsed.serve.max_register_handlers,
            new.max_register_handlers
        );
        assert_eq!(
            parsed.serve.max_run_context_bytes,
            new.max_run_context_bytes
        );
        assert_eq!(parsed.serve.max_register_bytes, new.max_register_bytes);
        assert_eq!(parsed.serve.register_timeout_ms, new.register_timeout_ms);
        assert_eq!(
            parsed.serve.max_active_runs_per_namespace,
            new.max_active_runs_per_namespace
        );
        assert_eq!(
            parsed.serve.max_executors_per_namespace,
            new.max_executors_per_namespace
        );
    }
}
