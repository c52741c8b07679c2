//! Helpers shared by the end-to-end tests: a fresh database per test (SQLite
//! by default, Postgres when `TRIBUTARY_TEST_DATABASE_URL` names an admin
//! connection), a real server on a loopback port, and namespaced clients.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use sqlx::Connection;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tributary_proto::v1::workflow_service_client::WorkflowServiceClient;
use tributary_server::config::ServeConfig;
use tributary_server::server::RunningServer;

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
        let database = TestDatabase::fresh().await;
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

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .expect("valid URL")
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
