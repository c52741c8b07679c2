//! The state machine of one run. Every method takes an event (an assignment,
//! a result, a timer, a cancellation) and the current time, updates the
//! in-memory state, records what must be persisted (taken with
//! [`RunState::take_changes`]) and returns the [`Action`]s the runtime must
//! carry out once those changes are committed.
//!
//! Fencing lives here: a result counts only if it names the task's current
//! attempt; anything else is [`ResultDisposition::Stale`] and changes nothing.
//! Which executor instance may report an attempt's end is recorded here too
//! ([`RunState::holder_of`]); the runtime checks it before calling in.
//!
//! How a task's end reaches its dependants and the run is in
//! `run/settle.rs`; rebuilding a run after a restart in `run/restore.rs`;
//! ending a run early (cancel, abort) in `run/ending.rs`; re-running a
//! finished one in `run/rerun.rs`; mapped tasks in `run/map.rs`.

mod ending;
mod map;
mod records;
mod rerun;
mod restore;
mod settle;
mod start;

pub use map::{instance_key, parse_instance_key};
pub use rerun::{RetryError, RetrySummary};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::value::RawValue;

use super::context::{Context, ContextError, Delta, canonical_context};
use super::context_size::ContextSize;
use super::plan::{TaskIndex, WorkflowPlan};
use super::records::{
    AttemptRecord, AttemptState, AttemptUpdate, ConflictRecord, DeltaRecord, EventDetails,
    EventType, NewEvent, NewRun, RunChanges, RunDetail, RunStatus, RunStatusChange, SkipReason,
    TaskRecord, TaskState,
};
use super::retry::retry_delay_ms;
use super::trigger::{DependencyOutcome, TriggerDecision, evaluate};

/// What the runtime must do after the changes of a step are committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The task is READY: queue it for an executor serving its handler.
    Enqueue(TaskIndex),
    /// The mapped task is READY: expand it now ([`RunState::expand`]).
    Expand(TaskIndex),
    /// Make the task ready again at this time (a retry delay).
    RetryAt { task: TaskIndex, at_ms: i64 },
    /// Time the attempt out at this time.
    TimeoutAt {
        task: TaskIndex,
        attempt_id: String,
        at_ms: i64,
    },
    /// Ask the executor holding the attempt to stop it.
    Cancel {
        executor_id: String,
        attempt_id: String,
        reason: String,
    },
    /// The run is terminal.
    Finished(RunStatus),
}

/// The answer to a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultDisposition {
    Accepted,
    Stale,
}

/// What an executor needs to run an attempt.
#[derive(Debug, Clone)]
pub struct Assignment {
    pub task_id: String,
    /// For an instance of a mapped task, its element's index.
    pub map_index: Option<u32>,
    pub handler: String,
    pub attempt_id: String,
    pub attempt_number: u32,
    /// The task's input context, with the writer of each key.
    pub input: Context,
    pub deadline_ms: i64,
    /// Since when the task was READY (its dispatch latency starts here).
    pub ready_since_ms: i64,
}

/// Why stored records do not make a run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    #[error("stored task {0:?} is not in the workflow version")]
    UnknownTask(String),
    #[error("task {0:?} of the workflow version has no stored row")]
    MissingTask(String),
    #[error(transparent)]
    Context(#[from] ContextError),
}

/// Why a run cannot be cancelled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("run {run_id:?} is already {}", status.as_str())]
pub struct AlreadyFinished {
    pub run_id: String,
    pub status: RunStatus,
}

#[derive(Debug, Clone)]
struct CurrentAttempt {
    id: String,
    executor_id: String,
}

#[derive(Debug, Clone)]
struct TaskRuntime {
    state: TaskState,
    skip_reason: Option<SkipReason>,
    attempts_started: u32,
    failures: u32,
    reassignments: u32,
    current: Option<CurrentAttempt>,
    next_attempt_at_ms: Option<i64>,
    error: Option<String>,
    updated_at_ms: i64,
}

impl TaskRuntime {
    /// A task (or instance) that has not run yet, in `state`.
    fn fresh(state: TaskState, now_ms: i64) -> TaskRuntime {
        TaskRuntime {
            state,
            skip_reason: None,
            attempts_started: 0,
            failures: 0,
            reassignments: 0,
            current: None,
            next_attempt_at_ms: None,
            error: None,
            updated_at_ms: now_ms,
        }
    }
}

/// Server-wide settings the state machine needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunSettings {
    /// Attempt timeout for tasks that set none.
    pub default_timeout_ms: u64,
    /// Executor losses a task survives before it fails.
    pub max_reassignments: u32,
    /// Largest accumulated context of a run, in bytes (see
    /// `context_size`); a result that would take it over fails its task.
    pub max_run_context_bytes: usize,
}

pub struct RunState {
    id: String,
    namespace: String,
    plan: Arc<WorkflowPlan>,
    settings: RunSettings,
    status: RunStatus,
    input: Context,
    tasks: Vec<TaskRuntime>,
    /// The context a terminal task passes on: its input plus, if it
    /// succeeded, its delta.
    outputs: Vec<Option<Context>>,
    deltas: Vec<Option<Delta>>,
    /// The attempt whose delta each succeeded task contributed.
    succeeded_attempts: Vec<Option<Arc<str>>>,
    /// For every key written by a succeeded task, the tasks that wrote it.
    writers: HashMap<Arc<str>, Vec<TaskIndex>>,
    /// The size of the input plus every succeeded task's delta.
    context_size: ContextSize,
    attempts: HashMap<String, AttemptRecord>,
    next_sequence: u64,
    pending: PendingChanges,
    /// The instances of mapped tasks: units past the plan's tasks in
    /// `tasks`, `outputs`, `deltas` and `succeeded_attempts`.
    maps: map::Maps,
}

#[derive(Default)]
struct PendingChanges {
    status: Option<RunStatusChange>,
    tasks: BTreeSet<TaskIndex>,
    /// Units created in this step (instances), inserted rather than
    /// updated.
    new_units: BTreeSet<TaskIndex>,
    new_attempts: Vec<String>,
    updated_attempts: Vec<String>,
    deltas: Vec<DeltaRecord>,
    conflicts: Vec<ConflictRecord>,
    events: Vec<NewEvent>,
}

impl RunState {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn plan(&self) -> &Arc<WorkflowPlan> {
        &self.plan
    }

    pub fn status(&self) -> RunStatus {
        self.status
    }

    pub fn task_state(&self, task: TaskIndex) -> TaskState {
        self.tasks[task].state
    }

    /// The attempt whose delta a succeeded task contributed: the writer's
    /// name of the values it set.
    pub fn succeeded_attempt(&self, task: TaskIndex) -> Option<&Arc<str>> {
        self.succeeded_attempts[task].as_ref()
    }

    /// A value by its name: the key and the attempt that set it (`""` for
    /// the run's input). `None` when the run has no such value.
    pub fn value_named(&self, key: &str, writer_attempt_id: &str) -> Option<Arc<RawValue>> {
        if writer_attempt_id.is_empty() {
            return self.input.get_shared(key).cloned();
        }
        let attempt = self.attempts.get(writer_attempt_id)?;
        let task = self.unit_by_key(&attempt.task_id)?;
        if self.succeeded_attempts[task].as_deref() != Some(writer_attempt_id) {
            return None;
        }
        let delta = self.deltas[task].as_ref()?;
        delta
            .set
            .iter()
            .find(|(set_key, _)| &**set_key == key)
            .map(|(_, value)| value.clone())
    }

    /// The task holding `attempt_id` as its current attempt, if any.
    pub fn task_of_current_attempt(&self, attempt_id: &str) -> Option<TaskIndex> {
        let record = self.attempts.get(attempt_id)?;
        let task = self.unit_by_key(&record.task_id)?;
        let current = self.tasks[task].current.as_ref()?;
        (current.id == attempt_id).then_some(task)
    }

    /// The executor instance holding `attempt_id` (empty for an attempt
    /// stored before instances were recorded), if it is an attempt of this
    /// run.
    pub fn holder_of(&self, attempt_id: &str) -> Option<&str> {
        self.attempts
            .get(attempt_id)
            .map(|attempt| attempt.instance_id.as_str())
    }

    /// Whether `instance_id` may report the end of `attempt_id`: it is an
    /// attempt of this run held by that instance.
    pub fn may_report(&self, attempt_id: &str, instance_id: &str) -> bool {
        self.holder_of(attempt_id)
            .is_some_and(|holder| holder.is_empty() || holder == instance_id)
    }

    /// Sends a READY task to an executor: records the attempt and returns
    /// what the executor needs. `None` if the task is no longer READY.
    pub fn assign(
        &mut self,
        task: TaskIndex,
        attempt_id: String,
        executor_id: &str,
        instance_id: &str,
        now_ms: i64,
    ) -> Option<(Assignment, Action)> {
        if self.tasks[task].state != TaskState::Ready || self.status.is_terminal() {
            return None;
        }
        if self.status == RunStatus::Pending {
            self.set_status(RunStatus::Running, Some(now_ms), None, None);
        }
        let plan = self.plan.clone();
        let spec = &plan.tasks[self.spec_task(task)];
        let unit_key = self.unit_key(task);
        let map_index = self.map_index_of(task);
        let timeout_ms = spec.timeout_ms.unwrap_or(self.settings.default_timeout_ms);
        let deadline_ms = now_ms.saturating_add(i64::try_from(timeout_ms).unwrap_or(i64::MAX));
        let input = self.input_of(task);
        let runtime = &mut self.tasks[task];
        let ready_since_ms = runtime.updated_at_ms;
        runtime.attempts_started += 1;
        runtime.state = TaskState::Assigned;
        runtime.next_attempt_at_ms = None;
        runtime.current = Some(CurrentAttempt {
            id: attempt_id.clone(),
            executor_id: executor_id.to_owned(),
        });
        let number = runtime.attempts_started;
        self.attempts.insert(
            attempt_id.clone(),
            AttemptRecord {
                id: attempt_id.clone(),
                run_id: self.id.clone(),
                task_id: unit_key,
                number,
                executor_id: executor_id.to_owned(),
                instance_id: instance_id.to_owned(),
                state: AttemptState::Assigned,
                error: None,
                assigned_at_ms: now_ms,
                deadline_at_ms: Some(deadline_ms),
                started_at_ms: None,
                finished_at_ms: None,
            },
        );
        self.pending.new_attempts.push(attempt_id.clone());
        self.touch(task, now_ms);
        let details = self.attempt_details(task, &attempt_id);
        self.event(EventType::TaskAssigned, details, now_ms);
        let assignment = Assignment {
            task_id: spec.id.clone(),
            map_index,
            handler: spec.handler.clone(),
            attempt_id: attempt_id.clone(),
            attempt_number: number,
            input,
            deadline_ms,
            ready_since_ms,
        };
        let timeout = Action::TimeoutAt {
            task,
            attempt_id,
            at_ms: deadline_ms,
        };
        Some((assignment, timeout))
    }

    /// The executor reports the attempt began.
    pub fn on_started(&mut self, attempt_id: &str, now_ms: i64) -> ResultDisposition {
        let Some(task) = self.task_of_current_attempt(attempt_id) else {
            return ResultDisposition::Stale;
        };
        if self.tasks[task].state != TaskState::Assigned {
            return ResultDisposition::Accepted;
        }
        self.tasks[task].state = TaskState::Running;
        self.touch(task, now_ms);
        self.update_attempt(attempt_id, |attempt| {
            attempt.state = AttemptState::Running;
            attempt.started_at_ms = Some(now_ms);
        });
        let details = self.attempt_details(task, attempt_id);
        self.event(EventType::TaskStarted, details, now_ms);
        ResultDisposition::Accepted
    }

    /// The executor reports success with the attempt's writes.
    pub fn on_completed(
        &mut self,
        attempt_id: &str,
        delta: Delta,
        now_ms: i64,
        actions: &mut Vec<Action>,
    ) -> ResultDisposition {
        let Some(task) = self.task_of_current_attempt(attempt_id) else {
            return self.disposition_of_non_current(attempt_id, AttemptState::Succeeded);
        };
        if self.instance_of(task).is_some() {
            if let Some(error) = self.instance_delta_error(task, &delta) {
                return self.on_failed(attempt_id, &error, false, 1.0, now_ms, actions);
            }
            self.instance_succeeded(task, attempt_id, delta, now_ms, actions);
            return ResultDisposition::Accepted;
        }
        // A context over the limit could not be sent to the next task nor
        // read back; the same code would write the same again, so no retry.
        let limit = self.settings.max_run_context_bytes;
        let would_be = self.context_size.with_delta(task, &delta);
        if would_be > limit {
            let message = format!(
                "context of run {} would be {would_be} bytes, above the limit of {limit} bytes (max_run_context_bytes) by {}",
                self.id,
                would_be - limit
            );
            return self.on_failed(attempt_id, &message, false, 1.0, now_ms, actions);
        }
        self.context_size.apply(task, &delta);
        self.update_attempt(attempt_id, |attempt| {
            attempt.state = AttemptState::Succeeded;
            attempt.finished_at_ms = Some(now_ms);
        });
        let details = self.attempt_details(task, attempt_id);
        self.tasks[task].current = None;
        self.tasks[task].error = None;
        self.pending.deltas.push(DeltaRecord {
            task_id: self.plan.tasks[task].id.clone(),
            attempt_id: attempt_id.to_owned(),
            set_json: delta.set_json(),
            removed_keys: delta.removed.iter().map(|key| key.to_string()).collect(),
        });
        self.record_conflicts(task, &delta, now_ms);
        let mut output = self.input_of(task);
        output.apply(task, &delta);
        self.outputs[task] = Some(output);
        self.deltas[task] = Some(delta);
        self.succeeded_attempts[task] = Some(Arc::from(attempt_id));
        self.event(EventType::TaskSucceeded, details, now_ms);
        self.finish_task(task, TaskState::Succeeded, None, now_ms, actions);
        ResultDisposition::Accepted
    }

    /// The executor reports failure. Retries if the failure is retryable and
    /// the budget allows, else the task fails.
    pub fn on_failed(
        &mut self,
        attempt_id: &str,
        message: &str,
        retryable: bool,
        jitter_factor: f64,
        now_ms: i64,
        actions: &mut Vec<Action>,
    ) -> ResultDisposition {
        let Some(task) = self.task_of_current_attempt(attempt_id) else {
            return self.disposition_of_non_current(attempt_id, AttemptState::Failed);
        };
        self.update_attempt(attempt_id, |attempt| {
            attempt.state = AttemptState::Failed;
            attempt.error = Some(message.to_owned());
            attempt.finished_at_ms = Some(now_ms);
        });
        let mut details = self.attempt_details(task, attempt_id);
        details.error = Some(message.to_owned());
        self.after_failed_attempt(task, details, retryable, jitter_factor, now_ms, actions);
        ResultDisposition::Accepted
    }

    /// The attempt's deadline passed. The executor is told to stop; the
    /// attempt no longer counts, and the task is retried if it may be.
    pub fn on_timeout(
        &mut self,
        attempt_id: &str,
        jitter_factor: f64,
        now_ms: i64,
        actions: &mut Vec<Action>,
    ) {
        let Some(task) = self.task_of_current_attempt(attempt_id) else {
            return;
        };
        let timeout_ms = self.plan.tasks[self.spec_task(task)]
            .timeout_ms
            .unwrap_or(self.settings.default_timeout_ms);
        let message = format!("attempt timed out after {timeout_ms} ms");
        self.update_attempt(attempt_id, |attempt| {
            attempt.state = AttemptState::TimedOut;
            attempt.error = Some(message.clone());
            attempt.finished_at_ms = Some(now_ms);
        });
        let mut details = self.attempt_details(task, attempt_id);
        details.error = Some(message.clone());
        self.event(EventType::TaskTimedOut, details.clone(), now_ms);
        if let Some(current) = &self.tasks[task].current {
            actions.push(Action::Cancel {
                executor_id: current.executor_id.clone(),
                attempt_id: attempt_id.to_owned(),
                reason: message,
            });
        }
        self.after_failed_attempt(task, details, true, jitter_factor, now_ms, actions);
    }

    /// The executor holding the attempt is gone. The task goes back to READY
    /// without consuming a retry, unless it has lost too many executors.
    pub fn on_attempt_lost(&mut self, attempt_id: &str, now_ms: i64, actions: &mut Vec<Action>) {
        let Some(task) = self.task_of_current_attempt(attempt_id) else {
            return;
        };
        let message = "the executor running the attempt was lost".to_owned();
        self.update_attempt(attempt_id, |attempt| {
            attempt.state = AttemptState::Lost;
            attempt.error = Some(message.clone());
            attempt.finished_at_ms = Some(now_ms);
        });
        let mut details = self.attempt_details(task, attempt_id);
        details.error = Some(message);
        self.event(EventType::ExecutorLost, details.clone(), now_ms);
        self.tasks[task].current = None;
        self.tasks[task].reassignments += 1;
        let reassignments = self.tasks[task].reassignments;
        if reassignments > self.settings.max_reassignments {
            let error = format!(
                "the task lost its executor {reassignments} times (max_reassignments is {})",
                self.settings.max_reassignments
            );
            let details = EventDetails {
                error: Some(error.clone()),
                ..details
            };
            self.event(EventType::TaskFailed, details, now_ms);
            self.finish_task(task, TaskState::Failed, Some(error), now_ms, actions);
        } else {
            self.make_ready(task, now_ms, actions);
        }
    }

    /// A retry delay ended.
    pub fn on_retry_due(&mut self, task: TaskIndex, now_ms: i64, actions: &mut Vec<Action>) {
        if self.tasks[task].state == TaskState::RetryScheduled && !self.status.is_terminal() {
            self.make_ready(task, now_ms, actions);
        }
    }

    /// A result for an attempt that is no longer current: a copy of the
    /// result that ended it (`reported` is the state it would have set) is
    /// answered as that one was; anything else is stale.
    fn disposition_of_non_current(
        &self,
        attempt_id: &str,
        reported: AttemptState,
    ) -> ResultDisposition {
        let ended_by_it = self
            .attempts
            .get(attempt_id)
            .is_some_and(|attempt| attempt.state == reported);
        if ended_by_it {
            ResultDisposition::Accepted
        } else {
            ResultDisposition::Stale
        }
    }

    /// An attempt failed or timed out: the task is retried if it may be,
    /// else it fails. Either way exactly one event records the task's new
    /// state (TASK_RETRY_SCHEDULED or TASK_FAILED), carrying `details` (the
    /// attempt and its error), so every task's history ends in one terminal
    /// task event whatever path led there.
    fn after_failed_attempt(
        &mut self,
        task: TaskIndex,
        details: EventDetails,
        retryable: bool,
        jitter_factor: f64,
        now_ms: i64,
        actions: &mut Vec<Action>,
    ) {
        let message = details.error.clone().unwrap_or_default();
        let policy = self.plan.tasks[self.spec_task(task)].retry;
        let runtime = &mut self.tasks[task];
        runtime.current = None;
        runtime.failures += 1;
        runtime.error = Some(message.clone());
        if retryable && runtime.failures <= policy.attempts {
            let delay = retry_delay_ms(&policy, runtime.failures, jitter_factor);
            let at_ms = now_ms.saturating_add(i64::try_from(delay).unwrap_or(i64::MAX));
            runtime.state = TaskState::RetryScheduled;
            runtime.next_attempt_at_ms = Some(at_ms);
            self.touch(task, now_ms);
            let details = EventDetails {
                next_attempt_at_ms: Some(at_ms),
                ..details
            };
            self.event(EventType::TaskRetryScheduled, details, now_ms);
            actions.push(Action::RetryAt { task, at_ms });
        } else {
            self.event(EventType::TaskFailed, details, now_ms);
            self.finish_task(task, TaskState::Failed, Some(message), now_ms, actions);
        }
    }
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
