//! The coordinator task and its handle.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;

use super::executors::{ExecutorCommand, ExecutorRegistration, ExecutorRegistry};
use super::ready_queue::{HandlerKey, ReadyQueue};
use super::timers::{TimerKind, Timers};
use crate::clock::now_unix_ms;
use crate::engine::context::{ContextError, Delta};
use crate::engine::plan::WorkflowPlan;
use crate::engine::records::{AttemptState, CreateRunOutcome, EventRecord, NewRun, RunChanges};
use crate::engine::retry::random_jitter_factor;
use crate::engine::run::{Action, ResultDisposition, RunSettings, RunState};
use crate::store::{Store, StoreError, StoredWorkflow, VersionSelector};

/// How long changes that nobody waits for (an executor reporting an attempt
/// started, a reclaimed attempt) may wait to be committed with the next
/// turn's. A fast task's Started and Completed then share one transaction
/// instead of taking two, which halves the commits of a chain. A crash
/// within this window loses only such reports: an attempt whose start was
/// not committed is recovered as ASSIGNED, which recovery treats as in
/// flight just like RUNNING.
const COMMIT_LINGER: Duration = Duration::from_millis(2);

/// Settings of the coordinator, from the server configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DispatchSettings {
    pub run: RunSettings,
    /// Commands handled per turn at most, bounding a turn's latency.
    pub max_batch: usize,
    /// Silence after which an executor is dropped; also how long executors
    /// get to reclaim their attempts after a restart.
    pub lease_timeout_ms: u64,
}

/// Why a coordinator request failed.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("the server is shutting down")]
    Stopped,
    #[error(transparent)]
    Context(#[from] ContextError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("idempotency key {key:?} is already used by run {run_id} with a different request")]
    IdempotencyKeyReused { key: String, run_id: String },
}

/// A request to start a run of a stored workflow version.
#[derive(Debug, Clone)]
pub struct StartRunCommand {
    pub namespace: String,
    pub workflow: StoredWorkflow,
    pub input_context_json: String,
    pub idempotency_key: Option<String>,
    pub request_hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedRun {
    pub run_id: String,
    pub workflow_version: String,
    pub created: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    Cancelled,
    /// The run is not active on this server: finished, or unknown.
    NotActive,
}

/// What an executor reported on its stream.
#[derive(Debug, Clone)]
pub enum ExecutorEvent {
    Started {
        attempt_id: String,
    },
    Completed {
        attempt_id: String,
        delta: Delta,
    },
    Failed {
        attempt_id: String,
        message: String,
        retryable: bool,
    },
    CapacityChanged {
        capacity: u32,
    },
    Heartbeat,
}

/// A connected executor as `ListExecutors` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorSnapshot {
    pub id: String,
    pub registration: ExecutorRegistration,
    pub capacity: u32,
    pub in_flight: Vec<String>,
    pub connected_at_ms: i64,
}

type StartReply = oneshot::Sender<Result<StartedRun, DispatchError>>;

enum Command {
    StartRun {
        command: StartRunCommand,
        reply: StartReply,
    },
    CancelRun {
        namespace: String,
        run_id: String,
        reply: oneshot::Sender<CancelOutcome>,
    },
    Register {
        namespace: String,
        registration: ExecutorRegistration,
        outbound: mpsc::Sender<ExecutorCommand>,
        stream_guard: watch::Sender<bool>,
        reply: oneshot::Sender<String>,
    },
    Executor {
        executor_id: String,
        event: ExecutorEvent,
    },
    Disconnected {
        executor_id: String,
    },
    ListExecutors {
        namespace: String,
        reply: oneshot::Sender<Vec<ExecutorSnapshot>>,
    },
}

/// The way into the coordinator; cheap to clone.
#[derive(Clone)]
pub struct CoordinatorHandle {
    commands: mpsc::Sender<Command>,
}

impl CoordinatorHandle {
    async fn request<T>(
        &self,
        command: Command,
        reply: oneshot::Receiver<T>,
    ) -> Result<T, DispatchError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| DispatchError::Stopped)?;
        reply.await.map_err(|_| DispatchError::Stopped)
    }

    pub async fn start_run(&self, command: StartRunCommand) -> Result<StartedRun, DispatchError> {
        let (reply, receiver) = oneshot::channel();
        self.request(Command::StartRun { command, reply }, receiver)
            .await?
    }

    pub async fn cancel_run(
        &self,
        namespace: &str,
        run_id: &str,
    ) -> Result<CancelOutcome, DispatchError> {
        let (reply, receiver) = oneshot::channel();
        let command = Command::CancelRun {
            namespace: namespace.to_owned(),
            run_id: run_id.to_owned(),
            reply,
        };
        self.request(command, receiver).await
    }

    /// Registers an executor; the coordinator sends `Registered` on
    /// `outbound` before anything else. When the coordinator drops the
    /// executor (lease expired, not reading) it drops `stream_guard`, which
    /// tells the stream's reader to stop. Returns the executor's id.
    pub async fn register_executor(
        &self,
        namespace: &str,
        registration: ExecutorRegistration,
        outbound: mpsc::Sender<ExecutorCommand>,
        stream_guard: watch::Sender<bool>,
    ) -> Result<String, DispatchError> {
        let (reply, receiver) = oneshot::channel();
        let command = Command::Register {
            namespace: namespace.to_owned(),
            registration,
            outbound,
            stream_guard,
            reply,
        };
        self.request(command, receiver).await
    }

    pub async fn executor_event(
        &self,
        executor_id: &str,
        event: ExecutorEvent,
    ) -> Result<(), DispatchError> {
        let command = Command::Executor {
            executor_id: executor_id.to_owned(),
            event,
        };
        self.commands
            .send(command)
            .await
            .map_err(|_| DispatchError::Stopped)
    }

    pub async fn executor_disconnected(&self, executor_id: &str) {
        let command = Command::Disconnected {
            executor_id: executor_id.to_owned(),
        };
        // A stopped coordinator has already forgotten every executor.
        let _ = self.commands.send(command).await;
    }

    pub async fn list_executors(
        &self,
        namespace: &str,
    ) -> Result<Vec<ExecutorSnapshot>, DispatchError> {
        let (reply, receiver) = oneshot::channel();
        let command = Command::ListExecutors {
            namespace: namespace.to_owned(),
            reply,
        };
        self.request(command, receiver).await
    }
}

/// Something to do once the turn's changes are committed.
enum AfterCommit {
    Send {
        executor_id: String,
        command: ExecutorCommand,
    },
    ReplyCancel(oneshot::Sender<CancelOutcome>),
}

pub struct Coordinator {
    store: Arc<dyn Store>,
    /// Committed events, in commit order, for live watchers.
    events: broadcast::Sender<Arc<EventRecord>>,
    settings: DispatchSettings,
    runs: HashMap<String, RunState>,
    /// Which run each attempt in memory belongs to.
    attempt_runs: HashMap<String, String>,
    plans: HashMap<(String, String, String), Arc<WorkflowPlan>>,
    ready: ReadyQueue,
    executors: ExecutorRegistry,
    timers: Timers,
    dirty_runs: Vec<String>,
    finished_runs: Vec<String>,
    after_commit: Vec<AfterCommit>,
    /// Attempts in flight when the server restarted, waiting for their
    /// executor to reconnect and reclaim them, with their runs.
    orphans: HashMap<String, String>,
    /// Results for attempts no longer in memory (their run finished): the
    /// database says whether each was the accepted one.
    unresolved_results: Vec<(String, String)>,
    /// Fault injection for crash tests: abort the process right after this
    /// many commits, before anything acts on the last one.
    crash_after_commits: Option<u64>,
    commits: u64,
    /// Set while the dirty runs hold only changes nobody waits for: when
    /// they must be committed even if no other turn comes.
    commit_deadline: Option<Instant>,
}

impl Coordinator {
    /// Rebuilds the active runs from the database, then spawns the
    /// coordinator task. It stops when `shutdown` turns true (or every handle
    /// is dropped), closing every executor stream.
    pub async fn start(
        store: Arc<dyn Store>,
        settings: DispatchSettings,
        events: broadcast::Sender<Arc<EventRecord>>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(CoordinatorHandle, tokio::task::JoinHandle<()>), StoreError> {
        let (commands, receiver) = mpsc::channel(4096);
        let mut coordinator = Coordinator {
            store,
            events,
            settings,
            runs: HashMap::new(),
            attempt_runs: HashMap::new(),
            plans: HashMap::new(),
            ready: ReadyQueue::default(),
            executors: ExecutorRegistry::default(),
            timers: Timers::default(),
            dirty_runs: Vec::new(),
            finished_runs: Vec::new(),
            after_commit: Vec::new(),
            orphans: HashMap::new(),
            unresolved_results: Vec::new(),
            crash_after_commits: std::env::var("TRIBUTARY_TEST_CRASH_AFTER_COMMITS")
                .ok()
                .and_then(|value| value.parse().ok()),
            commits: 0,
            commit_deadline: None,
        };
        coordinator.recover().await?;
        let task = tokio::spawn(coordinator.run(receiver, shutdown));
        Ok((CoordinatorHandle { commands }, task))
    }

    /// Loads every active run. Their READY tasks are queued, retries and
    /// timeouts re-armed, and attempts that were in flight become orphans:
    /// their executors have one lease timeout to reconnect and reclaim them
    /// before they are re-queued.
    async fn recover(&mut self) -> Result<(), StoreError> {
        let active = self.store.load_active_runs().await?;
        let reclaim_deadline = now_unix_ms().saturating_add(self.lease_ms());
        let mut restored = 0;
        for (detail, last_sequence) in active {
            let run_id = detail.run.id.clone();
            let workflow = self
                .store
                .get_workflow(
                    &detail.run.namespace,
                    &detail.run.workflow_name,
                    &VersionSelector::Version(detail.run.workflow_version.clone()),
                )
                .await?;
            let plan = self.plan_for(&detail.run.namespace, &workflow);
            match RunState::restore(plan, self.settings.run, &detail, last_sequence + 1) {
                Ok((run, actions)) => {
                    for (_, attempt_id) in run.attempts_in_flight() {
                        self.orphans.insert(attempt_id.clone(), run_id.clone());
                        self.attempt_runs.insert(attempt_id.clone(), run_id.clone());
                        self.timers
                            .insert(reclaim_deadline, TimerKind::ReclaimDeadline { attempt_id });
                    }
                    self.runs.insert(run_id.clone(), run);
                    self.apply_actions(&run_id, actions);
                    restored += 1;
                }
                Err(error) => {
                    tracing::error!(run_id, %error, "cannot restore the run; leaving it as stored");
                }
            }
        }
        if restored > 0 {
            tracing::info!(
                runs = restored,
                orphaned_attempts = self.orphans.len(),
                "restored active runs"
            );
        }
        Ok(())
    }

    fn plan_for(&mut self, namespace: &str, workflow: &StoredWorkflow) -> Arc<WorkflowPlan> {
        let key = (
            namespace.to_owned(),
            workflow.spec.name.clone(),
            workflow.version.clone(),
        );
        self.plans
            .entry(key)
            .or_insert_with(|| Arc::new(WorkflowPlan::new(&workflow.spec, &workflow.version)))
            .clone()
    }

    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut batch = Vec::with_capacity(self.settings.max_batch);
        loop {
            let timer_due = self.timers.next_due_ms().map(|at_ms| {
                Duration::from_millis(u64::try_from(at_ms - now_unix_ms()).unwrap_or(0))
            });
            let commit_due = self
                .commit_deadline
                .map(|deadline| deadline.saturating_duration_since(Instant::now()));
            let sleep_for = match (timer_due, commit_due) {
                (Some(timer), Some(commit)) => Some(timer.min(commit)),
                (due, None) | (None, due) => due,
            };
            // Work left by the last turn (an executor dropped while sending)
            // must not wait for the next command; deferred changes wait for
            // their deadline.
            let pending = (!self.dirty_runs.is_empty() && self.commit_deadline.is_none())
                || !self.after_commit.is_empty();
            if pending {
                while batch.len() < self.settings.max_batch {
                    match commands.try_recv() {
                        Ok(command) => batch.push(command),
                        Err(_) => break,
                    }
                }
            } else {
                tokio::select! {
                    // Shutdown first: once the server is stopping, nothing
                    // more is handled, so attempts stay in flight for the
                    // next server to hand back to their executors.
                    biased;
                    _ = shutdown.changed() => break,
                    received = commands.recv_many(&mut batch, self.settings.max_batch) => {
                        if received == 0 {
                            break;
                        }
                    }
                    _ = tokio::time::sleep(sleep_for.unwrap_or(Duration::MAX)), if sleep_for.is_some() => {}
                }
            }
            // Runs without idempotency keys cannot collide, so a turn's
            // worth of them is created in one transaction.
            let mut starts = Vec::new();
            for command in batch.drain(..) {
                match command {
                    Command::StartRun { command, reply } if command.idempotency_key.is_none() => {
                        starts.push((command, reply));
                    }
                    command => self.handle(command).await,
                }
            }
            self.start_runs(starts).await;
            self.fire_due_timers();
            self.dispatch();
            self.flush(false).await;
        }
        // What was deferred was handled; it must not be lost with the task.
        self.flush(true).await;
        tracing::info!(
            active_runs = self.runs.len(),
            "dispatch stopped; closing executor streams"
        );
        // Dropping the registry drops every outbound sender, which ends the
        // executors' response streams.
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::StartRun { command, reply } => {
                let result = self.start_run(command).await;
                let _ = reply.send(result);
            }
            Command::CancelRun {
                namespace,
                run_id,
                reply,
            } => self.cancel_run(&namespace, &run_id, reply),
            Command::Register {
                namespace,
                registration,
                outbound,
                stream_guard,
                reply,
            } => {
                let executor_id = self.register(namespace, registration, outbound, stream_guard);
                let _ = reply.send(executor_id);
            }
            Command::Executor { executor_id, event } => self.executor_event(&executor_id, event),
            Command::Disconnected { executor_id } => self.disconnect(&executor_id),
            Command::ListExecutors { namespace, reply } => {
                let snapshots = self
                    .executors
                    .in_namespace(&namespace)
                    .into_iter()
                    .map(|executor| ExecutorSnapshot {
                        id: executor.id.clone(),
                        registration: executor.registration.clone(),
                        capacity: executor.capacity,
                        in_flight: executor.in_flight.iter().cloned().collect(),
                        connected_at_ms: executor.connected_at_ms,
                    })
                    .collect();
                let _ = reply.send(snapshots);
            }
        }
    }

    fn register(
        &mut self,
        namespace: String,
        registration: ExecutorRegistration,
        outbound: mpsc::Sender<ExecutorCommand>,
        stream_guard: watch::Sender<bool>,
    ) -> String {
        let executor_id = uuid::Uuid::now_v7().to_string();
        let now_ms = now_unix_ms();
        // The first message on the stream; the channel is new and empty, so
        // this cannot be full.
        let _ = outbound.try_send(ExecutorCommand::Registered {
            executor_id: executor_id.clone(),
        });
        tracing::info!(
            executor_id,
            namespace,
            name = registration.name,
            instance_id = registration.instance_id,
            handlers = ?registration.handlers,
            capacity = registration.capacity,
            held = registration.held_attempt_ids.len(),
            "executor connected"
        );
        let held = registration.held_attempt_ids.clone();
        self.executors.add(
            executor_id.clone(),
            namespace,
            registration,
            outbound,
            stream_guard,
            now_ms,
        );
        self.timers.insert(
            now_ms.saturating_add(self.lease_ms()),
            TimerKind::LeaseCheck {
                executor_id: executor_id.clone(),
            },
        );
        for attempt_id in held {
            let reclaimed = match self.orphans.remove(&attempt_id) {
                Some(run_id) => self
                    .runs
                    .get_mut(&run_id)
                    .is_some_and(|run| run.rebind_attempt(&attempt_id, &executor_id, now_ms)),
                None => false,
            };
            if reclaimed {
                tracing::info!(executor_id, attempt_id, "attempt reclaimed after a restart");
                if let Some(run_id) = self.attempt_runs.get(&attempt_id).cloned() {
                    self.mark_dirty(&run_id);
                }
                if let Some(executor) = self.executors.get_mut(&executor_id) {
                    executor.in_flight.insert(attempt_id);
                }
            } else {
                // Re-queued or finished meanwhile: the executor must stop it.
                self.send_now(
                    &executor_id,
                    ExecutorCommand::Cancel {
                        attempt_id,
                        reason: "the attempt is no longer assigned to this executor".to_owned(),
                    },
                );
            }
        }
        executor_id
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.settings.lease_timeout_ms).unwrap_or(i64::MAX)
    }

    /// The in-memory state of a new run and the rows that record it.
    fn prepare_run(
        &mut self,
        command: &StartRunCommand,
    ) -> Result<(RunState, NewRun, Vec<Action>), DispatchError> {
        let plan = self.plan_for(&command.namespace, &command.workflow);
        let run_id = uuid::Uuid::now_v7().to_string();
        Ok(RunState::start(
            run_id,
            command.namespace.clone(),
            plan,
            self.settings.run,
            &command.input_context_json,
            command.idempotency_key.clone(),
            command.request_hash.clone(),
            now_unix_ms(),
        )?)
    }

    /// Makes a committed run live: in memory, its first tasks queued.
    fn activate_run(
        &mut self,
        run: RunState,
        new_run: &NewRun,
        actions: Vec<Action>,
    ) -> StartedRun {
        tracing::debug!(
            run_id = new_run.id,
            workflow = new_run.workflow_name,
            "run started"
        );
        self.runs.insert(new_run.id.clone(), run);
        self.apply_actions(&new_run.id, actions);
        StartedRun {
            run_id: new_run.id.clone(),
            workflow_version: new_run.workflow_version.clone(),
            created: true,
        }
    }

    async fn start_run(&mut self, command: StartRunCommand) -> Result<StartedRun, DispatchError> {
        let (run, new_run, actions) = self.prepare_run(&command)?;
        match self.store.create_run(&new_run).await? {
            CreateRunOutcome::Created(events) => self.publish(events),
            CreateRunOutcome::IdempotencyKeyTaken(existing) => {
                return if existing.request_hash == command.request_hash {
                    Ok(StartedRun {
                        run_id: existing.id,
                        workflow_version: existing.workflow_version,
                        created: false,
                    })
                } else {
                    Err(DispatchError::IdempotencyKeyReused {
                        key: command.idempotency_key.unwrap_or_default(),
                        run_id: existing.id,
                    })
                };
            }
        }
        Ok(self.activate_run(run, &new_run, actions))
    }

    /// Starts runs without idempotency keys in one transaction. If the
    /// database refuses it, each run is tried on its own, so one bad run
    /// cannot fail the others.
    async fn start_runs(&mut self, starts: Vec<(StartRunCommand, StartReply)>) {
        if starts.is_empty() {
            return;
        }
        let mut prepared = Vec::with_capacity(starts.len());
        let mut new_runs = Vec::with_capacity(starts.len());
        for (command, reply) in starts {
            match self.prepare_run(&command) {
                Ok((run, new_run, actions)) => {
                    prepared.push((command, run, actions, reply));
                    new_runs.push(new_run);
                }
                Err(error) => {
                    let _ = reply.send(Err(error));
                }
            }
        }
        match self.store.create_runs(&new_runs).await {
            Ok(events) => {
                self.publish(events);
                for ((_, run, actions, reply), new_run) in prepared.into_iter().zip(&new_runs) {
                    let started = self.activate_run(run, new_run, actions);
                    let _ = reply.send(Ok(started));
                }
            }
            Err(error) => {
                tracing::warn!(%error, runs = new_runs.len(), "creating runs together failed; creating them one by one");
                for ((command, _, _, reply), _) in prepared.into_iter().zip(&new_runs) {
                    let _ = reply.send(self.start_run(command).await);
                }
            }
        }
    }

    fn cancel_run(&mut self, namespace: &str, run_id: &str, reply: oneshot::Sender<CancelOutcome>) {
        let Some(run) = self
            .runs
            .get_mut(run_id)
            .filter(|run| run.namespace() == namespace)
        else {
            let _ = reply.send(CancelOutcome::NotActive);
            return;
        };
        let mut actions = Vec::new();
        if run.cancel(now_unix_ms(), &mut actions).is_err() {
            let _ = reply.send(CancelOutcome::NotActive);
            return;
        }
        self.apply_actions(run_id, actions);
        self.after_commit.push(AfterCommit::ReplyCancel(reply));
    }

    fn executor_event(&mut self, executor_id: &str, event: ExecutorEvent) {
        let now_ms = now_unix_ms();
        let Some(executor) = self.executors.get_mut(executor_id) else {
            // Dropped meanwhile (lease expired); its stream is being closed.
            return;
        };
        executor.last_seen_ms = now_ms;
        match event {
            ExecutorEvent::Heartbeat => {
                self.send_now(executor_id, ExecutorCommand::HeartbeatAck);
            }
            ExecutorEvent::CapacityChanged { capacity } => {
                if let Some(executor) = self.executors.get_mut(executor_id) {
                    executor.capacity = capacity;
                }
            }
            ExecutorEvent::Started { attempt_id } => {
                if let Some(run) = self.run_of_attempt(&attempt_id) {
                    let run_id = run.id().to_owned();
                    run.on_started(&attempt_id, now_ms);
                    self.mark_dirty(&run_id);
                }
            }
            ExecutorEvent::Completed { attempt_id, delta } => {
                self.release_slot(executor_id, &attempt_id);
                let mut actions = Vec::new();
                let (run_id, disposition) = match self.run_of_attempt(&attempt_id) {
                    Some(run) => {
                        let disposition =
                            run.on_completed(&attempt_id, delta, now_ms, &mut actions);
                        (Some(run.id().to_owned()), disposition)
                    }
                    None => {
                        self.unresolved_results
                            .push((executor_id.to_owned(), attempt_id));
                        return;
                    }
                };
                self.after_result(executor_id, attempt_id, run_id, disposition, actions);
            }
            ExecutorEvent::Failed {
                attempt_id,
                message,
                retryable,
            } => {
                self.release_slot(executor_id, &attempt_id);
                let mut actions = Vec::new();
                let (run_id, disposition) = match self.run_of_attempt(&attempt_id) {
                    Some(run) => {
                        let disposition = run.on_failed(
                            &attempt_id,
                            &message,
                            retryable,
                            random_jitter_factor(),
                            now_ms,
                            &mut actions,
                        );
                        (Some(run.id().to_owned()), disposition)
                    }
                    None => (None, ResultDisposition::Stale),
                };
                self.after_result(executor_id, attempt_id, run_id, disposition, actions);
            }
        }
    }

    fn after_result(
        &mut self,
        executor_id: &str,
        attempt_id: String,
        run_id: Option<String>,
        disposition: ResultDisposition,
        actions: Vec<Action>,
    ) {
        tracing::debug!(executor_id, attempt_id, ?disposition, "result received");
        if let Some(run_id) = run_id {
            self.apply_actions(&run_id, actions);
            self.mark_dirty(&run_id);
        }
        self.after_commit.push(AfterCommit::Send {
            executor_id: executor_id.to_owned(),
            command: ExecutorCommand::ResultAck {
                attempt_id,
                disposition,
            },
        });
    }

    /// The executor's attempt ended, whatever its outcome: its slot is free.
    fn release_slot(&mut self, executor_id: &str, attempt_id: &str) {
        if let Some(executor) = self.executors.get_mut(executor_id) {
            executor.in_flight.remove(attempt_id);
        }
    }

    fn disconnect(&mut self, executor_id: &str) {
        let Some(executor) = self.executors.remove(executor_id) else {
            return;
        };
        tracing::info!(
            executor_id,
            in_flight = executor.in_flight.len(),
            "executor disconnected; re-queueing its attempts"
        );
        let now_ms = now_unix_ms();
        for attempt_id in executor.in_flight {
            let mut actions = Vec::new();
            let Some(run) = self.run_of_attempt(&attempt_id) else {
                continue;
            };
            let run_id = run.id().to_owned();
            run.on_attempt_lost(&attempt_id, now_ms, &mut actions);
            self.apply_actions(&run_id, actions);
            self.mark_dirty(&run_id);
        }
    }

    fn fire_due_timers(&mut self) {
        let now_ms = now_unix_ms();
        for timer in self.timers.take_due(now_ms) {
            let mut actions = Vec::new();
            let run_id = match timer {
                TimerKind::RetryDue { run_id, task } => {
                    let Some(run) = self.runs.get_mut(&run_id) else {
                        continue;
                    };
                    run.on_retry_due(task, now_ms, &mut actions);
                    run_id
                }
                TimerKind::AttemptTimeout { run_id, attempt_id } => {
                    let Some(run) = self.runs.get_mut(&run_id) else {
                        continue;
                    };
                    run.on_timeout(&attempt_id, random_jitter_factor(), now_ms, &mut actions);
                    run_id
                }
                TimerKind::LeaseCheck { executor_id } => {
                    let Some(executor) = self.executors.get(&executor_id) else {
                        continue;
                    };
                    let expires_ms = executor.last_seen_ms.saturating_add(self.lease_ms());
                    if now_ms >= expires_ms {
                        tracing::warn!(executor_id, "executor lease expired; dropping it");
                        self.disconnect(&executor_id);
                    } else {
                        self.timers
                            .insert(expires_ms, TimerKind::LeaseCheck { executor_id });
                    }
                    continue;
                }
                TimerKind::ReclaimDeadline { attempt_id } => {
                    let Some(run_id) = self.orphans.remove(&attempt_id) else {
                        continue;
                    };
                    let Some(run) = self.runs.get_mut(&run_id) else {
                        continue;
                    };
                    tracing::info!(
                        attempt_id,
                        "attempt not reclaimed after the restart; re-queueing it"
                    );
                    run.on_attempt_lost(&attempt_id, now_ms, &mut actions);
                    run_id
                }
            };
            self.apply_actions(&run_id, actions);
            self.mark_dirty(&run_id);
        }
    }

    /// Assigns ready tasks to executors with free slots.
    fn dispatch(&mut self) {
        if self.ready.is_empty() {
            return;
        }
        let now_ms = now_unix_ms();
        for key in self.ready.keys() {
            while let Some(executor_id) = self.executors.least_loaded(&key).map(str::to_owned) {
                let Some((run_id, task)) = self.ready.pop(&key) else {
                    break;
                };
                let Some(run) = self.runs.get_mut(&run_id) else {
                    continue;
                };
                let attempt_id = uuid::Uuid::now_v7().to_string();
                let Some((assignment, timeout)) =
                    run.assign(task, attempt_id.clone(), &executor_id, now_ms)
                else {
                    continue;
                };
                let workflow_name = run.plan().workflow_name.clone();
                if let Some(executor) = self.executors.get_mut(&executor_id) {
                    executor.in_flight.insert(attempt_id.clone());
                }
                self.attempt_runs.insert(attempt_id, run_id.clone());
                self.apply_actions(&run_id, vec![timeout]);
                self.mark_dirty(&run_id);
                self.after_commit.push(AfterCommit::Send {
                    executor_id,
                    command: ExecutorCommand::Assign {
                        run_id,
                        workflow_name,
                        assignment,
                    },
                });
            }
        }
        let over = self.executors.over_capacity();
        if !over.is_empty() {
            tracing::error!(executors = ?over, "capacity invariant violated");
        }
    }

    fn apply_actions(&mut self, run_id: &str, actions: Vec<Action>) {
        self.mark_dirty(run_id);
        for action in actions {
            match action {
                Action::Enqueue(task) => {
                    if let Some(run) = self.runs.get(run_id) {
                        let key = HandlerKey {
                            namespace: run.namespace().to_owned(),
                            handler: run.plan().tasks[task].handler.clone(),
                        };
                        self.ready.push(key, run_id, task);
                    }
                }
                Action::RetryAt { task, at_ms } => self.timers.insert(
                    at_ms,
                    TimerKind::RetryDue {
                        run_id: run_id.to_owned(),
                        task,
                    },
                ),
                Action::TimeoutAt {
                    attempt_id, at_ms, ..
                } => self.timers.insert(
                    at_ms,
                    TimerKind::AttemptTimeout {
                        run_id: run_id.to_owned(),
                        attempt_id,
                    },
                ),
                Action::Cancel {
                    executor_id,
                    attempt_id,
                    reason,
                } => self.after_commit.push(AfterCommit::Send {
                    executor_id,
                    command: ExecutorCommand::Cancel { attempt_id, reason },
                }),
                Action::Finished(status) => {
                    tracing::debug!(run_id, status = status.as_str(), "run finished");
                    self.finished_runs.push(run_id.to_owned());
                }
            }
        }
    }

    /// Commits the turn's changes, then carries out what waited for them.
    /// Changes nobody waits for are deferred up to [`COMMIT_LINGER`] (unless
    /// `now`), to be committed with a later turn's.
    async fn flush(&mut self, now: bool) {
        let awaited = !self.after_commit.is_empty()
            || !self.unresolved_results.is_empty()
            || !self.finished_runs.is_empty();
        if !now && !awaited && !self.dirty_runs.is_empty() {
            let deadline = *self
                .commit_deadline
                .get_or_insert_with(|| Instant::now() + COMMIT_LINGER);
            if Instant::now() < deadline {
                return;
            }
        }
        self.commit_deadline = None;
        let mut batch: Vec<RunChanges> = Vec::with_capacity(self.dirty_runs.len());
        for run_id in std::mem::take(&mut self.dirty_runs) {
            if let Some(run) = self.runs.get_mut(&run_id) {
                let changes = run.take_changes();
                if !changes.is_empty() {
                    batch.push(changes);
                }
            }
        }
        let evicted = if batch.is_empty() {
            HashSet::new()
        } else {
            let evicted = self.commit(batch).await;
            self.commits += 1;
            if self
                .crash_after_commits
                .is_some_and(|limit| self.commits >= limit)
            {
                tracing::error!(commits = self.commits, "crash point reached: aborting");
                std::process::abort();
            }
            evicted
        };
        for (executor_id, attempt_id) in std::mem::take(&mut self.unresolved_results) {
            // A duplicate of a result committed earlier is answered as the
            // original was; anything else is stale.
            let disposition = match self.store.attempt_state(&attempt_id).await {
                Ok(Some(AttemptState::Succeeded)) => ResultDisposition::Accepted,
                Ok(_) => ResultDisposition::Stale,
                Err(error) => {
                    tracing::error!(attempt_id, %error, "cannot look up a late result; not answering it");
                    continue;
                }
            };
            self.after_commit.push(AfterCommit::Send {
                executor_id,
                command: ExecutorCommand::ResultAck {
                    attempt_id,
                    disposition,
                },
            });
        }

        for effect in std::mem::take(&mut self.after_commit) {
            match effect {
                AfterCommit::Send {
                    executor_id,
                    command:
                        ExecutorCommand::Assign {
                            run_id, assignment, ..
                        },
                } if evicted.contains(&run_id) => {
                    // Never committed, so never sent.
                    self.release_slot(&executor_id, &assignment.attempt_id);
                }
                AfterCommit::Send {
                    executor_id,
                    command,
                } => self.send_now(&executor_id, command),
                AfterCommit::ReplyCancel(reply) => {
                    let _ = reply.send(CancelOutcome::Cancelled);
                }
            }
        }
        for run_id in std::mem::take(&mut self.finished_runs) {
            self.forget_run(&run_id);
        }
    }

    /// Commits a batch, retrying while the database is unavailable: the
    /// in-memory state is already ahead, and nothing may act on it before
    /// it is durable. A batch the database rejects for its content (a bug)
    /// is committed run by run, and a run whose changes still fail is
    /// evicted from memory, so one bad run cannot wedge all the others.
    /// Returns the evicted runs.
    async fn commit(&mut self, batch: Vec<RunChanges>) -> HashSet<String> {
        let mut evicted = HashSet::new();
        match self.commit_retrying(&batch).await {
            Ok(()) => return evicted,
            Err(error) => {
                tracing::error!(%error, runs = batch.len(), "batch rejected; committing run by run");
            }
        }
        for changes in batch {
            if let Err(error) = self.commit_retrying(std::slice::from_ref(&changes)).await {
                tracing::error!(
                    run_id = changes.run_id,
                    %error,
                    "the run's changes cannot be committed; evicting it from memory"
                );
                evicted.insert(changes.run_id.clone());
                self.forget_run(&changes.run_id);
            }
        }
        evicted
    }

    /// Retries transient failures with backoff; returns the first
    /// permanent one.
    async fn commit_retrying(&self, batch: &[RunChanges]) -> Result<(), StoreError> {
        let mut delay = Duration::from_millis(10);
        loop {
            match self.store.commit_changes(batch).await {
                Ok(events) => {
                    self.publish(events);
                    return Ok(());
                }
                Err(error) if error.is_transient() => {
                    tracing::error!(%error, retry_in_ms = delay.as_millis() as u64, "commit failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Hands committed events to live watchers. Nobody listening is fine:
    /// watchers that miss events catch up from the database.
    fn publish(&self, events: Vec<EventRecord>) {
        if self.events.receiver_count() == 0 {
            return;
        }
        for event in events {
            let _ = self.events.send(Arc::new(event));
        }
    }

    fn forget_run(&mut self, run_id: &str) {
        self.runs.remove(run_id);
        self.ready.remove_run(run_id);
        self.timers.remove_run(run_id);
        self.attempt_runs
            .retain(|_, attempt_run| attempt_run != run_id);
    }

    /// Sends to an executor without waiting. An executor whose queue is full
    /// is not reading its stream; it is dropped and its attempts re-queued.
    fn send_now(&mut self, executor_id: &str, command: ExecutorCommand) {
        let Some(executor) = self.executors.get(executor_id) else {
            return;
        };
        if let Err(error) = executor.outbound.try_send(command) {
            tracing::warn!(executor_id, %error, "executor not reading its stream; dropping it");
            self.disconnect(executor_id);
        }
    }

    fn run_of_attempt(&mut self, attempt_id: &str) -> Option<&mut RunState> {
        let run_id = self.attempt_runs.get(attempt_id)?;
        self.runs.get_mut(run_id)
    }

    fn mark_dirty(&mut self, run_id: &str) {
        if self.dirty_runs.last().map(String::as_str) != Some(run_id) {
            self.dirty_runs.push(run_id.to_owned());
        }
    }
}
