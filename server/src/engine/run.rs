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
//! Rebuilding a run after a restart is in `run/restore.rs`; ending a run
//! early (cancel, abort) in `run/ending.rs`; re-running a finished one in
//! `run/rerun.rs`.

mod ending;
mod map;
mod rerun;
mod restore;
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

    /// Takes the changes recorded since the last call.
    pub fn take_changes(&mut self) -> RunChanges {
        let pending = std::mem::take(&mut self.pending);
        let new_attempts: Vec<AttemptRecord> = pending
            .new_attempts
            .iter()
            .filter_map(|id| self.attempts.get(id).cloned())
            .collect();
        let new_ids: BTreeSet<&String> = pending.new_attempts.iter().collect();
        let updated_ids: BTreeSet<&String> = pending
            .updated_attempts
            .iter()
            .filter(|id| !new_ids.contains(id))
            .collect();
        let attempt_updates = updated_ids
            .into_iter()
            .filter_map(|id| self.attempts.get(id))
            .map(|attempt| AttemptUpdate {
                id: attempt.id.clone(),
                state: attempt.state,
                error: attempt.error.clone(),
                started_at_ms: attempt.started_at_ms,
                finished_at_ms: attempt.finished_at_ms,
            })
            .collect();
        RunChanges {
            run_id: self.id.clone(),
            namespace: self.namespace.clone(),
            workflow_name: self.plan.workflow_name.clone(),
            status: pending.status,
            tasks: pending
                .tasks
                .iter()
                .filter(|task| !pending.new_units.contains(task))
                .map(|&task| self.task_record(task))
                .collect(),
            new_tasks: pending
                .new_units
                .iter()
                .map(|&task| self.task_record(task))
                .collect(),
            new_attempts,
            attempt_updates,
            deltas: pending.deltas,
            conflicts: pending.conflicts,
            events: pending.events,
        }
    }

    /// The run's current context: the input plus every succeeded task's
    /// delta in canonical order.
    pub fn current_context(&self) -> Context {
        let mut deltas: Vec<(TaskIndex, Delta)> = self
            .deltas
            .iter()
            .enumerate()
            .take(self.plan.len())
            .filter_map(|(index, delta)| delta.clone().map(|delta| (index, delta)))
            .collect();
        canonical_context(&self.input, &mut deltas)
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

    fn make_ready(&mut self, task: TaskIndex, now_ms: i64, actions: &mut Vec<Action>) {
        self.tasks[task].state = TaskState::Ready;
        self.tasks[task].next_attempt_at_ms = None;
        self.touch(task, now_ms);
        self.event(EventType::TaskReady, self.task_details(task), now_ms);
        actions.push(self.ready_action(task));
    }

    /// Marks a task terminal, then settles its dependants: every dependant
    /// whose dependencies are now all terminal is made READY or SKIPPED by
    /// its trigger rule (skips cascade). Finishes the run when nothing is
    /// left to do.
    fn finish_task(
        &mut self,
        task: TaskIndex,
        state: TaskState,
        error: Option<String>,
        now_ms: i64,
        actions: &mut Vec<Action>,
    ) {
        self.settle_task(task, state, None, error, now_ms, actions);
    }

    /// [`RunState::finish_task`] with the skip reason of a SKIPPED task.
    fn settle_task(
        &mut self,
        task: TaskIndex,
        state: TaskState,
        skip_reason: Option<SkipReason>,
        error: Option<String>,
        now_ms: i64,
        actions: &mut Vec<Action>,
    ) {
        let mut settled = vec![(task, state, skip_reason, error)];
        while let Some((index, state, skip_reason, error)) = settled.pop() {
            let runtime = &mut self.tasks[index];
            runtime.state = state;
            runtime.skip_reason = skip_reason;
            runtime.next_attempt_at_ms = None;
            if error.is_some() {
                runtime.error = error;
            }
            self.touch(index, now_ms);
            if self.instance_of(index).is_some() {
                // An instance has no dependants: its end may settle its
                // mapped task instead.
                if let Some(settlement) = self.instance_ended(index, now_ms) {
                    settled.push(settlement);
                }
                continue;
            }
            if state != TaskState::Succeeded {
                self.outputs[index] = Some(self.input_of(index));
            }
            if state == TaskState::Skipped {
                let details = EventDetails {
                    skip_reason,
                    ..self.task_details(index)
                };
                self.event(EventType::TaskSkipped, details, now_ms);
            }
            for dependant_position in 0..self.plan.dependants[index].len() {
                let dependant = self.plan.dependants[index][dependant_position];
                if self.tasks[dependant].state != TaskState::Waiting {
                    continue;
                }
                let Some(outcomes) = self.dependency_outcomes(dependant) else {
                    continue;
                };
                match evaluate(self.plan.tasks[dependant].trigger_rule, &outcomes) {
                    TriggerDecision::Run => self.make_ready(dependant, now_ms, actions),
                    TriggerDecision::Skip(reason) => {
                        settled.push((dependant, TaskState::Skipped, Some(reason), None));
                    }
                }
            }
        }
        // From the end: the tasks last in the plan (and instances, appended
        // after it) tend to end last, so an unfinished one is usually found
        // at once rather than after walking every finished task.
        if self.tasks.iter().rev().all(|task| task.state.is_terminal()) {
            // A failed instance fails its mapped task; an instance dropped
            // by a retry no longer counts.
            let failed = self.tasks[..self.plan.len()]
                .iter()
                .any(|task| task.state == TaskState::Failed);
            let status = if failed {
                RunStatus::Failed
            } else {
                RunStatus::Succeeded
            };
            self.finish_run(status, now_ms, actions);
        }
    }

    fn finish_run(&mut self, status: RunStatus, now_ms: i64, actions: &mut Vec<Action>) {
        self.finish_run_with_error(status, None, now_ms, actions);
    }

    /// Ends the run; `error`, when given, is recorded in its RUN_FINISHED
    /// event.
    fn finish_run_with_error(
        &mut self,
        status: RunStatus,
        error: Option<&str>,
        now_ms: i64,
        actions: &mut Vec<Action>,
    ) {
        let final_context = self.current_context().to_json();
        self.set_status(status, None, Some(now_ms), Some(final_context));
        let details = EventDetails {
            run_status: Some(status),
            error: error.map(str::to_owned),
            ..EventDetails::default()
        };
        self.event(EventType::RunFinished, details, now_ms);
        actions.push(Action::Finished(status));
    }

    /// The outcomes of a task's dependencies, or `None` while any is not
    /// terminal.
    fn dependency_outcomes(&self, task: TaskIndex) -> Option<Vec<DependencyOutcome>> {
        // A task after a wide fan-out is looked at as each of its many
        // dependencies ends. Its last-listed dependencies tend to end last,
        // so looking for an unfinished one from the end usually stops at
        // once, and the outcomes are gathered only when all have ended.
        let ended = |dependency: &TaskIndex| {
            matches!(
                self.tasks[*dependency].state,
                TaskState::Succeeded | TaskState::Failed | TaskState::Skipped
            )
        };
        if !self.plan.dependencies[task].iter().rev().all(ended) {
            return None;
        }
        self.plan.dependencies[task]
            .iter()
            .map(|&dependency| {
                let runtime = &self.tasks[dependency];
                match (runtime.state, runtime.skip_reason) {
                    (TaskState::Succeeded, _) => Some(DependencyOutcome::Succeeded),
                    (TaskState::Failed, _)
                    | (TaskState::Skipped, Some(SkipReason::UpstreamFailed)) => {
                        Some(DependencyOutcome::Failed)
                    }
                    (TaskState::Skipped, _) => Some(DependencyOutcome::Skipped),
                    // After a cancellation no rule is evaluated, so a
                    // cancelled dependency never reaches here.
                    _ => None,
                }
            })
            .collect()
    }

    /// The input context of a task: the merge of its dependencies' outputs
    /// (for an instance, see [`RunState::instance_input`]).
    fn input_of(&self, task: TaskIndex) -> Context {
        if task >= self.plan.len() {
            return self.instance_input(task).unwrap_or_default();
        }
        Context::merged(
            &self.input,
            self.plan.dependencies[task]
                .iter()
                .filter_map(|&dependency| self.outputs[dependency].as_ref()),
        )
    }

    fn record_conflicts(&mut self, task: TaskIndex, delta: &Delta, now_ms: i64) {
        let mut found: BTreeMap<(Arc<str>, TaskIndex), ()> = BTreeMap::new();
        for key in delta.keys() {
            let writers = self.writers.entry(key.clone()).or_default();
            for &writer in writers.iter() {
                if !self.plan.is_ancestor(writer, task) && !self.plan.is_ancestor(task, writer) {
                    found.insert((key.clone(), writer), ());
                }
            }
            writers.push(task);
        }
        for (key, other) in found.into_keys() {
            let (winner, overridden) = if other > task {
                (other, task)
            } else {
                (task, other)
            };
            let conflict = ConflictRecord {
                key: key.to_string(),
                winning_task_id: self.plan.tasks[winner].id.clone(),
                overridden_task_id: self.plan.tasks[overridden].id.clone(),
            };
            let details = EventDetails {
                task_id: Some(self.plan.tasks[task].id.clone()),
                conflict_key: Some(conflict.key.clone()),
                conflict_winning_task_id: Some(conflict.winning_task_id.clone()),
                conflict_overridden_task_id: Some(conflict.overridden_task_id.clone()),
                ..EventDetails::default()
            };
            self.event(EventType::ContextConflict, details, now_ms);
            self.pending.conflicts.push(conflict);
        }
    }

    fn set_status(
        &mut self,
        status: RunStatus,
        started_at_ms: Option<i64>,
        finished_at_ms: Option<i64>,
        final_context_json: Option<String>,
    ) {
        self.status = status;
        let previous = self.pending.status.take();
        self.pending.status = Some(RunStatusChange {
            status,
            started_at_ms: started_at_ms.or(previous.as_ref().and_then(|p| p.started_at_ms)),
            finished_at_ms,
            final_context_json,
        });
    }

    fn update_attempt(&mut self, attempt_id: &str, change: impl FnOnce(&mut AttemptRecord)) {
        if let Some(attempt) = self.attempts.get_mut(attempt_id) {
            change(attempt);
            self.pending.updated_attempts.push(attempt_id.to_owned());
        }
    }

    fn touch(&mut self, task: TaskIndex, now_ms: i64) {
        self.tasks[task].updated_at_ms = now_ms;
        self.pending.tasks.insert(task);
    }

    fn event(&mut self, event_type: EventType, details: EventDetails, now_ms: i64) {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.pending.events.push(NewEvent {
            sequence,
            event_type,
            details,
            created_at_ms: now_ms,
        });
    }

    fn task_details(&self, task: TaskIndex) -> EventDetails {
        EventDetails {
            task_id: Some(self.task_id_of(task).to_owned()),
            map_index: self.map_index_of(task),
            ..EventDetails::default()
        }
    }

    fn attempt_details(&self, task: TaskIndex, attempt_id: &str) -> EventDetails {
        let attempt = self.attempts.get(attempt_id);
        EventDetails {
            task_id: Some(self.task_id_of(task).to_owned()),
            map_index: self.map_index_of(task),
            attempt_id: Some(attempt_id.to_owned()),
            attempt_number: attempt.map(|attempt| attempt.number),
            executor_id: attempt.map(|attempt| attempt.executor_id.clone()),
            ..EventDetails::default()
        }
    }

    fn task_record(&self, task: TaskIndex) -> TaskRecord {
        let runtime = &self.tasks[task];
        TaskRecord {
            task_id: self.unit_key(task),
            position: u32::try_from(self.spec_task(task)).unwrap_or(u32::MAX),
            state: runtime.state,
            skip_reason: runtime.skip_reason,
            attempts_started: runtime.attempts_started,
            failures: runtime.failures,
            reassignments: runtime.reassignments,
            current_attempt_id: runtime.current.as_ref().map(|current| current.id.clone()),
            next_attempt_at_ms: runtime.next_attempt_at_ms,
            error: runtime.error.clone(),
            updated_at_ms: runtime.updated_at_ms,
            map_index: self.map_index_of(task),
            map_size: self.map_size_of(task),
        }
    }
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
