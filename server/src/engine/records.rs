//! What the engine asks the store to persist, and what the store reads back:
//! plain domain records of runs, tasks, attempts, deltas, conflicts and
//! events. No SQL here; the store maps these to rows.

use serde::{Deserialize, Serialize};

/// The lifecycle of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Waiting for a slot of its concurrency key; no task rows yet.
    Queued,
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

/// The lifecycle of a task within a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Waiting,
    Ready,
    Assigned,
    Running,
    Succeeded,
    Failed,
    Skipped,
    Cancelled,
    RetryScheduled,
}

/// Why a task was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    UpstreamFailed,
    RuleNotMet,
}

/// The lifecycle of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptState {
    Assigned,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Lost,
    Cancelled,
}

/// What happened, in the event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    RunStarted,
    RunFinished,
    TaskReady,
    TaskAssigned,
    TaskStarted,
    TaskSucceeded,
    TaskFailed,
    TaskRetryScheduled,
    TaskTimedOut,
    TaskSkipped,
    TaskCancelled,
    ContextConflict,
    ExecutorConnected,
    ExecutorLost,
    RunRetried,
    RunQueued,
    /// A mapped task was expanded into its instances (`map_size`).
    TaskMapped,
}

macro_rules! text_enum {
    ($name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            pub fn parse(text: &str) -> Option<$name> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }
    };
}

text_enum!(RunStatus {
    Queued = "queued",
    Pending = "pending",
    Running = "running",
    Succeeded = "succeeded",
    Failed = "failed",
    Cancelled = "cancelled",
});
text_enum!(TaskState {
    Waiting = "waiting",
    Ready = "ready",
    Assigned = "assigned",
    Running = "running",
    Succeeded = "succeeded",
    Failed = "failed",
    Skipped = "skipped",
    Cancelled = "cancelled",
    RetryScheduled = "retry_scheduled",
});
text_enum!(SkipReason {
    UpstreamFailed = "upstream_failed",
    RuleNotMet = "rule_not_met",
});
text_enum!(AttemptState {
    Assigned = "assigned",
    Running = "running",
    Succeeded = "succeeded",
    Failed = "failed",
    TimedOut = "timed_out",
    Lost = "lost",
    Cancelled = "cancelled",
});
text_enum!(EventType {
    RunStarted = "run_started",
    RunFinished = "run_finished",
    TaskReady = "task_ready",
    TaskAssigned = "task_assigned",
    TaskStarted = "task_started",
    TaskSucceeded = "task_succeeded",
    TaskFailed = "task_failed",
    TaskRetryScheduled = "task_retry_scheduled",
    TaskTimedOut = "task_timed_out",
    TaskSkipped = "task_skipped",
    TaskCancelled = "task_cancelled",
    ContextConflict = "context_conflict",
    ExecutorConnected = "executor_connected",
    ExecutorLost = "executor_lost",
    RunRetried = "run_retried",
    RunQueued = "run_queued",
    TaskMapped = "task_mapped",
});

impl RunStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled
        )
    }
}

impl TaskState {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Failed | TaskState::Skipped | TaskState::Cancelled
        )
    }
}

/// A new run with all its tasks, written in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRun {
    pub id: String,
    pub namespace: String,
    pub workflow_name: String,
    pub workflow_version: String,
    pub input_context_json: String,
    pub idempotency_key: Option<String>,
    /// A hash of the request, to tell an idempotent retry from a different
    /// request that reuses the key.
    pub request_hash: String,
    pub created_at_ms: i64,
    /// PENDING, or QUEUED for a run waiting for a slot of its concurrency
    /// key (it then has no tasks yet).
    pub status: RunStatus,
    /// Set when the workflow has a concurrency policy.
    pub concurrency_key: Option<String>,
    /// Every task of the workflow, in canonical order.
    pub tasks: Vec<TaskRecord>,
    pub events: Vec<NewEvent>,
}

/// The full state of a task within a run (the row is replaced whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRecord {
    pub task_id: String,
    /// The task's index in the workflow's canonical order; tasks are listed
    /// in this order.
    pub position: u32,
    pub state: TaskState,
    pub skip_reason: Option<SkipReason>,
    /// Attempts sent so far (retries and reassignments included).
    pub attempts_started: u32,
    /// Failed attempts that consumed the retry budget.
    pub failures: u32,
    /// Attempts lost with their executor (they do not consume retries).
    pub reassignments: u32,
    pub current_attempt_id: Option<String>,
    pub next_attempt_at_ms: Option<i64>,
    pub error: Option<String>,
    pub updated_at_ms: i64,
    /// For an instance of a mapped task: its element's index. Its
    /// `task_id` is then the storage key `<task id>[<index>]` and its
    /// `position` the mapped task's.
    pub map_index: Option<u32>,
    /// For a mapped task once expanded: how many instances it has.
    pub map_size: Option<u32>,
}

/// An attempt, as first written when it is assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    pub id: String,
    pub run_id: String,
    pub task_id: String,
    pub number: u32,
    pub executor_id: String,
    /// The executor instance the attempt was assigned to: the only one whose
    /// results count for it. Empty for attempts stored before instances
    /// were recorded.
    pub instance_id: String,
    pub state: AttemptState,
    pub error: Option<String>,
    pub assigned_at_ms: i64,
    pub deadline_at_ms: Option<i64>,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
}

/// A change of an existing attempt's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptUpdate {
    pub id: String,
    pub state: AttemptState,
    pub error: Option<String>,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
}

/// The writes of a task's succeeded attempt. `set_json` is a JSON object of
/// top-level keys and their new values; `removed_keys` were removed. An
/// empty `attempt_id` marks the gathered output of a mapped task, which no
/// attempt wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaRecord {
    pub task_id: String,
    pub attempt_id: String,
    pub set_json: String,
    pub removed_keys: Vec<String>,
}

/// Two tasks with no path between them wrote the same key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictRecord {
    pub key: String,
    pub winning_task_id: String,
    pub overridden_task_id: String,
}

/// Details carried by an event; which fields are set depends on its type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_number: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_reason: Option<SkipReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_status: Option<RunStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflict_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflict_winning_task_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflict_overridden_task_id: Option<String>,
    /// The tasks a RUN_RETRIED reset, in canonical order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retried_task_ids: Option<Vec<String>>,
    /// The run's concurrency key, for RUN_QUEUED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_key: Option<String>,
    /// The run's position in its key's queue when it was queued, for
    /// RUN_QUEUED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<u32>,
    /// The element index of the instance of a mapped task the event is
    /// about (its `task_id` is the mapped task's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_index: Option<u32>,
    /// How many instances a mapped task was expanded into, for TASK_MAPPED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_size: Option<u32>,
}

/// An event to append. The run's sequence number is assigned by the engine
/// (one owner per run); the global cursor by the store's sequencer, in
/// commit order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub sequence: u64,
    pub event_type: EventType,
    pub details: EventDetails,
    pub created_at_ms: i64,
}

/// A committed event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub cursor: u64,
    pub namespace: String,
    pub run_id: String,
    pub workflow_name: String,
    pub sequence: u64,
    pub event_type: EventType,
    pub details: EventDetails,
    pub created_at_ms: i64,
}

/// Everything one step of the engine changed in one run. A batch of these is
/// committed in one transaction before anything acts on them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunChanges {
    pub run_id: String,
    pub namespace: String,
    pub workflow_name: String,
    /// Set when the run's status changes.
    pub status: Option<RunStatusChange>,
    /// Replaced whole; at most one record per task.
    pub tasks: Vec<TaskRecord>,
    /// Rows to insert: the instances of a mapped task expanded in this
    /// step (never also in `tasks`).
    pub new_tasks: Vec<TaskRecord>,
    pub new_attempts: Vec<AttemptRecord>,
    pub attempt_updates: Vec<AttemptUpdate>,
    pub deltas: Vec<DeltaRecord>,
    pub conflicts: Vec<ConflictRecord>,
    pub events: Vec<NewEvent>,
}

/// A run's new status, with its final context once terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunStatusChange {
    pub status: RunStatus,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub final_context_json: Option<String>,
}

impl RunChanges {
    pub fn is_empty(&self) -> bool {
        self.status.is_none()
            && self.tasks.is_empty()
            && self.new_tasks.is_empty()
            && self.new_attempts.is_empty()
            && self.attempt_updates.is_empty()
            && self.deltas.is_empty()
            && self.conflicts.is_empty()
            && self.events.is_empty()
    }
}

/// A run as stored, without its tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    pub id: String,
    pub namespace: String,
    pub workflow_name: String,
    pub workflow_version: String,
    pub status: RunStatus,
    pub input_context_json: String,
    pub final_context_json: Option<String>,
    pub idempotency_key: Option<String>,
    pub request_hash: String,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    /// How many times the run was re-run by RetryRun.
    pub retry_count: u32,
    /// The client's id of the latest retry, if it gave one.
    pub retry_request_id: Option<String>,
    /// Set when the workflow has a concurrency policy.
    pub concurrency_key: Option<String>,
    /// The 1-based position in its key's queue, while QUEUED.
    pub queue_position: Option<u32>,
}

/// What a retry changes besides the engine's usual rows: the run row goes
/// back to RUNNING (its end cleared), and the reset tasks lose their
/// deltas and conflicts. Committed in one transaction with `changes`, and
/// only if the run is still as it was read (`expected_*`), so a retry
/// racing another retry or the retention job fails cleanly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRetry {
    /// The engine's rows: reset tasks, events, and whatever the reset tasks
    /// already settled (a skip, even the run's new end).
    pub changes: RunChanges,
    /// The status the run had when it was read.
    pub expected_status: RunStatus,
    /// The retry_count the run had when it was read.
    pub expected_retry_count: u32,
    /// The retry_count to store (one more).
    pub retry_count: u32,
    pub request_id: Option<String>,
    /// The reset tasks, whose deltas and conflicts are deleted.
    pub reset_task_ids: Vec<String>,
    /// The reset mapped tasks that had been expanded, whose instance rows
    /// are deleted with their attempts and deltas (the next expansion
    /// stores its own under the same keys).
    pub dropped_map_task_ids: Vec<String>,
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDetail {
    pub run: RunRecord,
    /// In the order stored (the engine writes them in canonical order).
    pub tasks: Vec<TaskRecord>,
    /// Ordered by task, then attempt number.
    pub attempts: Vec<AttemptRecord>,
    pub deltas: Vec<DeltaRecord>,
    pub conflicts: Vec<ConflictRecord>,
}

/// What `Store::create_run` did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "made once per StartRun and consumed at once; a Box would only add noise"
)]
pub enum CreateRunOutcome {
    /// The run was written; its events got these cursors.
    Created(Vec<EventRecord>),
    /// Another run already holds the idempotency key; nothing was written.
    IdempotencyKeyTaken(RunRecord),
}

/// Filters of `ListRuns`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    pub workflow_name: Option<String>,
    pub status: Option<RunStatus>,
    /// Only runs whose id sorts before this one (ids are UUIDv7, so this
    /// means older); the page token.
    pub before_id: Option<String>,
    pub limit: u32,
}

/// Which events a watcher wants, besides its position.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only events of runs of these workflows; empty means all.
    pub workflow_names: Vec<String>,
    /// Only events of these runs; empty means all.
    pub run_ids: Vec<String>,
    /// Only events of these types; empty means all.
    pub types: Vec<EventType>,
}

impl EventFilter {
    /// Whether an event passes every non-empty list. The namespace is not
    /// part of the filter; callers check it.
    pub fn matches(&self, event: &EventRecord) -> bool {
        (self.workflow_names.is_empty() || self.workflow_names.contains(&event.workflow_name))
            && (self.run_ids.is_empty() || self.run_ids.contains(&event.run_id))
            && (self.types.is_empty() || self.types.contains(&event.event_type))
    }
}

/// Where a read of the event log starts, which also fixes its order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventPosition {
    /// Events of every run with a greater global cursor, in cursor order
    /// (commit order).
    AfterCursor(u64),
    /// Events of one run with a greater sequence number, in sequence order
    /// (which is also their cursor order).
    AfterSequence { run_id: String, sequence: u64 },
}

/// A page of the event log of one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQuery {
    pub position: EventPosition,
    pub filter: EventFilter,
    /// At most this many events.
    pub limit: u32,
}
