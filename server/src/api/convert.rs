//! Conversions between `tributary.v1` messages and domain types. The only
//! place, besides the handlers' signatures, where both worlds meet.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tributary_core::WorkflowDefinition;
use tributary_proto::{timestamp_from_unix_ms, v1 as pb};

use super::error::ApiError;
use crate::dispatch::WaitingReason;
use crate::engine::records::{
    AttemptState, EventRecord, EventType, RunDetail, RunRecord, RunStatus, SkipReason, TaskState,
};
use crate::engine::run::parse_instance_key;
use crate::store::StoredWorkflow;

pub fn workflow_to_proto(workflow: &StoredWorkflow) -> pb::Workflow {
    pb::Workflow {
        definition: Some(pb::WorkflowDefinition::from(&WorkflowDefinition::from(
            &workflow.spec,
        ))),
        version: workflow.version.clone(),
        sequence: workflow.sequence,
        created_at: Some(timestamp_from_unix_ms(workflow.created_at_ms)),
        latest: workflow.latest,
    }
}

/// Page tokens are opaque to clients: the last key of the previous page,
/// base64-encoded so nobody mistakes them for a name to edit.
pub fn encode_page_token(last_key: &str) -> String {
    URL_SAFE_NO_PAD.encode(last_key)
}

pub fn decode_page_token(token: &str) -> Result<Option<String>, ApiError> {
    if token.is_empty() {
        return Ok(None);
    }
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|decoded| !decoded.contains('\0'))
        .map(Some)
        .ok_or_else(|| {
            ApiError::InvalidArgument(format!(
                "invalid page_token {}",
                tributary_core::shown(token)
            ))
        })
}

/// Page size: 0 means 100; above 1000 means 1000.
pub fn page_size(requested: u32) -> u32 {
    match requested {
        0 => 100,
        n => n.min(1000),
    }
}

pub fn run_status_to_proto(status: RunStatus) -> pb::RunStatus {
    match status {
        RunStatus::Queued => pb::RunStatus::Queued,
        RunStatus::Pending => pb::RunStatus::Pending,
        RunStatus::Running => pb::RunStatus::Running,
        RunStatus::Succeeded => pb::RunStatus::Succeeded,
        RunStatus::Failed => pb::RunStatus::Failed,
        RunStatus::Cancelled => pb::RunStatus::Cancelled,
    }
}

/// `None` for UNSPECIFIED (no filter); an error for numbers no enum value has.
pub fn run_status_from_proto(value: i32) -> Result<Option<RunStatus>, ApiError> {
    match pb::RunStatus::try_from(value) {
        Ok(pb::RunStatus::Unspecified) => Ok(None),
        Ok(pb::RunStatus::Queued) => Ok(Some(RunStatus::Queued)),
        Ok(pb::RunStatus::Pending) => Ok(Some(RunStatus::Pending)),
        Ok(pb::RunStatus::Running) => Ok(Some(RunStatus::Running)),
        Ok(pb::RunStatus::Succeeded) => Ok(Some(RunStatus::Succeeded)),
        Ok(pb::RunStatus::Failed) => Ok(Some(RunStatus::Failed)),
        Ok(pb::RunStatus::Cancelled) => Ok(Some(RunStatus::Cancelled)),
        Err(_) => Err(ApiError::InvalidArgument(format!(
            "unknown run status {value}"
        ))),
    }
}

fn task_state_to_proto(state: TaskState) -> pb::TaskState {
    match state {
        TaskState::Waiting => pb::TaskState::Waiting,
        TaskState::Ready => pb::TaskState::Ready,
        TaskState::Assigned => pb::TaskState::Assigned,
        TaskState::Running => pb::TaskState::Running,
        TaskState::Succeeded => pb::TaskState::Succeeded,
        TaskState::Failed => pb::TaskState::Failed,
        TaskState::Skipped => pb::TaskState::Skipped,
        TaskState::Cancelled => pb::TaskState::Cancelled,
        TaskState::RetryScheduled => pb::TaskState::RetryScheduled,
    }
}

fn skip_reason_to_proto(reason: Option<SkipReason>) -> pb::SkipReason {
    match reason {
        None => pb::SkipReason::Unspecified,
        Some(SkipReason::UpstreamFailed) => pb::SkipReason::UpstreamFailed,
        Some(SkipReason::RuleNotMet) => pb::SkipReason::RuleNotMet,
    }
}

fn attempt_state_to_proto(state: AttemptState) -> pb::AttemptState {
    match state {
        AttemptState::Assigned => pb::AttemptState::Assigned,
        AttemptState::Running => pb::AttemptState::Running,
        AttemptState::Succeeded => pb::AttemptState::Succeeded,
        AttemptState::Failed => pb::AttemptState::Failed,
        AttemptState::TimedOut => pb::AttemptState::TimedOut,
        AttemptState::Lost => pb::AttemptState::Lost,
        AttemptState::Cancelled => pb::AttemptState::Cancelled,
    }
}

/// A run without its tasks, as `ListRuns` shows it.
pub fn run_summary_to_proto(run: &RunRecord) -> pb::Run {
    pb::Run {
        id: run.id.clone(),
        workflow_name: run.workflow_name.clone(),
        workflow_version: run.workflow_version.clone(),
        status: run_status_to_proto(run.status) as i32,
        input_context_json: run.input_context_json.clone(),
        context_json: run.final_context_json.clone().unwrap_or_default(),
        idempotency_key: run.idempotency_key.clone().unwrap_or_default(),
        created_at: Some(timestamp_from_unix_ms(run.created_at_ms)),
        finished_at: run.finished_at_ms.map(timestamp_from_unix_ms),
        tasks: Vec::new(),
        conflicts: Vec::new(),
        retry_count: run.retry_count,
        concurrency_key: run.concurrency_key.clone().unwrap_or_default(),
        queue_position: run.queue_position.unwrap_or_default(),
        contexts_omitted: false,
        input_context_bytes: 0,
        context_bytes: 0,
    }
}

/// Fits a run into what remains of an answer's `budget` of bytes: its
/// contexts' sizes are stated, and the contexts themselves are left out
/// (`contexts_omitted`) when the run with them would not fit. Takes the
/// run's size from the budget.
pub fn fit_run_contexts(run: &mut pb::Run, budget: &mut usize) {
    use prost::Message;
    run.input_context_bytes = run.input_context_json.len() as u64;
    run.context_bytes = run.context_json.len() as u64;
    if run.encoded_len() > *budget {
        omit_run_contexts(run);
    }
    // A field's tag and length take a few bytes more inside a list.
    *budget = budget.saturating_sub(run.encoded_len() + 16);
}

/// Leaves out the run's input and context, keeping their sizes.
pub fn omit_run_contexts(run: &mut pb::Run) {
    run.input_context_bytes = run.input_context_json.len() as u64;
    run.context_bytes = run.context_json.len() as u64;
    run.input_context_json = String::new();
    run.context_json = String::new();
    run.contexts_omitted = true;
}

/// A run with its tasks, attempts and conflicts; `context_json` is the
/// run's current context.
pub fn run_detail_to_proto(detail: &RunDetail, context_json: String) -> pb::Run {
    let mut attempts_by_task: std::collections::HashMap<&str, Vec<pb::Attempt>> =
        std::collections::HashMap::new();
    for attempt in &detail.attempts {
        attempts_by_task
            .entry(attempt.task_id.as_str())
            .or_default()
            .push(pb::Attempt {
                id: attempt.id.clone(),
                number: attempt.number,
                executor_id: attempt.executor_id.clone(),
                state: attempt_state_to_proto(attempt.state) as i32,
                error: attempt.error.clone().unwrap_or_default(),
                assigned_at: Some(timestamp_from_unix_ms(attempt.assigned_at_ms)),
                started_at: attempt.started_at_ms.map(timestamp_from_unix_ms),
                finished_at: attempt.finished_at_ms.map(timestamp_from_unix_ms),
            });
    }
    let mut run = run_summary_to_proto(&detail.run);
    run.context_json = context_json;
    let rows: Vec<pb::TaskRun> = detail
        .tasks
        .iter()
        .map(|task| {
            let mut attempts = attempts_by_task
                .remove(task.task_id.as_str())
                .unwrap_or_default();
            attempts.sort_by_key(|attempt| attempt.number);
            pb::TaskRun {
                task_id: task.task_id.clone(),
                state: task_state_to_proto(task.state) as i32,
                skip_reason: skip_reason_to_proto(task.skip_reason) as i32,
                error: task.error.clone().unwrap_or_default(),
                next_attempt_at: task.next_attempt_at_ms.map(timestamp_from_unix_ms),
                attempts,
                waiting_reason: pb::WaitingReason::Unspecified as i32,
                waiting_message: String::new(),
                map_index: task.map_index,
                map_size: task.map_size.unwrap_or_default(),
                instances: Vec::new(),
                instance_counts: Vec::new(),
            }
        })
        .collect();
    run.tasks = nest_instances(rows);
    run.conflicts = detail
        .conflicts
        .iter()
        .map(|conflict| pb::ContextConflict {
            key: conflict.key.clone(),
            winning_task_id: conflict.winning_task_id.clone(),
            overridden_task_id: conflict.overridden_task_id.clone(),
        })
        .collect();
    run
}

/// Puts each instance row (stored as `<task id>[<index>]`, right after its
/// mapped task, in element order) under its task, named by the task's id.
fn nest_instances(rows: Vec<pb::TaskRun>) -> Vec<pb::TaskRun> {
    let mut tasks: Vec<pb::TaskRun> = Vec::with_capacity(rows.len());
    for mut row in rows {
        let parent = parse_instance_key(&row.task_id).map(|(task_id, _)| task_id.to_owned());
        match (parent, tasks.last_mut()) {
            (Some(parent), Some(task)) if task.task_id == parent => {
                row.task_id = parent;
                task.instances.push(row);
            }
            _ => tasks.push(row),
        }
    }
    tasks
}

/// A READY task's waiting reason on the wire.
pub fn waiting_reason_to_proto(reason: WaitingReason) -> pb::WaitingReason {
    match reason {
        WaitingReason::NoExecutor => pb::WaitingReason::NoExecutor,
        WaitingReason::AllSlotsBusy => pb::WaitingReason::AllSlotsBusy,
        WaitingReason::ExecutorsDraining => pb::WaitingReason::ExecutorsDraining,
        WaitingReason::NoMatchingLabels => pb::WaitingReason::NoMatchingLabels,
        WaitingReason::HandlerLimit => pb::WaitingReason::HandlerLimit,
    }
}

fn event_type_to_proto(event_type: EventType) -> pb::RunEventType {
    match event_type {
        EventType::RunStarted => pb::RunEventType::RunStarted,
        EventType::RunFinished => pb::RunEventType::RunFinished,
        EventType::TaskReady => pb::RunEventType::TaskReady,
        EventType::TaskAssigned => pb::RunEventType::TaskAssigned,
        EventType::TaskStarted => pb::RunEventType::TaskStarted,
        EventType::TaskSucceeded => pb::RunEventType::TaskSucceeded,
        EventType::TaskFailed => pb::RunEventType::TaskFailed,
        EventType::TaskRetryScheduled => pb::RunEventType::TaskRetryScheduled,
        EventType::TaskTimedOut => pb::RunEventType::TaskTimedOut,
        EventType::TaskSkipped => pb::RunEventType::TaskSkipped,
        EventType::TaskCancelled => pb::RunEventType::TaskCancelled,
        EventType::ContextConflict => pb::RunEventType::ContextConflict,
        EventType::ExecutorConnected => pb::RunEventType::ExecutorConnected,
        EventType::ExecutorLost => pb::RunEventType::ExecutorLost,
        EventType::RunRetried => pb::RunEventType::RunRetried,
        EventType::RunQueued => pb::RunEventType::RunQueued,
        EventType::TaskMapped => pb::RunEventType::TaskMapped,
    }
}

/// An event type named in a filter; UNSPECIFIED and unknown numbers are
/// errors, since they would silently match nothing.
pub fn event_type_from_proto(value: i32) -> Result<EventType, ApiError> {
    let event_type = match pb::RunEventType::try_from(value) {
        Ok(pb::RunEventType::RunStarted) => EventType::RunStarted,
        Ok(pb::RunEventType::RunFinished) => EventType::RunFinished,
        Ok(pb::RunEventType::TaskReady) => EventType::TaskReady,
        Ok(pb::RunEventType::TaskAssigned) => EventType::TaskAssigned,
        Ok(pb::RunEventType::TaskStarted) => EventType::TaskStarted,
        Ok(pb::RunEventType::TaskSucceeded) => EventType::TaskSucceeded,
        Ok(pb::RunEventType::TaskFailed) => EventType::TaskFailed,
        Ok(pb::RunEventType::TaskRetryScheduled) => EventType::TaskRetryScheduled,
        Ok(pb::RunEventType::TaskTimedOut) => EventType::TaskTimedOut,
        Ok(pb::RunEventType::TaskSkipped) => EventType::TaskSkipped,
        Ok(pb::RunEventType::TaskCancelled) => EventType::TaskCancelled,
        Ok(pb::RunEventType::ContextConflict) => EventType::ContextConflict,
        Ok(pb::RunEventType::ExecutorConnected) => EventType::ExecutorConnected,
        Ok(pb::RunEventType::ExecutorLost) => EventType::ExecutorLost,
        Ok(pb::RunEventType::RunRetried) => EventType::RunRetried,
        Ok(pb::RunEventType::RunQueued) => EventType::RunQueued,
        Ok(pb::RunEventType::TaskMapped) => EventType::TaskMapped,
        Ok(pb::RunEventType::Unspecified) => {
            return Err(ApiError::InvalidArgument(
                "types contains RUN_EVENT_TYPE_UNSPECIFIED".to_owned(),
            ));
        }
        Err(_) => {
            return Err(ApiError::InvalidArgument(format!(
                "types contains unknown event type {value}"
            )));
        }
    };
    Ok(event_type)
}

/// The wire form of an event: the fields its type does not set stay at
/// their zero values (see `RunEvent` in run.proto).
pub fn event_to_proto(event: &EventRecord) -> pb::RunEvent {
    let details = &event.details;
    let conflict = details
        .conflict_key
        .as_ref()
        .map(|key| pb::ContextConflict {
            key: key.clone(),
            winning_task_id: details.conflict_winning_task_id.clone().unwrap_or_default(),
            overridden_task_id: details
                .conflict_overridden_task_id
                .clone()
                .unwrap_or_default(),
        });
    pb::RunEvent {
        cursor: event.cursor,
        sequence: event.sequence,
        run_id: event.run_id.clone(),
        workflow_name: event.workflow_name.clone(),
        r#type: event_type_to_proto(event.event_type) as i32,
        time: Some(timestamp_from_unix_ms(event.created_at_ms)),
        task_id: details.task_id.clone().unwrap_or_default(),
        attempt_id: details.attempt_id.clone().unwrap_or_default(),
        attempt_number: details.attempt_number.unwrap_or_default(),
        executor_id: details.executor_id.clone().unwrap_or_default(),
        error: details.error.clone().unwrap_or_default(),
        skip_reason: skip_reason_to_proto(details.skip_reason) as i32,
        next_attempt_at: details.next_attempt_at_ms.map(timestamp_from_unix_ms),
        run_status: details
            .run_status
            .map_or(pb::RunStatus::Unspecified, run_status_to_proto) as i32,
        conflict,
        retried_task_ids: details.retried_task_ids.clone().unwrap_or_default(),
        concurrency_key: details.concurrency_key.clone().unwrap_or_default(),
        queue_position: details.queue_position.unwrap_or_default(),
        map_index: details.map_index,
        map_size: details.map_size.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_reject_garbage() {
        let token = encode_page_token("workflow-7");
        assert_eq!(
            decode_page_token(&token).expect("decodes").as_deref(),
            Some("workflow-7")
        );
        assert_eq!(decode_page_token("").expect("empty is first page"), None);
        assert!(decode_page_token("!!!").is_err());
    }

    #[test]
    fn every_event_type_round_trips_and_unspecified_is_refused() {
        let all = [
            EventType::RunStarted,
            EventType::RunFinished,
            EventType::TaskReady,
            EventType::TaskAssigned,
            EventType::TaskStarted,
            EventType::TaskSucceeded,
            EventType::TaskFailed,
            EventType::TaskRetryScheduled,
            EventType::TaskTimedOut,
            EventType::TaskSkipped,
            EventType::TaskCancelled,
            EventType::ContextConflict,
            EventType::ExecutorConnected,
            EventType::ExecutorLost,
            EventType::RunRetried,
        ];
        for event_type in all {
            let wire = event_type_to_proto(event_type) as i32;
            assert_eq!(event_type_from_proto(wire).expect("known type"), event_type);
        }
        assert!(event_type_from_proto(0).is_err());
        assert!(event_type_from_proto(999).is_err());
    }

    #[test]
    fn events_carry_their_details_and_leave_the_rest_at_zero() {
        use crate::engine::records::EventDetails;
        let event = EventRecord {
            cursor: 42,
            namespace: "default".into(),
            run_id: "r".into(),
            workflow_name: "w".into(),
            sequence: 7,
            event_type: EventType::ContextConflict,
            details: EventDetails {
                task_id: Some("b".into()),
                conflict_key: Some("k".into()),
                conflict_winning_task_id: Some("c".into()),
                conflict_overridden_task_id: Some("b".into()),
                ..EventDetails::default()
            },
            created_at_ms: 1_500,
        };
        let wire = event_to_proto(&event);
        assert_eq!((wire.cursor, wire.sequence), (42, 7));
        assert_eq!(wire.r#type(), pb::RunEventType::ContextConflict);
        assert_eq!(wire.time, Some(timestamp_from_unix_ms(1_500)));
        assert_eq!(wire.task_id, "b");
        let conflict = wire.conflict.clone().expect("conflict");
        assert_eq!(
            (conflict.key.as_str(), conflict.winning_task_id.as_str()),
            ("k", "c")
        );
        assert_eq!(wire.run_status(), pb::RunStatus::Unspecified);
        assert_eq!(wire.skip_reason(), pb::SkipReason::Unspecified);
        assert!(wire.attempt_id.is_empty() && wire.next_attempt_at.is_none());
    }

    #[test]
    fn page_size_defaults_and_caps() {
        assert_eq!(page_size(0), 100);
        assert_eq!(page_size(7), 7);
        assert_eq!(page_size(5000), 1000);
    }
}
