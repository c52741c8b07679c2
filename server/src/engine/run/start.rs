//! How a run begins: created with its first tasks READY, or started after
//! waiting QUEUED for a slot of its concurrency key.

use super::*;

impl RunState {
    /// Creates a run: tasks without dependencies are READY, the others
    /// WAITING. Returns the state, the record to persist, and the actions.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        id: String,
        namespace: String,
        plan: Arc<WorkflowPlan>,
        settings: RunSettings,
        input_context_json: &str,
        idempotency_key: Option<String>,
        request_hash: String,
        now_ms: i64,
    ) -> Result<(RunState, NewRun, Vec<Action>), ContextError> {
        RunState::start_at(
            id,
            namespace,
            plan,
            settings,
            input_context_json,
            (idempotency_key, request_hash),
            now_ms,
            1,
        )
    }

    /// Starts a run that waited QUEUED for a slot of its concurrency key:
    /// as [`RunState::start`], but its events follow its RUN_QUEUED (so
    /// RUN_STARTED is sequence 2), and the store updates its row instead of
    /// inserting one.
    #[allow(clippy::too_many_arguments)]
    pub fn start_dequeued(
        id: String,
        namespace: String,
        plan: Arc<WorkflowPlan>,
        settings: RunSettings,
        input_context_json: &str,
        idempotency_key: Option<String>,
        request_hash: String,
        now_ms: i64,
    ) -> Result<(RunState, NewRun, Vec<Action>), ContextError> {
        RunState::start_at(
            id,
            namespace,
            plan,
            settings,
            input_context_json,
            (idempotency_key, request_hash),
            now_ms,
            2,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn start_at(
        id: String,
        namespace: String,
        plan: Arc<WorkflowPlan>,
        settings: RunSettings,
        input_context_json: &str,
        (idempotency_key, request_hash): (Option<String>, String),
        now_ms: i64,
        first_sequence: u64,
    ) -> Result<(RunState, NewRun, Vec<Action>), ContextError> {
        let input = Context::from_input(input_context_json)?;
        let tasks = (0..plan.len())
            .map(|index| {
                let state = if plan.dependencies[index].is_empty() {
                    TaskState::Ready
                } else {
                    TaskState::Waiting
                };
                TaskRuntime::fresh(state, now_ms)
            })
            .collect();
        let context_size = ContextSize::of_input(&input);
        let mut run = RunState {
            id,
            namespace,
            settings,
            status: RunStatus::Pending,
            input,
            tasks,
            outputs: vec![None; plan.len()],
            deltas: vec![None; plan.len()],
            succeeded_attempts: vec![None; plan.len()],
            writers: HashMap::new(),
            context_size,
            attempts: HashMap::new(),
            next_sequence: first_sequence,
            pending: PendingChanges::default(),
            maps: Default::default(),
            plan,
        };
        run.event(EventType::RunStarted, EventDetails::default(), now_ms);
        let mut actions = Vec::new();
        for index in 0..run.plan.len() {
            if run.tasks[index].state == TaskState::Ready {
                run.event(EventType::TaskReady, run.task_details(index), now_ms);
                // A mapped task is expanded once the run is stored, at the
                // coordinator's next step.
                actions.push(run.ready_action(index));
            }
        }
        let new_run = NewRun {
            id: run.id.clone(),
            namespace: run.namespace.clone(),
            workflow_name: run.plan.workflow_name.clone(),
            workflow_version: run.plan.version.clone(),
            input_context_json: input_context_json.to_owned(),
            idempotency_key,
            request_hash,
            created_at_ms: now_ms,
            status: RunStatus::Pending,
            concurrency_key: None,
            tasks: (0..run.plan.len())
                .map(|index| run.task_record(index))
                .collect(),
            events: std::mem::take(&mut run.pending.events),
        };
        Ok((run, new_run, actions))
    }
}
