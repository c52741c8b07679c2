//! What the coordinator tells operators: why an executor went away, a
//! handler that no executor serves (or none with the labels a task
//! requires), and why each READY task of a run waits.

use super::Coordinator;
use crate::dispatch::executors::Executor;
use crate::dispatch::handle::DisconnectReason;
use crate::dispatch::ready_queue::ReadyKey;
use crate::dispatch::waiting::{self, TaskWait, WaitingReason};
use crate::engine::records::TaskState;

/// Why the coordinator forgets an executor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Departure {
    Stream(DisconnectReason),
    LeaseExpired,
    NotReading,
}

/// An executor that closed its stream with nothing in flight left (at
/// INFO, saying whether it drained first); any other departure is a loss
/// (at WARN, with why and how many attempts go back to READY).
pub(super) fn log_departure(executor: &Executor, departure: Departure) {
    let executor_id = executor.id.as_str();
    let requeued = executor.in_flight.len();
    match departure {
        Departure::Stream(DisconnectReason::StreamClosed) if requeued == 0 => {
            tracing::info!(
                executor_id,
                name = executor.registration.name,
                drained = executor.capacity == 0,
                "executor left"
            );
        }
        _ => {
            let reason = match departure {
                Departure::Stream(DisconnectReason::StreamClosed) => {
                    "it closed its stream with attempts in flight"
                }
                Departure::Stream(DisconnectReason::StreamBroken) => "its stream broke",
                Departure::LeaseExpired => "its lease expired",
                Departure::NotReading => "it stopped reading its stream",
            };
            tracing::warn!(
                executor_id,
                name = executor.registration.name,
                reason,
                requeued,
                "executor lost; re-queueing its attempts"
            );
        }
    }
}

/// The warning for the first task ready for a handler nobody serves, or
/// requiring labels no executor serving it has.
pub(super) fn warn_unserved(key: &ReadyKey, reason: WaitingReason, task_id: &str, run_id: &str) {
    let handler = &key.handler;
    match key.required() {
        Some(required) if reason == WaitingReason::NoMatchingLabels => {
            let labels = tributary_core::format_labels(required);
            tracing::warn!(
                handler = handler.handler,
                namespace = handler.namespace,
                required_labels = labels,
                task_id,
                run_id,
                "no executor serving handler {:?} (namespace {:?}) has the labels {labels}; task {task_id:?} of run {run_id} waits",
                handler.handler,
                handler.namespace,
            );
        }
        _ => tracing::warn!(
            handler = handler.handler,
            namespace = handler.namespace,
            task_id,
            run_id,
            "no executor serves handler {:?} (namespace {:?}); task {task_id:?} of run {run_id} waits",
            handler.handler,
            handler.namespace,
        ),
    }
}

impl Coordinator {
    /// Why each READY task (or instance of a mapped task) of a run in
    /// memory waits. The instances of a task share its handler and labels,
    /// so their reason is worked out once per task.
    pub(super) fn waiting_reasons(&self, namespace: &str, run_id: &str) -> Vec<TaskWait> {
        let Some(run) = self
            .runs
            .get(run_id)
            .filter(|run| run.namespace() == namespace)
        else {
            return Vec::new();
        };
        let mut waits = Vec::new();
        for (index, task) in run.plan().tasks.iter().enumerate() {
            let ready: Vec<Option<u32>> = std::iter::once(index)
                .chain(run.instances_of(index))
                .filter(|&unit| run.task_state(unit) == TaskState::Ready)
                .map(|unit| run.map_index_of(unit))
                .collect();
            if ready.is_empty() {
                continue;
            }
            let key = ReadyKey::for_unit(run, index);
            let at_limit = self.handler_in_flight.at_limit(&key);
            let Some(reason) = waiting::classify_limited(&key, &self.executors, at_limit) else {
                continue;
            };
            let message = waiting::describe(reason, &key, &self.executors);
            waits.extend(ready.into_iter().map(|map_index| TaskWait {
                task_id: task.id.clone(),
                map_index,
                reason,
                message: message.clone(),
            }));
        }
        waits
    }
}
