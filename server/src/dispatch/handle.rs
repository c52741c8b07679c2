//! The way into the coordinator: [`CoordinatorHandle`], and the requests
//! and answers it carries between the API handlers and the coordinator task.

use tokio::sync::{mpsc, oneshot, watch};

use super::executors::{ExecutorCommand, ExecutorRegistration, LastHeard};
use super::held_values::ValueName;
use super::waiting::{DispatchSnapshot, TaskWait};
use crate::engine::context::{ContextError, Delta};
use crate::engine::records::RunStatus;
use crate::engine::run::{RetryError, RunSettings};
use crate::store::{StoreError, StoredWorkflow};

/// Settings of the coordinator, from the server configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DispatchSettings {
    pub run: RunSettings,
    /// Commands handled per turn at most, bounding a turn's latency.
    pub max_batch: usize,
    /// Silence after which an executor is dropped; also how long executors
    /// get to reclaim their attempts after a restart.
    pub lease_timeout_ms: u64,
    /// Runs one namespace may have active (pending or running) at once.
    pub max_active_runs_per_namespace: usize,
    /// Executors one namespace may have connected at once.
    pub max_executors_per_namespace: usize,
}

/// Why a coordinator request failed.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("the server is shutting down")]
    Stopped,
    #[error(transparent)]
    Context(#[from] ContextError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "idempotency key {} is already used by run {run_id} with a different request",
        tributary_core::shown(key)
    )]
    IdempotencyKeyReused { key: String, run_id: String },
    #[error(transparent)]
    Retry(#[from] RetryError),
    /// A per-namespace quota is full; the message names it and its value.
    #[error("{0}")]
    QuotaExceeded(String),
    /// A retried run never started: it was cancelled while queued or
    /// refused by its concurrency key.
    #[error(
        "run {run_id} never started: it was cancelled while its concurrency key {key:?} was full; start a new run instead"
    )]
    RetryNeverStarted { run_id: String, key: String },
    /// A retried run's concurrency key is full.
    #[error(
        "run {run_id} cannot be retried now: its concurrency key {key:?} has {limit} active run(s), the workflow's max_active_runs, or runs waiting; retry it when one has finished"
    )]
    RetryKeyFull {
        run_id: String,
        key: String,
        limit: u32,
    },
    /// The run's input gives no concurrency key for its workflow's policy.
    #[error(transparent)]
    ConcurrencyKey(#[from] tributary_core::RunKeyError),
}

/// A request to re-run a finished run (`RetryRun`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryRunCommand {
    pub namespace: String,
    pub run_id: String,
    /// Reset this task and its descendants instead of the failed, skipped
    /// and cancelled tasks.
    pub from_task: Option<String>,
    /// The client's id of this retry, for answering a repeated call.
    pub request_id: Option<String>,
}

/// What a retry reset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetriedRun {
    pub run_id: String,
    /// The run's status now.
    pub status: RunStatus,
    pub retry_count: u32,
    /// In canonical order.
    pub retried_task_ids: Vec<String>,
}

/// A request to start a run of a stored workflow version.
#[derive(Debug, Clone)]
pub struct StartRunCommand {
    pub namespace: String,
    pub workflow: StoredWorkflow,
    pub input_context_json: String,
    pub idempotency_key: Option<String>,
    pub request_hash: String,
    /// The run's key when its workflow version has a concurrency policy.
    pub concurrency_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedRun {
    pub run_id: String,
    pub workflow_version: String,
    pub created: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    Cancelled,
    /// The run is not active on this server: finished, or unknown.
    NotActive,
}

/// What an executor reported on its stream.
#[derive(Debug, Clone)]
pub enum ExecutorEvent {
    Started {
        attempt_id: String,
    },
    Completed {
        attempt_id: String,
        delta: Delta,
    },
    Failed {
        attempt_id: String,
        message: String,
        retryable: bool,
    },
    /// A result refused at the edge for its content: the attempt fails
    /// without retry, and the executor is told why.
    Rejected {
        attempt_id: String,
        reason: String,
    },
    CapacityChanged {
        capacity: u32,
    },
    /// A message the server could not read (too large, or not protobuf);
    /// the stream ends after it. It is charged to the attempt the executor
    /// held when it held exactly one, which must have sent it: the attempt
    /// fails without retry, with the reason. With several in flight nobody
    /// can tell whose result it was, and they are lost with the stream.
    Unreadable {
        reason: String,
    },
    /// Referenced values the executor no longer holds.
    FetchValues {
        run_id: String,
        refs: Vec<ValueName>,
    },
    Heartbeat,
}

/// A connected executor as `ListExecutors` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorSnapshot {
    pub id: String,
    pub registration: ExecutorRegistration,
    pub capacity: u32,
    pub in_flight: Vec<String>,
    pub connected_at_ms: i64,
    /// Bytes of context JSON sent by value on this connection.
    pub context_bytes_sent: u64,
    /// Values sent by reference on this connection.
    pub values_sent_by_reference: u64,
}

/// How an executor's stream ended, as its reader saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The executor closed its side of the stream.
    StreamClosed,
    /// The stream failed (a reset, a broken connection).
    StreamBroken,
}

pub(super) type StartReply = oneshot::Sender<Result<StartedRun, DispatchError>>;

pub(super) type RetryReply = oneshot::Sender<Result<RetriedRun, DispatchError>>;

pub(super) enum Command {
    StartRun {
        command: StartRunCommand,
        reply: StartReply,
    },
    CancelRun {
        namespace: String,
        run_id: String,
        reply: oneshot::Sender<CancelOutcome>,
    },
    RetryRun {
        command: RetryRunCommand,
        reply: RetryReply,
    },
    Register {
        namespace: String,
        registration: ExecutorRegistration,
        outbound: mpsc::Sender<ExecutorCommand>,
        stream_guard: watch::Sender<bool>,
        last_heard: LastHeard,
        reply: oneshot::Sender<Result<String, DispatchError>>,
    },
    Executor {
        executor_id: String,
        event: ExecutorEvent,
    },
    Disconnected {
        executor_id: String,
        reason: DisconnectReason,
    },
    Snapshot {
        reply: oneshot::Sender<DispatchSnapshot>,
    },
    WaitingReasons {
        namespace: String,
        run_id: String,
        reply: oneshot::Sender<Vec<TaskWait>>,
    },
    ListExecutors {
        namespace: String,
        reply: oneshot::Sender<Vec<ExecutorSnapshot>>,
    },
}

/// The way into the coordinator; cheap to clone.
#[derive(Clone)]
pub struct CoordinatorHandle {
    pub(super) commands: mpsc::Sender<Command>,
}

impl CoordinatorHandle {
    async fn request<T>(
        &self,
        command: Command,
        reply: oneshot::Receiver<T>,
    ) -> Result<T, DispatchError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| DispatchError::Stopped)?;
        reply.await.map_err(|_| DispatchError::Stopped)
    }

    pub async fn start_run(&self, command: StartRunCommand) -> Result<StartedRun, DispatchError> {
        let (reply, receiver) = oneshot::channel();
        self.request(Command::StartRun { command, reply }, receiver)
            .await?
    }

    pub async fn cancel_run(
        &self,
        namespace: &str,
        run_id: &str,
    ) -> Result<CancelOutcome, DispatchError> {
        let (reply, receiver) = oneshot::channel();
        let command = Command::CancelRun {
            namespace: namespace.to_owned(),
            run_id: run_id.to_owned(),
            reply,
        };
        self.request(command, receiver).await
    }

    /// Re-runs a finished run in place (see `RunState::retry`).
    pub async fn retry_run(&self, command: RetryRunCommand) -> Result<RetriedRun, DispatchError> {
        let (reply, receiver) = oneshot::channel();
        self.request(Command::RetryRun { command, reply }, receiver)
            .await?
    }

    /// Registers an executor; the coordinator sends `Registered` on
    /// `outbound` before anything else. When the coordinator drops the
    /// executor (lease expired, not reading) it drops `stream_guard`, which
    /// tells the stream's reader to stop. The reader notes in `last_heard`
    /// when the executor last spoke. Returns the executor's id.
    pub async fn register_executor(
        &self,
        namespace: &str,
        registration: ExecutorRegistration,
        outbound: mpsc::Sender<ExecutorCommand>,
        stream_guard: watch::Sender<bool>,
        last_heard: LastHeard,
    ) -> Result<String, DispatchError> {
        let (reply, receiver) = oneshot::channel();
        let command = Command::Register {
            namespace: namespace.to_owned(),
            registration,
            outbound,
            stream_guard,
            last_heard,
            reply,
        };
        self.request(command, receiver).await?
    }

    pub async fn executor_event(
        &self,
        executor_id: &str,
        event: ExecutorEvent,
    ) -> Result<(), DispatchError> {
        let command = Command::Executor {
            executor_id: executor_id.to_owned(),
            event,
        };
        self.commands
            .send(command)
            .await
            .map_err(|_| DispatchError::Stopped)
    }

    pub async fn executor_disconnected(&self, executor_id: &str, reason: DisconnectReason) {
        let command = Command::Disconnected {
            executor_id: executor_id.to_owned(),
            reason,
        };
        // A stopped coordinator has already forgotten every executor.
        let _ = self.commands.send(command).await;
    }

    /// The executors, slots and waiting tasks per handler, for the metrics.
    pub async fn snapshot(&self) -> Result<DispatchSnapshot, DispatchError> {
        let (reply, receiver) = oneshot::channel();
        self.request(Command::Snapshot { reply }, receiver).await
    }

    /// Why each READY task of an active run waits; empty for a run that is
    /// not active here.
    pub async fn waiting_reasons(
        &self,
        namespace: &str,
        run_id: &str,
    ) -> Result<Vec<TaskWait>, DispatchError> {
        let (reply, receiver) = oneshot::channel();
        let command = Command::WaitingReasons {
            namespace: namespace.to_owned(),
            run_id: run_id.to_owned(),
            reply,
        };
        self.request(command, receiver).await
    }

    pub async fn list_executors(
        &self,
        namespace: &str,
    ) -> Result<Vec<ExecutorSnapshot>, DispatchError> {
        let (reply, receiver) = oneshot::channel();
        let command = Command::ListExecutors {
            namespace: namespace.to_owned(),
            reply,
        };
        self.request(command, receiver).await
    }
}
