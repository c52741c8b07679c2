//! Following a run as it happens: [`Client::watch`] streams its events,
//! typed, from the server's `WatchRun`.

use std::pin::Pin;

use tokio_stream::{Stream, StreamExt};
use tributary_proto::v1 as pb;

use crate::client::Client;
use crate::error::Error;
use crate::runs::{RunStatus, SkipReason};

/// What happened in a [`RunEvent`] (`tributary.v1.RunEventType`; see its
/// documentation for which fields each kind sets).
///
/// ```
/// assert_ne!(tributary::RunEventKind::TaskReady, tributary::RunEventKind::TaskAssigned);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunEventKind {
    /// The run was created.
    RunStarted,
    /// The run became terminal; [`RunEvent::run_status`] says how.
    RunFinished,
    /// A task became runnable.
    TaskReady,
    /// An attempt was sent to an executor.
    TaskAssigned,
    /// The executor reported the attempt started.
    TaskStarted,
    /// The task succeeded.
    TaskSucceeded,
    /// The task failed for good.
    TaskFailed,
    /// An attempt failed and another is due at [`RunEvent::next_attempt_at_unix_ms`].
    TaskRetryScheduled,
    /// An attempt passed its deadline.
    TaskTimedOut,
    /// The task was skipped by its trigger rule.
    TaskSkipped,
    /// The task was cancelled with its run.
    TaskCancelled,
    /// Two unordered tasks wrote the same context key.
    ContextConflict,
    /// An executor reclaimed an attempt after a server restart.
    ExecutorConnected,
    /// The executor holding an attempt went away.
    ExecutorLost,
    /// [`Client::retry_run`] reopened the finished run;
    /// [`RunEvent::retried_task_ids`] lists the tasks reset.
    RunRetried,
    /// The run was created QUEUED behind the active runs of its
    /// concurrency key; [`RunEventKind::RunStarted`] follows when it leaves
    /// the queue.
    RunQueued,
    /// A mapped task was expanded into [`RunEvent::map_size`] instances,
    /// one per element of its array.
    TaskMapped,
}

impl RunEventKind {
    fn from_proto(kind: pb::RunEventType) -> Result<RunEventKind, Error> {
        Ok(match kind {
            pb::RunEventType::RunStarted => RunEventKind::RunStarted,
            pb::RunEventType::RunFinished => RunEventKind::RunFinished,
            pb::RunEventType::TaskReady => RunEventKind::TaskReady,
            pb::RunEventType::TaskAssigned => RunEventKind::TaskAssigned,
            pb::RunEventType::TaskStarted => RunEventKind::TaskStarted,
            pb::RunEventType::TaskSucceeded => RunEventKind::TaskSucceeded,
            pb::RunEventType::TaskFailed => RunEventKind::TaskFailed,
            pb::RunEventType::TaskRetryScheduled => RunEventKind::TaskRetryScheduled,
            pb::RunEventType::TaskTimedOut => RunEventKind::TaskTimedOut,
            pb::RunEventType::TaskSkipped => RunEventKind::TaskSkipped,
            pb::RunEventType::TaskCancelled => RunEventKind::TaskCancelled,
            pb::RunEventType::ContextConflict => RunEventKind::ContextConflict,
            pb::RunEventType::ExecutorConnected => RunEventKind::ExecutorConnected,
            pb::RunEventType::ExecutorLost => RunEventKind::ExecutorLost,
            pb::RunEventType::RunRetried => RunEventKind::RunRetried,
            pb::RunEventType::RunQueued => RunEventKind::RunQueued,
            pb::RunEventType::TaskMapped => RunEventKind::TaskMapped,
            pb::RunEventType::Unspecified => {
                return Err(Error::Protocol("run event type UNSPECIFIED".to_owned()));
            }
        })
    }
}

/// One event of a run's log. Fields a kind does not set are empty, zero or
/// `None`.
///
/// ```no_run
/// # fn f(event: &tributary::RunEvent) {
/// println!("#{} {:?} {}", event.sequence, event.kind, event.task_id);
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEvent {
    /// Global position in the server's event log.
    pub cursor: u64,
    /// Position within the run's events: 1, 2, 3, ... with no gap.
    pub sequence: u64,
    /// The run's id.
    pub run_id: String,
    /// The run's workflow.
    pub workflow_name: String,
    /// What happened.
    pub kind: RunEventKind,
    /// When the server recorded it, in Unix milliseconds.
    pub time_unix_ms: i64,
    /// The task concerned, for task events.
    pub task_id: String,
    /// The attempt concerned, if any.
    pub attempt_id: String,
    /// The attempt's number (1 for the first), or 0.
    pub attempt_number: u32,
    /// The executor of the attempt, or the reconnected/lost executor.
    pub executor_id: String,
    /// The failure message, for failures, timeouts and lost executors.
    pub error: String,
    /// Why the task was skipped, for [`RunEventKind::TaskSkipped`].
    pub skip_reason: Option<SkipReason>,
    /// When the retry is due, for [`RunEventKind::TaskRetryScheduled`].
    pub next_attempt_at_unix_ms: Option<i64>,
    /// The final status, for [`RunEventKind::RunFinished`].
    pub run_status: Option<RunStatus>,
    /// The key two tasks both wrote, for [`RunEventKind::ContextConflict`].
    pub conflict_key: Option<String>,
    /// The tasks reset, for [`RunEventKind::RunRetried`], in canonical
    /// order.
    pub retried_task_ids: Vec<String>,
    /// The run's concurrency key, for [`RunEventKind::RunQueued`].
    pub concurrency_key: String,
    /// The run's position in its key's queue when it was queued, for
    /// [`RunEventKind::RunQueued`]; 0 otherwise.
    pub queue_position: u32,
    /// For an event about an instance of a mapped task (`task_id` is the
    /// mapped task's): the instance's element index.
    pub map_index: Option<u32>,
    /// The number of instances, for [`RunEventKind::TaskMapped`]; 0
    /// otherwise.
    pub map_size: u32,
}

impl RunEvent {
    fn from_proto(event: pb::RunEvent) -> Result<RunEvent, Error> {
        let kind = RunEventKind::from_proto(event.r#type())?;
        let skip_reason = SkipReason::from_proto(event.skip_reason());
        let run_status = match event.run_status() {
            pb::RunStatus::Unspecified => None,
            status => Some(RunStatus::from_proto(status)?),
        };
        Ok(RunEvent {
            cursor: event.cursor,
            sequence: event.sequence,
            kind,
            time_unix_ms: event
                .time
                .as_ref()
                .map_or(0, tributary_proto::unix_ms_from_timestamp),
            next_attempt_at_unix_ms: event
                .next_attempt_at
                .as_ref()
                .map(tributary_proto::unix_ms_from_timestamp),
            skip_reason,
            run_status,
            conflict_key: event.conflict.map(|conflict| conflict.key),
            run_id: event.run_id,
            workflow_name: event.workflow_name,
            task_id: event.task_id,
            attempt_id: event.attempt_id,
            attempt_number: event.attempt_number,
            executor_id: event.executor_id,
            error: event.error,
            retried_task_ids: event.retried_task_ids,
            concurrency_key: event.concurrency_key,
            queue_position: event.queue_position,
            map_index: event.map_index,
            map_size: event.map_size,
        })
    }
}

/// The events of one run, in order; see [`Client::watch`].
///
/// ```no_run
/// # async fn f(client: tributary::Client, run_id: &str) -> Result<(), tributary::Error> {
/// use tokio_stream::StreamExt;
/// let events: tributary::RunEvents = client.watch(run_id, 0).await?;
/// let finished = events
///     .filter_map(Result::ok)
///     .filter(|event| event.kind == tributary::RunEventKind::TaskSucceeded)
///     .fold(0, |count, _| count + 1)
///     .await;
/// println!("{finished} tasks succeeded");
/// # Ok(()) }
/// ```
pub type RunEvents = Pin<Box<dyn Stream<Item = Result<RunEvent, Error>> + Send>>;

impl Client {
    /// Streams the events of a run: first those already recorded (after
    /// `after_sequence`; 0 replays all), then live ones as they commit. The
    /// stream ends after the [`RunEventKind::RunFinished`] that ends the
    /// log (a retried run has earlier ones, each followed by
    /// [`RunEventKind::RunRetried`]).
    ///
    /// ```no_run
    /// # async fn f(client: tributary::Client, run_id: &str) -> Result<(), tributary::Error> {
    /// use tokio_stream::StreamExt;
    /// let mut events = client.watch(run_id, 0).await?;
    /// while let Some(event) = events.next().await {
    ///     let event = event?;
    ///     println!("{:?} {}", event.kind, event.task_id);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn watch(&self, run_id: &str, after_sequence: u64) -> Result<RunEvents, Error> {
        let responses = self
            .runs()
            .watch_run(pb::WatchRunRequest {
                run_id: run_id.to_owned(),
                after_sequence,
            })
            .await?
            .into_inner();
        let events = responses.map(|response| {
            let event = response?
                .event
                .ok_or_else(|| Error::Protocol("WatchRun sent no event".to_owned()))?;
            RunEvent::from_proto(event)
        });
        Ok(Box::pin(events))
    }
}

/// Whether an error while following a run is worth reopening the stream for
/// (the server restarted or the connection dropped), rather than final.
pub(crate) fn is_transient(error: &Error) -> bool {
    match error {
        Error::Transport(_) => true,
        Error::Status(status) => matches!(
            status.code(),
            tonic::Code::Unavailable
                | tonic::Code::Unknown
                | tonic::Code::Cancelled
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Aborted
                | tonic::Code::Internal
        ),
        _ => false,
    }
}
