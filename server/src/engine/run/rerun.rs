//! Re-running a finished run in place (`RetryRun`): which tasks are reset,
//! and how the run reopens.
//!
//! The reset set is closed under descendants: a task downstream of a reset
//! task would see a different input (the context rule rebuilds inputs from
//! the tasks that keep their output), so it must run again too, even if it
//! SUCCEEDED (an `all_done` cleanup after a failure). Every task outside
//! the set keeps its state, its delta and its output, and has no reset
//! ancestor, so its input is unchanged.

use super::*;

/// Why a run cannot be retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetryError {
    #[error("run {run_id} is {}; only a finished run can be retried", status_name(*status))]
    Active { run_id: String, status: RunStatus },
    #[error(
        "run {run_id} SUCCEEDED: it has no failed, skipped or cancelled task to retry \
         (name one with from_task to re-run it and its dependants)"
    )]
    NothingToRetry { run_id: String },
    #[error("from_task {task_id:?} is not a task of run {run_id} (workflow {workflow:?})")]
    UnknownTask {
        run_id: String,
        task_id: String,
        workflow: String,
    },
}

fn status_name(status: RunStatus) -> String {
    status.as_str().to_uppercase()
}

/// What a retry did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySummary {
    /// The status the run had before the retry.
    pub previous_status: RunStatus,
    /// The tasks reset, in canonical order.
    pub reset: Vec<TaskIndex>,
    /// The reset mapped tasks that had been expanded: their instances are
    /// dropped (the store deletes their rows, attempts and deltas), and
    /// each is expanded again, from its new input, when it is READY.
    pub dropped_maps: Vec<TaskIndex>,
}

impl RunState {
    /// Reopens a finished run. With `from_task`, that task and every
    /// descendant are reset; without, every FAILED, SKIPPED and CANCELLED
    /// task and every descendant. CANCELLED tasks are reset in both cases:
    /// no trigger rule was evaluated after the cancellation, so a task
    /// downstream of one could never be settled.
    ///
    /// A reset task is WAITING again with fresh retry and reassignment
    /// budgets, no error and no delta; its attempts stay as history and
    /// attempt numbers keep counting. Then each reset task whose
    /// dependencies all kept their state is settled as at a normal step:
    /// READY (or SKIPPED, cascading) by its trigger rule. The run is RUNNING
    /// again, unless nothing could run, in which case it ends again at once.
    pub fn retry(
        &mut self,
        from_task: Option<&str>,
        now_ms: i64,
        actions: &mut Vec<Action>,
    ) -> Result<RetrySummary, RetryError> {
        if !self.status.is_terminal() {
            return Err(RetryError::Active {
                run_id: self.id.clone(),
                status: self.status,
            });
        }
        // Instances are not tasks: a mapped task is retried as a whole.
        let cancelled =
            (0..self.plan.len()).filter(|&task| self.tasks[task].state == TaskState::Cancelled);
        let mut roots: Vec<TaskIndex> = match from_task {
            Some(task_id) => {
                let task = self
                    .plan
                    .index_of(task_id)
                    .ok_or_else(|| RetryError::UnknownTask {
                        run_id: self.id.clone(),
                        task_id: task_id.to_owned(),
                        workflow: self.plan.workflow_name.clone(),
                    })?;
                std::iter::once(task).chain(cancelled).collect()
            }
            None => (0..self.plan.len())
                .filter(|&task| {
                    matches!(
                        self.tasks[task].state,
                        TaskState::Failed | TaskState::Skipped | TaskState::Cancelled
                    )
                })
                .collect(),
        };
        if roots.is_empty() {
            return Err(RetryError::NothingToRetry {
                run_id: self.id.clone(),
            });
        }
        let previous_status = self.status;
        let reset = self.closed_under_descendants(&mut roots);
        let dropped_maps: Vec<TaskIndex> = reset
            .iter()
            .copied()
            .filter(|&task| self.map_size_of(task).is_some())
            .collect();
        for &task in &dropped_maps {
            self.drop_instances(task);
        }
        self.status = RunStatus::Running;
        for &task in &reset {
            let runtime = &mut self.tasks[task];
            runtime.state = TaskState::Waiting;
            runtime.skip_reason = None;
            runtime.failures = 0;
            runtime.reassignments = 0;
            runtime.current = None;
            runtime.next_attempt_at_ms = None;
            runtime.error = None;
            self.outputs[task] = None;
            self.deltas[task] = None;
            self.succeeded_attempts[task] = None;
            self.touch(task, now_ms);
        }
        // The dropped deltas no longer count towards the run's context size
        // limit; what is left is counted again, in canonical order.
        self.context_size = ContextSize::of_input(&self.input);
        for (index, delta) in self.deltas.iter().enumerate().take(self.plan.len()) {
            if let Some(delta) = delta {
                self.context_size.apply(index, delta);
            }
        }
        let in_reset: BTreeSet<TaskIndex> = reset.iter().copied().collect();
        self.writers.retain(|_, writers| {
            writers.retain(|writer| !in_reset.contains(writer));
            !writers.is_empty()
        });
        let details = EventDetails {
            task_id: from_task.map(str::to_owned),
            retried_task_ids: Some(
                reset
                    .iter()
                    .map(|&task| self.plan.tasks[task].id.clone())
                    .collect(),
            ),
            ..EventDetails::default()
        };
        self.event(EventType::RunRetried, details, now_ms);
        for &task in &reset {
            // A skip settled earlier in this loop may have cascaded here.
            if self.tasks[task].state != TaskState::Waiting {
                continue;
            }
            let Some(outcomes) = self.dependency_outcomes(task) else {
                continue;
            };
            match evaluate(self.plan.tasks[task].trigger_rule, &outcomes) {
                TriggerDecision::Run => self.make_ready(task, now_ms, actions),
                TriggerDecision::Skip(reason) => {
                    self.settle_task(
                        task,
                        TaskState::Skipped,
                        Some(reason),
                        None,
                        now_ms,
                        actions,
                    );
                }
            }
        }
        Ok(RetrySummary {
            previous_status,
            reset,
            dropped_maps,
        })
    }

    /// `roots` and all their descendants, in canonical order.
    fn closed_under_descendants(&self, roots: &mut Vec<TaskIndex>) -> Vec<TaskIndex> {
        let mut reached = vec![false; self.plan.len()];
        while let Some(task) = roots.pop() {
            if std::mem::replace(&mut reached[task], true) {
                continue;
            }
            roots.extend(self.plan.dependants[task].iter().copied());
        }
        (0..self.plan.len()).filter(|&task| reached[task]).collect()
    }
}

#[cfg(test)]
#[path = "rerun_tests.rs"]
mod tests;
