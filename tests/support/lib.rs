//! Helpers shared by the end-to-end tests: a fresh database per test (SQLite
//! by default, Postgres when `TRIBUTARY_TEST_DATABASE_URL` names an admin
//! connection), a real server on a loopback port, and namespaced clients.

pub mod executor;
pub mod outage;
pub mod ports;
pub mod probe;
pub mod process;
pub mod resilient;
pub mod scrape;
pub mod scripted;
pub mod security;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use sqlx::Connection;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tributary_proto::v1 as pb;
use tributary_proto::v1::run_service_client::RunServiceClient;
use tributary_proto::v1::workflow_service_client::WorkflowServiceClient;
use tributary_server::config::ServeConfig;
use tributary_server::server::RunningServer;

/// The receive window of [`TestServer::narrow_channel`]: one maximum-size
/// HTTP/2 frame (the default is four times that).
const NARROW_WINDOW: u32 = 16 * 1024;

/// The environment variable that switches the suite to Postgres.
pub const DATABASE_URL_VARIABLE: &str = "TRIBUTARY_TEST_DATABASE_URL";

/// A database that exists for one test only.
pub struct TestDatabase {
    url: String,
    // Keeps the SQLite file's directory alive until the test ends.
    _directory: Option<tempfile::TempDir>,
}

impl TestDatabase {
    /// A new empty database: a SQLite file in a temporary directory, or a new
    /// database on the Postgres server named by the environment.
    pub async fn fresh() -> TestDatabase {
        match std::env::var(DATABASE_URL_VARIABLE) {
            Ok(admin_url) if !admin_url.is_empty() => {
                let name = format!("tributary_test_{}", uuid::Uuid::now_v7().simple());
                let mut admin = sqlx::PgConnection::connect(&admin_url)
                    .await
                    .unwrap_or_else(|error| panic!("cannot connect to {admin_url}: {error}"));
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut admin)
                    .await
                    .unwrap_or_else(|error| panic!("cannot create database {name}: {error}"));
                let _ = admin.close().await;
                let base = admin_url
                    .rsplit_once('/')
                    .map(|(base, _)| base)
                    .unwrap_or(&admin_url);
                TestDatabase {
                    url: format!("{base}/{name}"),
                    _directory: None,
                }
            }
            _ => {
                let directory = tempfile::tempdir().expect("temporary directory");
                let url = format!(
                    "sqlite://{}",
                    directory.path().join("tributary.db").display()
                );
                TestDatabase {
                    url,
                    _directory: Some(directory),
                }
            }
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn is_postgres(&self) -> bool {
        self.url.starts_with("postgres")
    }
}

/// A real server on a loopback port, with its own database.
pub struct TestServer {
    server: Option<RunningServer>,
    pub config: ServeConfig,
    pub database: TestDatabase,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    /// Starts a server after `adjust` has changed the default configuration.
    pub async fn start_with(adjust: impl FnOnce(&mut ServeConfig)) -> TestServer {
        TestServer::start_on(TestDatabase::fresh().await, adjust).await
    }

    /// Starts a server on an existing database, e.g. the one a stopped
    /// server returned, to test what survives a restart.
    pub async fn start_on(
        database: TestDatabase,
        adjust: impl FnOnce(&mut ServeConfig),
    ) -> TestServer {
        init_test_logging();
        let loopback: SocketAddr = "127.0.0.1:0".parse().expect("address");
        let mut config = ServeConfig::new(loopback, database.url());
        adjust(&mut config);
        let server = tributary_server::server::start(&config)
            .await
            .expect("server starts");
        TestServer {
            server: Some(server),
            config,
            database,
        }
    }

    pub fn url(&self) -> String {
        self.server.as_ref().expect("server is running").url()
    }

    /// The address of the server's gRPC listener.
    pub fn local_addr(&self) -> SocketAddr {
        self.server
            .as_ref()
            .expect("server is running")
            .local_addr()
    }

    /// The address of the separate `/metrics` listener, if configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.server
            .as_ref()
            .expect("server is running")
            .metrics_addr()
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .expect("valid URL")
            .connect()
            .await
            .expect("connects")
    }

    /// A connection with small HTTP/2 receive windows: the server may send
    /// only that much that the client has not read, so a stream the test
    /// does not read backs up into the server after a few dozen events
    /// instead of filling the client's buffers.
    pub async fn narrow_channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .expect("valid URL")
            .initial_stream_window_size(Some(NARROW_WINDOW))
            .initial_connection_window_size(Some(NARROW_WINDOW))
            .connect()
            .await
            .expect("connects")
    }

    pub async fn workflow_client(
        &self,
        namespace: &str,
    ) -> WorkflowServiceClient<InterceptedService<Channel, Namespace>> {
        WorkflowServiceClient::with_interceptor(self.channel().await, Namespace::new(namespace))
    }

    pub async fn run_client(
        &self,
        namespace: &str,
    ) -> RunServiceClient<InterceptedService<Channel, Namespace>> {
        // Answers may be as large as the server's message limit, beyond
        // gRPC's usual 4 MiB.
        RunServiceClient::with_interceptor(self.channel().await, Namespace::new(namespace))
            .max_decoding_message_size(usize::MAX)
    }

    /// Registers a definition given in the definition-file JSON format.
    pub async fn register(&self, namespace: &str, definition: serde_json::Value) -> pb::Workflow {
        let input: tributary_core::WorkflowDefinition =
            serde_json::from_value(definition).expect("definition format");
        self.workflow_client(namespace)
            .await
            .register_workflow(pb::RegisterWorkflowRequest {
                definition: Some(pb::WorkflowDefinition::from(&input)),
            })
            .await
            .expect("registers")
            .into_inner()
            .workflow
            .expect("workflow")
    }

    /// Starts a run and returns its id.
    pub async fn start_run(
        &self,
        namespace: &str,
        workflow: &str,
        input: serde_json::Value,
    ) -> String {
        self.run_client(namespace)
            .await
            .start_run(pb::StartRunRequest {
                workflow_name: workflow.to_owned(),
                input_context_json: input.to_string(),
                ..pb::StartRunRequest::default()
            })
            .await
            .expect("starts")
            .into_inner()
            .run_id
    }

    pub async fn get_run(&self, namespace: &str, run_id: &str) -> pb::Run {
        self.run_client(namespace)
            .await
            .get_run(pb::GetRunRequest {
                run_id: run_id.to_owned(),
                omit_contexts: false,
                ..Default::default()
            })
            .await
            .expect("run exists")
            .into_inner()
            .run
            .expect("run")
    }

    /// Polls `GetRun` until the run is terminal. Panics after `limit` so a
    /// broken engine fails the test instead of hanging it; the limit is a
    /// safety net, never an assertion about speed.
    pub async fn wait_for_run(&self, namespace: &str, run_id: &str, limit: Duration) -> pb::Run {
        self.wait_until(namespace, run_id, limit, |run| {
            matches!(
                run.status(),
                pb::RunStatus::Succeeded | pb::RunStatus::Failed | pb::RunStatus::Cancelled
            )
        })
        .await
    }

    /// Polls `GetRun` until `condition` holds (see [`Self::wait_for_run`]).
    pub async fn wait_until(
        &self,
        namespace: &str,
        run_id: &str,
        limit: Duration,
        condition: impl Fn(&pb::Run) -> bool,
    ) -> pb::Run {
        let mut client = self.run_client(namespace).await;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let run = client
                .get_run(pb::GetRunRequest {
                    run_id: run_id.to_owned(),
                    omit_contexts: false,
                    ..Default::default()
                })
                .await
                .expect("run exists")
                .into_inner()
                .run
                .expect("run");
            if condition(&run) {
                return run;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "run {run_id} did not reach the expected state: {run:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the server gracefully and returns its database for inspection
    /// or a restart.
    pub async fn stop(mut self) -> TestDatabase {
        if let Some(server) = self.server.take() {
            server.shutdown().await.expect("clean shutdown");
        }
        self.database
    }
}

/// Sends `x-tributary-namespace` with every call.
#[derive(Clone)]
pub struct Namespace(AsciiMetadataValue);

impl Namespace {
    pub fn new(namespace: &str) -> Namespace {
        Namespace(AsciiMetadataValue::try_from(namespace).expect("ASCII namespace"))
    }
}

impl Interceptor for Namespace {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert(tributary_proto::NAMESPACE_METADATA_KEY, self.0.clone());
        Ok(request)
    }
}

/// The repository's `tests/vectors/` directory.
pub fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors")
}

/// A case of `tests/vectors/validation.json`.
#[derive(Debug, Deserialize)]
pub struct ValidationCase {
    pub name: String,
    pub definition: serde_json::Value,
    /// `None` for definitions that must be accepted.
    pub error: Option<ExpectedError>,
}

#[derive(Debug, Deserialize)]
pub struct ExpectedError {
    /// A gRPC code name, e.g. `INVALID_ARGUMENT`.
    pub code: String,
    pub message: String,
}

#[derive(Debug, Deserialize)]
struct ValidationVectors {
    cases: Vec<ValidationCase>,
}

pub fn validation_vectors() -> Vec<ValidationCase> {
    let path = vectors_dir().join("validation.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    let vectors: ValidationVectors =
        serde_json::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    vectors.cases
}

/// The task of a run by id.
pub fn task<'a>(run: &'a pb::Run, task_id: &str) -> &'a pb::TaskRun {
    run.tasks
        .iter()
        .find(|task| task.task_id == task_id)
        .unwrap_or_else(|| panic!("no task {task_id} in {run:#?}"))
}

/// The run's context as JSON.
pub fn context(run: &pb::Run) -> serde_json::Value {
    serde_json::from_str(&run.context_json).expect("context is JSON")
}

/// Server logs in tests go to the test's captured output, filtered by
/// `RUST_LOG` (default: warnings and errors only).
fn init_test_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
