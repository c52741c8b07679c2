//! Child processes in process groups of their own, so that a signal reaches
//! the whole group (`sh -c` and the worker under it), and the `tributary`
//! server process, started, killed and restarted on the same database file
//! and port.

use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use tokio::time::Instant;

/// How often a waiting loop looks again.
pub const POLL: Duration = Duration::from_millis(25);

/// A child process leading its own process group; killed with its group
/// when dropped.
pub struct Group {
    child: Child,
    status: Option<ExitStatus>,
}

impl Group {
    /// Starts `command` as the leader of a new process group, with stdout
    /// and stderr appended to `output`.
    pub fn spawn(mut command: Command, output: &Path) -> Result<Group, String> {
        let file = File::options()
            .create(true)
            .append(true)
            .open(output)
            .map_err(|error| format!("cannot open {}: {error}", output.display()))?;
        let stderr = file
            .try_clone()
            .map_err(|error| format!("cannot open {}: {error}", output.display()))?;
        let child = command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(stderr)
            .spawn()
            .map_err(|error| format!("cannot start {command:?}: {error}"))?;
        Ok(Group {
            child,
            status: None,
        })
    }

    /// Sends `signal` to every process of the group.
    pub fn signal(&self, signal: libc::c_int) -> Result<(), String> {
        let group = libc::pid_t::try_from(self.child.id())
            .map_err(|_| "process id out of range".to_owned())?;
        // SAFETY: killpg only sends a signal; the group is our own child's.
        if unsafe { libc::killpg(group, signal) } == 0 {
            Ok(())
        } else {
            Err(format!(
                "cannot signal process group {group}: {}",
                std::io::Error::last_os_error()
            ))
        }
    }

    /// Sends `signal` to one process of the group: `pid` (e.g. the worker
    /// under `sh -c`, as its log names it), after checking that it is in the
    /// group, so that a wrong pid never reaches another process.
    pub fn signal_member(&self, pid: u32, signal: libc::c_int) -> Result<(), String> {
        let target = libc::pid_t::try_from(pid).map_err(|_| format!("bad pid {pid}"))?;
        // SAFETY: getpgid only reads the process table.
        let group = unsafe { libc::getpgid(target) };
        if u32::try_from(group).ok() != Some(self.child.id()) {
            return Err(format!(
                "process {pid} (the pid in the worker's log) is not in the worker's process group {}",
                self.child.id()
            ));
        }
        // SAFETY: kill only sends a signal, to a process of our own group.
        if unsafe { libc::kill(target, signal) } == 0 {
            Ok(())
        } else {
            Err(format!(
                "cannot signal process {pid}: {}",
                std::io::Error::last_os_error()
            ))
        }
    }

    /// The leader's exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits up to `timeout` for the leader to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// SIGKILLs the group and reaps the leader.
    pub async fn kill(&mut self) {
        if self.exited().is_some() {
            // The leader is gone; what it left behind in the group goes too.
            let _ = self.signal(libc::SIGKILL);
            return;
        }
        let _ = self.signal(libc::SIGKILL);
        let _ = self.wait_exit(Duration::from_secs(10)).await;
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let _ = self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }
}

/// How an exit status reads in a failure message.
pub fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => format!("{status}"),
    }
}

/// The last `lines` lines of a file that satisfy `keep`, for failure
/// reports.
pub fn tail(path: &Path, lines: usize, keep: impl Fn(&str) -> bool) -> Vec<String> {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().filter(|line| keep(line)).collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|line| crate::json::brief(line, 300))
        .collect()
}

/// The server's timing settings.
#[derive(Debug, Clone, Copy)]
pub struct ServerOptions {
    /// `--heartbeat-interval-ms`.
    pub heartbeat_interval_ms: u64,
    /// `--lease-timeout-ms`.
    pub lease_timeout_ms: u64,
}

impl Default for ServerOptions {
    fn default() -> ServerOptions {
        ServerOptions {
            heartbeat_interval_ms: 200,
            lease_timeout_ms: 1000,
        }
    }
}

/// A `tributary serve` process on a loopback port and a SQLite file.
pub struct Server {
    binary: PathBuf,
    database: PathBuf,
    log: PathBuf,
    port: u16,
    options: ServerOptions,
    process: Option<Group>,
}

impl Server {
    /// Starts a server with a fresh database in `directory` and waits until
    /// it answers.
    pub async fn start(
        binary: &Path,
        directory: &Path,
        options: ServerOptions,
    ) -> Result<Server, String> {
        let port = free_port()?;
        let mut server = Server {
            binary: binary.to_owned(),
            database: directory.join("tributary.db"),
            log: directory.join("server.log"),
            port,
            options,
            process: None,
        };
        server.launch().await?;
        Ok(server)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's timing settings.
    pub fn options(&self) -> ServerOptions {
        self.options
    }

    /// The file the server's output goes to.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// SIGKILLs the server, as a crash would.
    pub async fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill().await;
        }
    }

    /// Starts the server again on the same database file and port.
    pub async fn restart(&mut self) -> Result<(), String> {
        self.kill().await;
        self.launch().await
    }

    async fn launch(&mut self) -> Result<(), String> {
        // A port just released can take a moment to be free again; a server
        // that exits at once is retried for a while.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut command = Command::new(&self.binary);
            command
                .arg("serve")
                .arg("--listen")
                .arg(format!("127.0.0.1:{}", self.port))
                .arg("--database-url")
                .arg(format!("sqlite://{}", self.database.display()))
                .arg("--heartbeat-interval-ms")
                .arg(self.options.heartbeat_interval_ms.to_string())
                .arg("--lease-timeout-ms")
                .arg(self.options.lease_timeout_ms.to_string())
                .arg("--log-format")
                .arg("json")
                .arg("--shutdown-grace-ms")
                .arg("1000");
            let mut process = Group::spawn(command, &self.log)?;
            match wait_ready(&mut process, &self.url(), deadline).await {
                Ok(()) => {
                    self.process = Some(process);
                    return Ok(());
                }
                Err(Some(_)) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(status) => {
                    process.kill().await;
                    let how = status.map_or("did not answer within 30 s".to_owned(), |status| {
                        format!("exited with {}", describe_status(status))
                    });
                    return Err(format!(
                        "the server {how}; its log ends with: {}",
                        tail(&self.log, 5, |_| true).join(" | ")
                    ));
                }
            }
        }
    }
}

/// Waits until the server accepts a call, or returns its exit status if it
/// exited (`None` at the deadline).
async fn wait_ready(
    process: &mut Group,
    url: &str,
    deadline: Instant,
) -> Result<(), Option<ExitStatus>> {
    loop {
        if let Some(status) = process.exited() {
            return Err(Some(status));
        }
        if answers(url).await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(None);
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn answers(url: &str) -> bool {
    use tributary_proto::v1::executor_service_client::ExecutorServiceClient;
    let Ok(endpoint) = tonic::transport::Endpoint::from_shared(url.to_owned()) else {
        return false;
    };
    let Ok(channel) = endpoint
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(2))
        .connect()
        .await
    else {
        return false;
    };
    ExecutorServiceClient::new(channel)
        .list_executors(tributary_proto::v1::ListExecutorsRequest {})
        .await
        .is_ok()
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|error| format!("cannot find a free loopback port: {error}"))?;
    listener
        .local_addr()
        .map(|address| address.port())
        .map_err(|error| format!("cannot find a free loopback port: {error}"))
}
