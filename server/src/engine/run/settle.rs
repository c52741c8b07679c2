//! How a task's end travels through the DAG: its dependants' trigger rules
//! are evaluated once all their dependencies have ended, a dependant that
//! runs becomes READY (or is expanded, if mapped) with its input built by
//! the context rule, one that does not is SKIPPED and settles its own
//! dependants in turn, and the run ends when every task has.

use super::*;

impl RunState {
    pub(super) fn make_ready(&mut self, task: TaskIndex, now_ms: i64, actions: &mut Vec<Action>) {
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
    pub(super) fn finish_task(
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
    pub(super) fn settle_task(
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

    pub(super) fn finish_run(&mut self, status: RunStatus, now_ms: i64, actions: &mut Vec<Action>) {
        self.finish_run_with_error(status, None, now_ms, actions);
    }

    /// Ends the run; `error`, when given, is recorded in its RUN_FINISHED
    /// event.
    pub(super) fn finish_run_with_error(
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
    pub(super) fn dependency_outcomes(&self, task: TaskIndex) -> Option<Vec<DependencyOutcome>> {
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
    pub(super) fn input_of(&self, task: TaskIndex) -> Context {
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

    pub(super) fn record_conflicts(&mut self, task: TaskIndex, delta: &Delta, now_ms: i64) {
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
}
