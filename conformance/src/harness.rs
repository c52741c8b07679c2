//! One scenario's world: a temporary directory, a server, the worker
//! processes, and the calls the scenarios make (register, start, wait,
//! cancel, read the log).

use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::time::Duration;

use tempfile::TempDir;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tributary_proto::v1 as pb;
use tributary_proto::v1::run_service_client::RunServiceClient;

use crate::executors::{self, ExecutorInfo};
use crate::log::{self, LogEvent};
use crate::process::{self, Group, POLL, Server, ServerOptions};

/// The namespace every scenario works in (not `default`, so that a worker
/// that ignores `TRIBUTARY_NAMESPACE` is caught at once).
pub const NAMESPACE: &str = "conformance";

/// How long a worker may take to start and register.
const WORKER_START: Duration = Duration::from_secs(60);

/// How long a run may take before the runner gives up on it; a safety net,
/// not a speed requirement.
pub const RUN_DEADLINE: Duration = Duration::from_secs(60);

/// What every scenario shares: the worker command and the server binary.
#[derive(Debug, Clone)]
pub struct Suite {
    /// The command that starts a conformance worker, run with `sh -c`.
    pub worker_cmd: String,
    /// The `tributary` binary.
    pub server_bin: PathBuf,
}

/// A worker process the harness started.
pub struct WorkerProcess {
    /// `CONFORMANCE_WORKER_NAME`.
    pub name: String,
    group: Group,
    output: PathBuf,
}

/// One scenario's server, workers and files.
pub struct Harness {
    suite: Suite,
    directory: TempDir,
    /// The server.
    pub server: Server,
    workers: Vec<WorkerProcess>,
    channel: Channel,
    client: tributary::Client,
}

impl Harness {
    /// Starts a server for a scenario.
    pub async fn start(suite: &Suite, options: ServerOptions) -> Result<Harness, String> {
        let directory = tempfile::Builder::new()
            .prefix("tributary-conformance-")
            .tempdir()
            .map_err(|error| format!("cannot make a temporary directory: {error}"))?;
        let server = Server::start(&suite.server_bin, directory.path(), options).await?;
        let channel = Endpoint::from_shared(server.url())
            .map_err(|error| error.to_string())?
            .connect_timeout(Duration::from_secs(2))
            .connect_lazy();
        let client = tributary::Client::from_channel(channel.clone(), NAMESPACE)
            .map_err(|e| e.to_string())?;
        Ok(Harness {
            suite: suite.clone(),
            directory,
            server,
            workers: Vec::new(),
            channel,
            client,
        })
    }

    /// The worker log's path (`CONFORMANCE_LOG`).
    pub fn log_path(&self) -> PathBuf {
        self.directory.path().join("worker-log.jsonl")
    }

    /// Starts a worker and waits until it has registered; returns its index.
    pub async fn spawn_worker(
        &mut self,
        name: &str,
        capacity: u32,
        value_cache_bytes: u64,
    ) -> Result<usize, String> {
        self.spawn_labeled_worker(name, capacity, value_cache_bytes, "")
            .await
    }

    /// Starts a worker registering `labels` (`CONFORMANCE_LABELS`, as
    /// `key=value,key=value`) and waits until it has registered.
    pub async fn spawn_labeled_worker(
        &mut self,
        name: &str,
        capacity: u32,
        value_cache_bytes: u64,
        labels: &str,
    ) -> Result<usize, String> {
        let output = self.directory.path().join(format!("{name}.stderr"));
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(&self.suite.worker_cmd)
            .env("TRIBUTARY_SERVER", self.server.url())
            .env("TRIBUTARY_NAMESPACE", NAMESPACE)
            .env("CONFORMANCE_CAPACITY", capacity.to_string())
            .env(
                "CONFORMANCE_VALUE_CACHE_BYTES",
                value_cache_bytes.to_string(),
            )
            .env("CONFORMANCE_LOG", self.log_path())
            .env("CONFORMANCE_WORKER_NAME", name)
            .env("CONFORMANCE_LABELS", labels);
        let group = Group::spawn(command, &output)?;
        self.workers.push(WorkerProcess {
            name: name.to_owned(),
            group,
            output,
        });
        let index = self.workers.len() - 1;
        self.wait_registered(index).await?;
        Ok(index)
    }

    async fn wait_registered(&mut self, index: usize) -> Result<(), String> {
        let deadline = Instant::now() + WORKER_START;
        loop {
            let name = self.workers[index].name.clone();
            if let Some(status) = self.workers[index].group.exited() {
                return Err(format!(
                    "worker {name} exited with {} before registering",
                    process::describe_status(status)
                ));
            }
            if let Ok(executors) = self.executors().await
                && executors.iter().any(|executor| executor.name == name)
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "worker {name} did not register as {name:?} in namespace {NAMESPACE:?} within {} s",
                    WORKER_START.as_secs()
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Sends `signal` to worker `index`'s process group.
    pub fn signal_worker(&self, index: usize, signal: libc::c_int) -> Result<(), String> {
        self.workers[index].group.signal(signal)
    }

    /// Sends `signal` to the process `pid` of worker `index`'s group.
    pub fn signal_worker_process(
        &self,
        index: usize,
        pid: u32,
        signal: libc::c_int,
    ) -> Result<(), String> {
        self.workers[index].group.signal_member(pid, signal)
    }

    /// Waits for worker `index`'s `sh` to exit.
    pub async fn wait_worker_exit(
        &mut self,
        index: usize,
        timeout: Duration,
    ) -> Option<ExitStatus> {
        self.workers[index].group.wait_exit(timeout).await
    }

    /// SIGKILLs worker `index` and everything in its group.
    pub async fn kill_worker(&mut self, index: usize) {
        self.workers[index].group.kill().await;
    }

    /// Registers a workflow given in the definition-file JSON format.
    pub async fn register(&self, definition: serde_json::Value) -> Result<(), String> {
        let definition: tributary::WorkflowDefinition = serde_json::from_value(definition)
            .map_err(|error| format!("bad definition in the runner: {error}"))?;
        self.client
            .register_definition(&definition)
            .await
            .map(|_| ())
            .map_err(|error| format!("RegisterWorkflow {}: {error}", definition.name))
    }

    fn runs(&self) -> RunServiceClient<Channel> {
        RunServiceClient::new(self.channel.clone()).max_decoding_message_size(usize::MAX)
    }

    /// Starts a run with `input` (JSON text, passed on unparsed so exact
    /// numbers survive); returns its id.
    pub async fn start_run(&self, workflow: &str, input: &str) -> Result<String, String> {
        let request = namespaced(pb::StartRunRequest {
            workflow_name: workflow.to_owned(),
            input_context_json: input.to_owned(),
            ..pb::StartRunRequest::default()
        })?;
        self.runs()
            .start_run(request)
            .await
            .map(|response| response.into_inner().run_id)
            .map_err(|status| format!("StartRun {workflow}: {}", status.message()))
    }

    /// Reads a run, retrying while the server is unreachable (it may be
    /// restarting).
    pub async fn get_run(&self, run_id: &str) -> Result<pb::Run, String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let request = namespaced(pb::GetRunRequest {
                run_id: run_id.to_owned(),
                omit_contexts: false,
                ..Default::default()
            })?;
            match self.runs().get_run(request).await {
                Ok(response) => {
                    return response
                        .into_inner()
                        .run
                        .ok_or_else(|| "GetRun returned no run".to_owned());
                }
                Err(status)
                    if status.code() == tonic::Code::Unavailable && Instant::now() < deadline =>
                {
                    tokio::time::sleep(POLL).await;
                }
                Err(status) => return Err(format!("GetRun {run_id}: {}", status.message())),
            }
        }
    }

    /// Waits until the run is terminal and returns it.
    pub async fn wait_run(&self, run_id: &str) -> Result<pb::Run, String> {
        self.wait_run_for(run_id, RUN_DEADLINE).await
    }

    /// Waits up to `timeout` for the run to be terminal and returns it.
    pub async fn wait_run_for(&self, run_id: &str, timeout: Duration) -> Result<pb::Run, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let run = self.get_run(run_id).await?;
            if is_terminal(run.status()) {
                return Ok(run);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "run {run_id} not finished after {} s: {}",
                    timeout.as_secs(),
                    crate::checks::summary(&run)
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Cancels a run.
    pub async fn cancel_run(&self, run_id: &str) -> Result<(), String> {
        self.client
            .cancel_run(run_id)
            .await
            .map(|_| ())
            .map_err(|error| format!("CancelRun {run_id}: {error}"))
    }

    /// The connected executors, with their value counters.
    pub async fn executors(&self) -> Result<Vec<ExecutorInfo>, String> {
        executors::list(self.channel.clone(), NAMESPACE).await
    }

    /// The worker log as it is now.
    pub fn log(&self) -> Result<Vec<LogEvent>, String> {
        let text = match std::fs::read_to_string(self.log_path()) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(error) => return Err(format!("cannot read the worker log: {error}")),
        };
        log::parse_log(&text)
    }

    /// Waits until the log satisfies `done`; `what` names it in the error.
    pub async fn wait_log(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[LogEvent]) -> bool,
    ) -> Result<Vec<LogEvent>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let events = self.log()?;
            if done(&events) {
                return Ok(events);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the worker log did not show {what} within {} s",
                    timeout.as_secs_f32()
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Lines for a failure report: the tail of every worker's stderr and of
    /// the server log, and where the files are kept.
    pub fn failure_details(self) -> Vec<String> {
        let mut details = Vec::new();
        for worker in &self.workers {
            let lines = process::tail(&worker.output, 15, |_| true);
            if !lines.is_empty() {
                details.push(format!("worker {} output:", worker.name));
                details.extend(lines.into_iter().map(|line| format!("  {line}")));
            }
        }
        // The server logs every call at INFO; its warnings and errors are
        // what may explain a failure.
        let server_lines = process::tail(self.server.log_path(), 8, |line| {
            line.contains(r#""level":"WARN""#) || line.contains(r#""level":"ERROR""#)
        });
        if !server_lines.is_empty() {
            details.push("server warnings and errors:".to_owned());
            details.extend(server_lines.into_iter().map(|line| format!("  {line}")));
        }
        let path = self.directory.keep();
        details.push(format!("files kept in {}", path.display()));
        details
    }

    /// Stops every process.
    pub async fn shut_down(mut self) {
        for worker in &mut self.workers {
            worker.group.kill().await;
        }
        self.server.kill().await;
    }
}

/// A request with the namespace header.
fn namespaced<T>(message: T) -> Result<tonic::Request<T>, String> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        tributary_proto::NAMESPACE_METADATA_KEY,
        NAMESPACE
            .parse()
            .map_err(|_| "invalid namespace".to_owned())?,
    );
    Ok(request)
}

fn is_terminal(status: pb::RunStatus) -> bool {
    matches!(
        status,
        pb::RunStatus::Succeeded | pb::RunStatus::Failed | pb::RunStatus::Cancelled
    )
}
