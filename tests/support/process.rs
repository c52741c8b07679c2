//! The `tributary serve` command line as a child process, for what only a
//! process shows: its log output, its trace exporter, its graceful exit.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use tonic::transport::{Channel, Endpoint};

use crate::TestDatabase;

const LIMIT: Duration = Duration::from_secs(60);

/// A server process on a loopback port.
pub struct ServeProcess {
    pub child: Child,
    pub url: String,
    pub channel: Channel,
}

impl ServeProcess {
    /// Runs `program serve` (the test crate's `test_server`, whose path only
    /// the tests know) on a free port over `database` with the
    /// extra `arguments` and `environment`, its stderr going to `stderr`,
    /// and waits until it reports SERVING.
    pub async fn start(
        program: &str,
        database: &TestDatabase,
        arguments: &[&str],
        environment: &[(&str, &str)],
        stderr: Stdio,
    ) -> ServeProcess {
        let port = crate::ports::reserved_port();
        let listen = format!("127.0.0.1:{port}");
        let child = Command::new(program)
            .args([
                "serve",
                "--listen",
                &listen,
                "--database-url",
                database.url(),
            ])
            .args(arguments)
            .envs(environment.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("server starts");
        let url = format!("http://{listen}");
        let channel = serving_channel(&url).await;
        ServeProcess {
            child,
            url,
            channel,
        }
    }

    /// SIGTERM, then waits for a successful exit.
    pub async fn stop_gracefully(mut self) {
        let pid = self.child.id().expect("running").to_string();
        let killed = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .expect("kill runs");
        assert!(killed.success());
        let exited = tokio::time::timeout(LIMIT, self.child.wait())
            .await
            .expect("the server stops")
            .expect("exit status");
        assert!(exited.success(), "{exited:?}");
    }
}

async fn serving_channel(url: &str) -> Channel {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let endpoint = Endpoint::from_shared(url.to_owned()).expect("valid URL");
        if let Ok(channel) = endpoint.connect().await {
            let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
            if let Ok(response) = health
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await
                && response.into_inner().status
                    == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
            {
                return channel;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "server did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
