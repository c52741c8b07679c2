//! A real Tributary server started in-process on a loopback port, over a
//! fresh database (SQLite, or Postgres when `TRIBUTARY_TEST_DATABASE_URL`
//! names an admin connection, as `scripts/test.sh` sets it), for the SDK's
//! end-to-end tests.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use tributary_server::config::ServeConfig;
use tributary_server::server::RunningServer;

/// A safety net for waits: a broken build fails instead of hanging. Never an
/// assertion about speed.
pub const LIMIT: Duration = Duration::from_secs(60);

pub struct TestServer {
    server: Option<RunningServer>,
    pub config: ServeConfig,
    _database: tributary_e2e::TestDatabase,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut ServeConfig)) -> TestServer {
        init_logging();
        let database = tributary_e2e::TestDatabase::fresh().await;
        let listen: SocketAddr = "127.0.0.1:0".parse().expect("address");
        let mut config = ServeConfig::new(listen, database.url());
        adjust(&mut config);
        let server = tributary_server::server::start(&config)
            .await
            .expect("server starts");
        // Later restarts reuse the port the first start was given.
        config.listen = server.local_addr();
        TestServer {
            server: Some(server),
            config,
            _database: database,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.config.listen)
    }

    /// Stops the server gracefully (its executor streams close).
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.expect("clean shutdown");
        }
    }

    /// Starts a new server on the same port and database.
    pub async fn start_again(&mut self) {
        assert!(self.server.is_none(), "stop the server first");
        let mut attempts = 0;
        loop {
            match tributary_server::server::start(&self.config).await {
                Ok(server) => {
                    self.server = Some(server);
                    return;
                }
                // The port can take a moment to be released by the old
                // listener's task.
                Err(error) if attempts < 100 => {
                    attempts += 1;
                    let _ = error;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("server does not restart: {error}"),
            }
        }
    }
}

/// Awaits `future`, failing the test if it has not completed within
/// [`LIMIT`] (a safety net against hangs).
pub async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(LIMIT, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what} did not happen within {LIMIT:?}"),
    }
}

/// Server and SDK logs go to the test's captured output, filtered by
/// `RUST_LOG` (default: warnings and errors).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
