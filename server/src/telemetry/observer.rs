//! What the coordinator reports after each commit, from what it committed:
//! the run, task and attempt counters, the run-finished and task-failed log
//! lines, and (when traces are exported) the run and attempt spans.

use std::collections::HashMap;
use std::sync::Arc;

use super::metrics::Metrics;
use super::traces::RunTracer;
use crate::engine::records::{EventRecord, EventType, RunChanges, RunStatus, TaskState};

/// Owned by the coordinator; fed committed events and changes.
pub struct Observer {
    metrics: Arc<Metrics>,
    /// When each active run was created, for its duration (and span).
    run_created_ms: HashMap<String, i64>,
    tracer: Option<RunTracer>,
}

impl Observer {
    pub fn new(metrics: Arc<Metrics>, tracer: Option<RunTracer>) -> Observer {
        Observer {
            metrics,
            run_created_ms: HashMap::new(),
            tracer,
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// A run reloaded after a restart: its duration counts from its
    /// creation.
    pub fn run_recovered(&mut self, run_id: &str, created_at_ms: i64) {
        self.run_created_ms.insert(run_id.to_owned(), created_at_ms);
    }

    /// The attempts a commit ended, counted by outcome. Every attempt's end
    /// is committed exactly once, so each is counted once.
    pub fn on_commit(&self, batch: &[RunChanges]) {
        for changes in batch {
            for attempt in &changes.new_attempts {
                self.metrics.attempt_ended(attempt.state);
            }
            for update in &changes.attempt_updates {
                self.metrics.attempt_ended(update.state);
            }
        }
    }

    /// Committed events, in commit order.
    pub fn on_events(&mut self, events: &[EventRecord]) {
        for event in events {
            if let Some(state) = task_state_entered(event.event_type) {
                self.metrics.task_entered(state);
            }
            match event.event_type {
                EventType::RunStarted => {
                    self.metrics.run_started();
                    self.run_created_ms
                        .insert(event.run_id.clone(), event.created_at_ms);
                }
                EventType::RunFinished => self.run_finished(event),
                EventType::TaskFailed | EventType::TaskRetryScheduled => {
                    let will_retry = event.event_type == EventType::TaskRetryScheduled;
                    let details = &event.details;
                    tracing::warn!(
                        run_id = event.run_id,
                        workflow = event.workflow_name,
                        task_id = details.task_id.as_deref().unwrap_or(""),
                        map_index = details.map_index,
                        attempt = details.attempt_number.unwrap_or(0),
                        error = details.error.as_deref().unwrap_or(""),
                        will_retry,
                        "task failed"
                    );
                }
                _ => {}
            }
            if let Some(tracer) = &mut self.tracer {
                tracer.on_event(event, self.run_created_ms.get(&event.run_id).copied());
            }
        }
    }

    fn run_finished(&mut self, event: &EventRecord) {
        let status = event.details.run_status.unwrap_or(RunStatus::Failed);
        self.metrics.run_finished(status);
        let created_ms = self.run_created_ms.remove(&event.run_id);
        let duration_ms = created_ms.map(|created| event.created_at_ms.saturating_sub(created));
        let error = event.details.error.as_deref().unwrap_or("");
        if status == RunStatus::Succeeded {
            tracing::info!(
                run_id = event.run_id,
                workflow = event.workflow_name,
                namespace = event.namespace,
                status = status.as_str(),
                duration_ms,
                "run finished"
            );
        } else {
            tracing::info!(
                run_id = event.run_id,
                workflow = event.workflow_name,
                namespace = event.namespace,
                status = status.as_str(),
                duration_ms,
                error,
                "run finished"
            );
        }
        if let (Some(tracer), Some(created_ms)) = (&mut self.tracer, created_ms) {
            tracer.run_finished(event, created_ms, status);
        }
    }
}

/// The state a task event moves its task into.
fn task_state_entered(event_type: EventType) -> Option<TaskState> {
    Some(match event_type {
        EventType::TaskReady => TaskState::Ready,
        EventType::TaskAssigned => TaskState::Assigned,
        EventType::TaskStarted | EventType::TaskMapped => TaskState::Running,
        EventType::TaskSucceeded => TaskState::Succeeded,
        EventType::TaskFailed => TaskState::Failed,
        EventType::TaskRetryScheduled => TaskState::RetryScheduled,
        EventType::TaskSkipped => TaskState::Skipped,
        EventType::TaskCancelled => TaskState::Cancelled,
        _ => return None,
    })
}
