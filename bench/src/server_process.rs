//! The server under test runs in its own process (this same binary, in its
//! hidden `server-child` mode), so that its CPU time and memory are its
//! own and not the workers'. It stops when its stdin closes, which also
//! happens when this process dies.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tributary_server::config::ServeConfig;

use crate::BenchError;

/// The line the child prints once it serves.
const LISTENING: &str = "LISTENING ";

/// The child side: serve `database_url` on a free loopback port until stdin
/// closes.
pub async fn serve_child(database_url: &str) -> Result<(), BenchError> {
    let listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
    let config = ServeConfig::new(listen, database_url);
    let server = tributary_server::server::start(&config)
        .await
        .map_err(|error| BenchError::Server(error.to_string()))?;
    println!("{LISTENING}{}", server.local_addr());
    let mut stdin = tokio::io::stdin();
    let mut sink = [0u8; 64];
    while stdin.read(&mut sink).await.is_ok_and(|read| read > 0) {}
    server
        .shutdown()
        .await
        .map_err(|error| BenchError::Server(error.to_string()))
}

/// The parent side: a running server child.
pub struct ServerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    pid: u32,
    url: String,
}

impl ServerProcess {
    pub async fn start(database_url: &str) -> Result<ServerProcess, BenchError> {
        let executable = std::env::current_exe().map_err(BenchError::Spawn)?;
        let mut child = Command::new(executable)
            .args(["server-child", "--database-url", database_url])
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(BenchError::Spawn)?;
        let pid = child
            .id()
            .ok_or_else(|| BenchError::Server("the server exited at once".into()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| BenchError::Server("no stdout".into()))?;
        let mut lines = BufReader::new(stdout).lines();
        let address = loop {
            match lines.next_line().await.map_err(BenchError::Spawn)? {
                Some(line) => {
                    if let Some(address) = line.strip_prefix(LISTENING) {
                        break address.to_owned();
                    }
                }
                None => {
                    return Err(BenchError::Server(
                        "the server exited before serving (see its log above)".into(),
                    ));
                }
            }
        };
        Ok(ServerProcess {
            stdin: child.stdin.take(),
            child,
            pid,
            url: format!("http://{address}"),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// User + system CPU time the server has used so far.
    pub fn cpu_time(&self) -> Duration {
        process_cpu_time(&self.pid.to_string())
    }

    /// Resident set size now, in bytes.
    pub fn rss_bytes(&self) -> u64 {
        self.status_kib("VmRSS:") * 1024
    }

    /// The highest resident set size so far, in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        self.status_kib("VmHWM:") * 1024
    }

    fn status_kib(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|line| line.strip_prefix(field))
                    .and_then(|value| value.split_whitespace().next()?.parse().ok())
            })
            .unwrap_or(0)
    }

    /// Stops the server gracefully (closing its stdin), killing it if it
    /// takes too long.
    pub async fn stop(mut self) {
        drop(self.stdin.take());
        if tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// User + system CPU time of a process (`self` for this one) so far, from
/// `/proc/<pid>/stat`; zero if it cannot be read.
pub fn process_cpu_time(pid: &str) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may hold spaces) start at the
    // last ')'; utime and stime are the 14th and 15th fields.
    let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&index| fields.get(index)?.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = u64::try_from(per_second).unwrap_or(100).max(1);
    Duration::from_nanos(ticks * 1_000_000_000 / per_second)
}
