//! The coordinator task: its state, its loop, and what a turn does with
//! commands, timers and ready tasks. Starting and ending runs are in
//! `runs.rs`, re-running finished ones in `rerun.rs`, executors' results in
//! `results.rs`, value references in `values.rs`, committing a turn in
//! `commit.rs`, what it tells operators (departures, waiting tasks) in
//! `reporting.rs`, assigning ready tasks to executors in `assign.rs`.

mod assign;
mod commit;
mod concurrency;
mod reporting;
mod rerun;
mod results;
mod runs;
mod values;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;

use super::executors::{
    ExecutorCommand, ExecutorRegistration, ExecutorRegistry, LastHeard, StreamEnd, StreamHandles,
};
use super::handle::{
    CancelOutcome, Command, CoordinatorHandle, DispatchError, DispatchSettings, ExecutorSnapshot,
};
use super::handler_in_flight::HandlerInFlight;
use super::ready_queue::{ReadyKey, ReadyQueue};
use super::timers::{TimerKind, Timers};
use super::waiting::{self, UnservedWarnings};
use crate::clock::now_unix_ms;
use crate::engine::concurrency::{ConcurrencyKeys, KeyScope};
use crate::engine::plan::WorkflowPlan;
use crate::engine::records::EventRecord;
use crate::engine::retry::random_jitter_factor;
use crate::engine::run::{Action, RunState};
use crate::store::{Store, StoreError};
use crate::telemetry::Observer;
use reporting::Departure;
use results::UnresolvedResult;

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
    unresolved_results: Vec<UnresolvedResult>,
    /// Fault injection for crash tests: abort the process right after this
    /// many commits, before anything acts on the last one.
    crash_after_commits: Option<u64>,
    /// Fault injection for tests: the database "refuses" any commit holding
    /// a result of a task with this id, as it would refuse content it
    /// cannot store.
    refuse_results_of_task: Option<String>,
    commits: u64,
    /// Set while the dirty runs hold only changes nobody waits for: when
    /// they must be committed even if no other turn comes.
    commit_deadline: Option<Instant>,
    /// Metrics, logs and spans of what was committed.
    observer: Observer,
    /// Handlers already warned about as served by no executor.
    unserved: UnservedWarnings,
    /// Off while recovering: no executor can have reconnected yet, so a
    /// restored READY task is not a sign that its handler has no worker.
    warn_unserved: bool,
    /// The active and queued runs of every concurrency key.
    concurrency: ConcurrencyKeys,
    /// Queued runs whose key has a free slot for them: started at the next
    /// turn (their inputs are read back from the database).
    pending_dequeues: Vec<(KeyScope, String)>,
    /// Attempts in flight per handler, for tasks with `max_in_flight`.
    handler_in_flight: HandlerInFlight,
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
        observer: Observer,
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
            refuse_results_of_task: std::env::var("TRIBUTARY_TEST_REFUSE_RESULTS_OF_TASK").ok(),
            commits: 0,
            commit_deadline: None,
            observer,
            unserved: UnservedWarnings::default(),
            warn_unserved: false,
            concurrency: ConcurrencyKeys::new(),
            pending_dequeues: Vec::new(),
            handler_in_flight: HandlerInFlight::default(),
        };
        coordinator.recover().await?;
        coordinator.warn_unserved = true;
        coordinator.open_reclaim_window();
        let task = tokio::spawn(coordinator.run(receiver, shutdown));
        Ok((CoordinatorHandle { commands }, task))
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
                || !self.after_commit.is_empty()
                || !self.pending_dequeues.is_empty();
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
                    Command::StartRun { command, reply }
                        if command.idempotency_key.is_none()
                            && command.concurrency_key.is_none() =>
                    {
                        starts.push((command, reply));
                    }
                    command => self.handle(command).await,
                }
            }
            self.start_runs(starts).await;
            self.start_dequeued_runs().await;
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
            } => {
                if self.concurrency.is_queued(&run_id) {
                    self.cancel_queued_run(&namespace, &run_id, reply).await;
                } else {
                    self.cancel_run(&namespace, &run_id, reply);
                }
            }
            Command::RetryRun { command, reply } => {
                let result = self.retry_run(command).await;
                let _ = reply.send(result);
            }
            Command::Register {
                namespace,
                registration,
                outbound,
                stream_guard,
                last_heard,
                reply,
            } => {
                let executor_id =
                    self.register(namespace, registration, outbound, stream_guard, last_heard);
                let _ = reply.send(executor_id);
            }
            Command::Executor { executor_id, event } => self.executor_event(&executor_id, event),
            Command::Disconnected {
                executor_id,
                reason,
            } => self.disconnect(&executor_id, Departure::Stream(reason)),
            Command::Snapshot { reply } => {
                let _ = reply.send(waiting::snapshot(
                    self.runs.len(),
                    self.concurrency.queued_by_namespace(),
                    &self.executors,
                    &self.ready,
                    &self.handler_in_flight,
                ));
            }
            Command::WaitingReasons {
                namespace,
                run_id,
                reply,
            } => {
                let _ = reply.send(self.waiting_reasons(&namespace, &run_id));
            }
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
                        context_bytes_sent: executor.held.context_bytes_sent,
                        values_sent_by_reference: executor.held.values_sent_by_reference,
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
        last_heard: LastHeard,
    ) -> Result<String, DispatchError> {
        let connected = self.executors.count_in_namespace(&namespace);
        let quota = self.settings.max_executors_per_namespace;
        if connected >= quota {
            return Err(DispatchError::QuotaExceeded(format!(
                "namespace {namespace:?} already has {connected} executors connected, the max_executors_per_namespace quota of {quota}"
            )));
        }
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
            handlers = registration.handlers.len(),
            capacity = registration.capacity,
            held = registration.held_attempt_ids.len(),
            "executor connected"
        );
        let held = registration.held_attempt_ids.clone();
        let instance_id = registration.instance_id.clone();
        self.unserved.served(&namespace, &registration);
        self.executors.add(
            executor_id.clone(),
            namespace,
            registration,
            StreamHandles {
                outbound,
                stream_guard,
                last_heard,
            },
            now_ms,
        );
        self.timers.insert(
            now_ms.saturating_add(self.lease_ms()),
            TimerKind::LeaseCheck {
                executor_id: executor_id.clone(),
            },
        );
        for attempt_id in held {
            // Only the instance the attempt was assigned to may reclaim it;
            // another's claim leaves the orphan waiting for its owner.
            let reclaimed = match self.orphans.get(&attempt_id) {
                Some(run_id) => self.runs.get_mut(run_id).is_some_and(|run| {
                    run.rebind_attempt(&attempt_id, &executor_id, &instance_id, now_ms)
                }),
                None => false,
            };
            if reclaimed {
                self.orphans.remove(&attempt_id);
            }
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
        Ok(executor_id)
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.settings.lease_timeout_ms).unwrap_or(i64::MAX)
    }

    /// The executor's attempt ended, whatever its outcome: its slot is free.
    fn release_slot(&mut self, executor_id: &str, attempt_id: &str) {
        if let Some(executor) = self.executors.get_mut(executor_id)
            && executor.in_flight.remove(attempt_id)
        {
            self.handler_in_flight.ended(attempt_id);
        }
    }

    fn disconnect(&mut self, executor_id: &str, departure: Departure) {
        let Some(executor) = self.executors.remove(executor_id) else {
            return;
        };
        reporting::log_departure(&executor, departure);
        let now_ms = now_unix_ms();
        for attempt_id in executor.in_flight {
            self.handler_in_flight.ended(&attempt_id);
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
                    let expires_ms = executor.last_heard.get().saturating_add(self.lease_ms());
                    if now_ms >= expires_ms {
                        tracing::warn!(executor_id, "executor lease expired; dropping it");
                        let end = StreamEnd::LeaseExpired {
                            lease_timeout_ms: self.settings.lease_timeout_ms,
                        };
                        self.send_now(&executor_id, ExecutorCommand::Close(end));
                        self.disconnect(&executor_id, Departure::LeaseExpired);
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
                    self.handler_in_flight.ended(&attempt_id);
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

    pub(super) fn apply_actions(&mut self, run_id: &str, actions: Vec<Action>) {
        self.mark_dirty(run_id);
        for action in actions {
            match action {
                Action::Expand(task) => {
                    // Expanding makes the instances READY (or settles the
                    // task at once): their actions are applied in turn.
                    let mut expanded = Vec::new();
                    if let Some(run) = self.runs.get_mut(run_id) {
                        run.expand(task, now_unix_ms(), &mut expanded);
                    }
                    self.apply_actions(run_id, expanded);
                }
                Action::Enqueue(task) => {
                    if let Some(run) = self.runs.get(run_id) {
                        let key = ReadyKey::for_unit(run, task);
                        if self.warn_unserved
                            && let Some(reason) = self.unserved.should_warn(&key, &self.executors)
                        {
                            reporting::warn_unserved(&key, reason, run.task_id_of(task), run_id);
                        }
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

    /// Sends to an executor as it is, without waiting. An executor whose
    /// queue is full is not reading its stream; it is dropped and its
    /// attempts re-queued.
    fn push(&mut self, executor_id: &str, command: ExecutorCommand) {
        let Some(executor) = self.executors.get(executor_id) else {
            return;
        };
        if let Err(error) = executor.outbound.try_send(command) {
            tracing::warn!(executor_id, %error, "executor not reading its stream; dropping it");
            self.disconnect(executor_id, Departure::NotReading);
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
