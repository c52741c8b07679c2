//! What a run records as it changes, for the store and the event log: its
//! status, its tasks' and attempts' rows, its events with their details,
//! and the changes taken once per step ([`RunState::take_changes`]).

use super::*;

impl RunState {
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

    pub(super) fn set_status(
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

    pub(super) fn update_attempt(
        &mut self,
        attempt_id: &str,
        change: impl FnOnce(&mut AttemptRecord),
    ) {
        if let Some(attempt) = self.attempts.get_mut(attempt_id) {
            change(attempt);
            self.pending.updated_attempts.push(attempt_id.to_owned());
        }
    }

    pub(super) fn touch(&mut self, task: TaskIndex, now_ms: i64) {
        self.tasks[task].updated_at_ms = now_ms;
        self.pending.tasks.insert(task);
    }

    pub(super) fn event(&mut self, event_type: EventType, details: EventDetails, now_ms: i64) {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.pending.events.push(NewEvent {
            sequence,
            event_type,
            details,
            created_at_ms: now_ms,
        });
    }

    pub(super) fn task_details(&self, task: TaskIndex) -> EventDetails {
        EventDetails {
            task_id: Some(self.task_id_of(task).to_owned()),
            map_index: self.map_index_of(task),
            ..EventDetails::default()
        }
    }

    pub(super) fn attempt_details(&self, task: TaskIndex, attempt_id: &str) -> EventDetails {
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

    pub(super) fn task_record(&self, task: TaskIndex) -> TaskRecord {
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
