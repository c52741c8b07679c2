//! Rebuilding a run after a restart, and handing its in-flight attempts back
//! to the executors that reclaim them.

use super::*;

impl RunState {
    /// Rebuilds a run from its stored records after a restart. Returns the
    /// state and the actions that re-arm it: READY tasks to enqueue, retries
    /// and timeouts to schedule. Attempts in flight keep their ids; the
    /// runtime decides whether their executors reclaim them.
    pub fn restore(
        plan: Arc<WorkflowPlan>,
        settings: RunSettings,
        detail: &RunDetail,
        next_sequence: u64,
    ) -> Result<(RunState, Vec<Action>), RestoreError> {
        let run = &detail.run;
        let input = Context::from_input(&run.input_context_json)?;
        let executors = executors_of_attempts(detail);
        let mut tasks: Vec<Option<TaskRuntime>> = vec![None; plan.len()];
        // Instances are put back once their mapped tasks' inputs are known.
        for record in detail.tasks.iter().filter(|task| task.map_index.is_none()) {
            let index = plan
                .index_of(&record.task_id)
                .ok_or_else(|| RestoreError::UnknownTask(record.task_id.clone()))?;
            tasks[index] = Some(runtime_of(record, &executors));
        }
        let tasks: Vec<TaskRuntime> = tasks
            .into_iter()
            .enumerate()
            .map(|(index, task)| {
                task.ok_or_else(|| RestoreError::MissingTask(plan.tasks[index].id.clone()))
            })
            .collect::<Result<_, _>>()?;
        let mut deltas: Vec<Option<Delta>> = vec![None; plan.len()];
        let mut succeeded_attempts: Vec<Option<Arc<str>>> = vec![None; plan.len()];
        for record in detail
            .deltas
            .iter()
            .filter(|delta| parse_instance_key(&delta.task_id).is_none())
        {
            let index = plan
                .index_of(&record.task_id)
                .ok_or_else(|| RestoreError::UnknownTask(record.task_id.clone()))?;
            deltas[index] = Some(Delta::parse(&record.set_json, &record.removed_keys)?);
            // A mapped task's gathered output has no attempt.
            succeeded_attempts[index] =
                (!record.attempt_id.is_empty()).then(|| Arc::from(record.attempt_id.as_str()));
        }
        let context_size = ContextSize::of_input(&input);
        let mut state = RunState {
            id: run.id.clone(),
            namespace: run.namespace.clone(),
            settings,
            status: run.status,
            input,
            tasks,
            outputs: vec![None; plan.len()],
            deltas,
            succeeded_attempts,
            writers: HashMap::new(),
            context_size,
            attempts: detail
                .attempts
                .iter()
                .map(|attempt| (attempt.id.clone(), attempt.clone()))
                .collect(),
            next_sequence,
            pending: PendingChanges::default(),
            maps: Default::default(),
            plan,
        };
        // Outputs in canonical order: every dependency comes first.
        for index in 0..state.plan.len() {
            if !state.tasks[index].state.is_terminal() {
                continue;
            }
            let mut output = state.input_of(index);
            if let Some(delta) = &state.deltas[index] {
                output.apply(index, delta);
                state.context_size.apply(index, delta);
                for key in delta.keys() {
                    state.writers.entry(key.clone()).or_default().push(index);
                }
            }
            state.outputs[index] = Some(output);
        }
        state.restore_instances(detail)?;
        let mut actions = Vec::new();
        for (index, task) in state.tasks.iter().enumerate() {
            match task.state {
                TaskState::Ready => actions.push(state.ready_action(index)),
                TaskState::RetryScheduled => actions.push(Action::RetryAt {
                    task: index,
                    at_ms: task.next_attempt_at_ms.unwrap_or(0),
                }),
                TaskState::Assigned | TaskState::Running => {
                    if let Some(current) = &task.current {
                        let deadline = state
                            .attempts
                            .get(&current.id)
                            .and_then(|attempt| attempt.deadline_at_ms)
                            .unwrap_or(0);
                        actions.push(Action::TimeoutAt {
                            task: index,
                            attempt_id: current.id.clone(),
                            at_ms: deadline,
                        });
                    }
                }
                _ => {}
            }
        }
        Ok((state, actions))
    }

    /// Attempts in flight (ASSIGNED or RUNNING), with their tasks.
    pub fn attempts_in_flight(&self) -> Vec<(TaskIndex, String)> {
        self.tasks
            .iter()
            .enumerate()
            .filter(|(_, task)| matches!(task.state, TaskState::Assigned | TaskState::Running))
            .filter_map(|(index, task)| {
                task.current
                    .as_ref()
                    .map(|current| (index, current.id.clone()))
            })
            .collect()
    }

    /// An executor that reconnected after a restart holds this attempt:
    /// cancellations now go to it, and the run's log says who has it.
    /// Only the instance the attempt was assigned to may reclaim it.
    pub fn rebind_attempt(
        &mut self,
        attempt_id: &str,
        executor_id: &str,
        instance_id: &str,
        now_ms: i64,
    ) -> bool {
        let Some(task) = self.task_of_current_attempt(attempt_id) else {
            return false;
        };
        if !self.may_report(attempt_id, instance_id) {
            return false;
        }
        if let Some(current) = self.tasks[task].current.as_mut() {
            current.executor_id = executor_id.to_owned();
        }
        let mut details = self.attempt_details(task, attempt_id);
        details.executor_id = Some(executor_id.to_owned());
        self.event(EventType::ExecutorConnected, details, now_ms);
        true
    }
}

/// The executor of each stored attempt, by attempt id: looked up once per
/// task, so a run of many tasks is not read in quadratic time.
pub(super) fn executors_of_attempts(detail: &RunDetail) -> HashMap<&str, &str> {
    detail
        .attempts
        .iter()
        .map(|attempt| (attempt.id.as_str(), attempt.executor_id.as_str()))
        .collect()
}

/// The runtime of a stored task or instance row.
pub(super) fn runtime_of(record: &TaskRecord, executors: &HashMap<&str, &str>) -> TaskRuntime {
    let executor_of = |attempt_id: &String| {
        executors
            .get(attempt_id.as_str())
            .map(|executor| (*executor).to_owned())
            .unwrap_or_default()
    };
    TaskRuntime {
        state: record.state,
        skip_reason: record.skip_reason,
        attempts_started: record.attempts_started,
        failures: record.failures,
        reassignments: record.reassignments,
        current: record.current_attempt_id.as_ref().map(|id| CurrentAttempt {
            id: id.clone(),
            executor_id: executor_of(id),
        }),
        next_attempt_at_ms: record.next_attempt_at_ms,
        error: record.error.clone(),
        updated_at_ms: record.updated_at_ms,
    }
}
