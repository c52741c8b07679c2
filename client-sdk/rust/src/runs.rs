//! A run as a client reads it: its status, its tasks with their attempts
//! (and a mapped task's instances), and its context, converted from the
//! protocol's messages.

use std::collections::HashMap;

use serde_json::Value;
use tributary_proto::v1 as pb;

use crate::error::Error;

/// The status of a run.
///
/// ```
/// assert!(tributary::RunStatus::Succeeded.is_terminal());
/// assert!(!tributary::RunStatus::Running.is_terminal());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    /// Waiting for a slot of its concurrency key.
    Queued,
    /// Created; no attempt assigned yet.
    Pending,
    /// At least one attempt has been assigned.
    Running,
    /// Every task finished and none failed.
    Succeeded,
    /// At least one task failed.
    Failed,
    /// Cancelled by `CancelRun`.
    Cancelled,
}

impl RunStatus {
    /// Whether the run is over.
    ///
    /// ```
    /// assert!(tributary::RunStatus::Cancelled.is_terminal());
    /// ```
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled
        )
    }

    pub(crate) fn from_proto(status: pb::RunStatus) -> Result<RunStatus, Error> {
        Ok(match status {
            pb::RunStatus::Queued => RunStatus::Queued,
            pb::RunStatus::Pending => RunStatus::Pending,
            pb::RunStatus::Running => RunStatus::Running,
            pb::RunStatus::Succeeded => RunStatus::Succeeded,
            pb::RunStatus::Failed => RunStatus::Failed,
            pb::RunStatus::Cancelled => RunStatus::Cancelled,
            pb::RunStatus::Unspecified => {
                return Err(Error::Protocol("run status UNSPECIFIED".to_owned()));
            }
        })
    }

    pub(crate) fn to_proto(self) -> pb::RunStatus {
        match self {
            RunStatus::Queued => pb::RunStatus::Queued,
            RunStatus::Pending => pb::RunStatus::Pending,
            RunStatus::Running => pb::RunStatus::Running,
            RunStatus::Succeeded => pb::RunStatus::Succeeded,
            RunStatus::Failed => pb::RunStatus::Failed,
            RunStatus::Cancelled => pb::RunStatus::Cancelled,
        }
    }
}

/// The state of a task within a run.
///
/// ```
/// assert_ne!(tributary::TaskState::Succeeded, tributary::TaskState::Failed);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskState {
    /// Some dependency is not terminal yet.
    Waiting,
    /// Runnable, waiting for an executor.
    Ready,
    /// Sent to an executor.
    Assigned,
    /// Reported started.
    Running,
    /// Succeeded; its delta is part of the run's context.
    Succeeded,
    /// Failed for good.
    Failed,
    /// Skipped by its trigger rule; see [`TaskOutcome::skip_reason`].
    Skipped,
    /// Cancelled with its run.
    Cancelled,
    /// Failed; another attempt is due.
    RetryScheduled,
}

impl TaskState {
    fn from_proto(state: pb::TaskState) -> Result<TaskState, Error> {
        Ok(match state {
            pb::TaskState::Waiting => TaskState::Waiting,
            pb::TaskState::Ready => TaskState::Ready,
            pb::TaskState::Assigned => TaskState::Assigned,
            pb::TaskState::Running => TaskState::Running,
            pb::TaskState::Succeeded => TaskState::Succeeded,
            pb::TaskState::Failed => TaskState::Failed,
            pb::TaskState::Skipped => TaskState::Skipped,
            pb::TaskState::Cancelled => TaskState::Cancelled,
            pb::TaskState::RetryScheduled => TaskState::RetryScheduled,
            pb::TaskState::Unspecified => {
                return Err(Error::Protocol("task state UNSPECIFIED".to_owned()));
            }
        })
    }
}

/// Why a task was skipped.
///
/// ```
/// let reason = tributary::SkipReason::UpstreamFailed;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// A dependency counts as failed.
    UpstreamFailed,
    /// The trigger rule was false and no dependency failed.
    RuleNotMet,
}

impl SkipReason {
    pub(crate) fn from_proto(reason: pb::SkipReason) -> Option<SkipReason> {
        match reason {
            pb::SkipReason::Unspecified => None,
            pb::SkipReason::UpstreamFailed => Some(SkipReason::UpstreamFailed),
            pb::SkipReason::RuleNotMet => Some(SkipReason::RuleNotMet),
        }
    }
}

/// One attempt of a task.
///
/// ```no_run
/// # fn f(task: &tributary::TaskOutcome) {
/// for attempt in &task.attempts { println!("#{}: {}", attempt.number, attempt.error); }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptInfo {
    /// The attempt's id.
    pub id: String,
    /// 1 for the first attempt.
    pub number: u32,
    /// The executor it was assigned to.
    pub executor_id: String,
    /// Its outcome, as the proto enum's name (`ATTEMPT_STATE_SUCCEEDED`, ...).
    pub state: String,
    /// Its failure message, if any.
    pub error: String,
}

/// What happened to one task of a run.
///
/// ```no_run
/// # fn f(run: &tributary::Run) {
/// let task = run.task("combine_results").unwrap();
/// println!("{:?} after {} attempts", task.state, task.attempts.len());
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskOutcome {
    /// The task's id.
    pub task_id: String,
    /// Its state.
    pub state: TaskState,
    /// Set when skipped.
    pub skip_reason: Option<SkipReason>,
    /// The error of the last failed attempt, or empty.
    pub error: String,
    /// Every attempt, oldest first.
    pub attempts: Vec<AttemptInfo>,
    /// For an instance of a mapped task (an entry of its
    /// [`instances`](TaskOutcome::instances)): its element index.
    pub map_index: Option<u32>,
    /// For a mapped task once expanded: its number of instances (0
    /// otherwise).
    pub map_size: u32,
    /// For a mapped task once expanded: its instances in element order,
    /// each with its own state, error and attempts (`task_id` is the
    /// mapped task's). All of them, or a window: the server lists only as
    /// many as fit in one answer (a map of many thousands does not), and
    /// [`Client::get_run_with`](crate::Client::get_run_with) asks for
    /// others; each entry's `map_index` says which it is.
    pub instances: Vec<TaskOutcome>,
    /// For a mapped task once expanded: how many of all its instances,
    /// listed or not, are in each state.
    pub instance_counts: HashMap<TaskState, u32>,
}

/// A run with its tasks and context.
///
/// ```no_run
/// # async fn f(client: tributary::Client, run_id: &str) -> Result<(), tributary::Error> {
/// let run = client.wait(run_id).await?;
/// if run.status == tributary::RunStatus::Succeeded {
///     println!("{}", run.context["total"]);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// The run's id.
    pub id: String,
    /// The workflow's name.
    pub workflow_name: String,
    /// The workflow version the run is pinned to.
    pub workflow_version: String,
    /// The run's status.
    pub status: RunStatus,
    /// The input context.
    pub input: Value,
    /// The run's context (final once the run is terminal).
    pub context: Value,
    /// The idempotency key, if any.
    pub idempotency_key: String,
    /// Every task, in canonical order (empty in [`Client::list_runs`]).
    pub tasks: Vec<TaskOutcome>,
    /// How many times [`Client::retry_run`] re-ran the run.
    pub retry_count: u32,
    /// The run's concurrency key; empty when its workflow has no
    /// concurrency policy.
    pub concurrency_key: String,
    /// While [`RunStatus::Queued`], its position in its key's queue (1
    /// starts next); 0 otherwise.
    pub queue_position: u32,
}

impl TaskOutcome {
    fn from_proto(task: pb::TaskRun) -> Result<TaskOutcome, Error> {
        let state = TaskState::from_proto(task.state())?;
        let skip_reason = SkipReason::from_proto(task.skip_reason());
        let instance_counts = task
            .instance_counts
            .iter()
            .map(|count| Ok((TaskState::from_proto(count.state())?, count.count)))
            .collect::<Result<_, Error>>()?;
        Ok(TaskOutcome {
            state,
            skip_reason,
            map_index: task.map_index,
            map_size: task.map_size,
            instance_counts,
            instances: task
                .instances
                .into_iter()
                .map(TaskOutcome::from_proto)
                .collect::<Result<_, _>>()?,
            task_id: task.task_id,
            error: task.error,
            attempts: task
                .attempts
                .into_iter()
                .map(|attempt| AttemptInfo {
                    state: attempt.state().as_str_name().to_owned(),
                    id: attempt.id,
                    number: attempt.number,
                    executor_id: attempt.executor_id,
                    error: attempt.error,
                })
                .collect(),
        })
    }
}

impl Run {
    /// The task with id `task_id`.
    ///
    /// ```no_run
    /// # fn f(run: &tributary::Run) {
    /// assert!(run.task("extract").is_some());
    /// # }
    /// ```
    pub fn task(&self, task_id: &str) -> Option<&TaskOutcome> {
        self.tasks.iter().find(|task| task.task_id == task_id)
    }

    pub(crate) fn from_proto(run: pb::Run) -> Result<Run, Error> {
        let status = RunStatus::from_proto(run.status())?;
        let tasks = run
            .tasks
            .into_iter()
            .map(TaskOutcome::from_proto)
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Run {
            id: run.id,
            workflow_name: run.workflow_name,
            workflow_version: run.workflow_version,
            status,
            input: parse_json(&run.input_context_json)?,
            context: parse_json(&run.context_json)?,
            idempotency_key: run.idempotency_key,
            tasks,
            retry_count: run.retry_count,
            concurrency_key: run.concurrency_key,
            queue_position: run.queue_position,
        })
    }
}

fn parse_json(text: &str) -> Result<Value, Error> {
    if text.is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    Ok(serde_json::from_str(text)?)
}
