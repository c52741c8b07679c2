//! The end of a turn: committing what it changed, then doing what waited
//! for the commit.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::results::{ReportedEnd, UnresolvedResult};
use super::{AfterCommit, Coordinator};
use crate::clock::now_unix_ms;
use crate::dispatch::executors::{ExecutorCommand, ResultAnswer};
use crate::dispatch::handle::CancelOutcome;
use crate::engine::records::{AttemptState, EventRecord, RunChanges};
use crate::engine::run::{Action, RunState};
use crate::store::StoreError;

/// How long changes that nobody waits for (an executor reporting an attempt
/// started, a reclaimed attempt) may wait to be committed with the next
/// turn's. A fast task's Started and Completed then share one transaction
/// instead of taking two, which halves the commits of a chain. A crash
/// within this window loses only such reports: an attempt whose start was
/// not committed is recovered as ASSIGNED, which recovery treats as in
/// flight just like RUNNING.
pub(super) const COMMIT_LINGER: Duration = Duration::from_millis(2);

impl Coordinator {
    /// Commits the turn's changes, then carries out what waited for them.
    /// Changes nobody waits for are deferred up to [`COMMIT_LINGER`] (unless
    /// `now`), to be committed with a later turn's.
    pub(super) async fn flush(&mut self, now: bool) {
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
        let (evicted, evicted_attempts) = if batch.is_empty() {
            (HashSet::new(), HashSet::new())
        } else {
            let started = std::time::Instant::now();
            let dropped = self.commit(batch).await;
            self.observer
                .metrics()
                .commit_latency
                .observe(started.elapsed());
            self.commits += 1;
            if self
                .crash_after_commits
                .is_some_and(|limit| self.commits >= limit)
            {
                tracing::error!(commits = self.commits, "crash point reached: aborting");
                std::process::abort();
            }
            dropped
        };
        for unresolved in std::mem::take(&mut self.unresolved_results) {
            let Some(answer) = self.answer_from_store(&unresolved).await else {
                continue;
            };
            self.acknowledge(
                &unresolved.reporter.executor_id,
                unresolved.attempt_id,
                answer,
            );
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
                    command:
                        ExecutorCommand::ResultAck {
                            attempt_id,
                            answer: ResultAnswer::Accepted | ResultAnswer::Rejected(_),
                        },
                } if evicted_attempts.contains(&attempt_id) => {
                    // What the result caused was never committed, and the
                    // run has ended without it.
                    self.send_now(
                        &executor_id,
                        ExecutorCommand::ResultAck {
                            attempt_id,
                            answer: ResultAnswer::Stale,
                        },
                    );
                }
                AfterCommit::Send {
                    executor_id,
                    command,
                } => {
                    if let ExecutorCommand::Assign { assignment, .. } = &command {
                        let waited_ms = now_unix_ms().saturating_sub(assignment.ready_since_ms);
                        self.observer
                            .metrics()
                            .dispatch_latency
                            .observe(Duration::from_millis(u64::try_from(waited_ms).unwrap_or(0)));
                    }
                    self.send_now(&executor_id, command);
                }
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
    /// it is durable. A batch the database rejects for its content (a bug:
    /// the API edge refuses what the databases cannot store) is committed
    /// run by run, and a run whose changes still fail is ended FAILED from
    /// its last committed state, so one bad run cannot wedge the others nor
    /// stay RUNNING with nobody driving it. Returns the runs whose changes
    /// were dropped, and the attempts those changes touched.
    pub(super) async fn commit(
        &mut self,
        batch: Vec<RunChanges>,
    ) -> (HashSet<String>, HashSet<String>) {
        let mut evicted = HashSet::new();
        let mut evicted_attempts = HashSet::new();
        match self.commit_retrying(&batch).await {
            Ok(()) => return (evicted, evicted_attempts),
            Err(error) => {
                tracing::error!(%error, runs = batch.len(), "batch rejected; committing run by run");
            }
        }
        for changes in batch {
            if let Err(error) = self.commit_retrying(std::slice::from_ref(&changes)).await {
                tracing::error!(
                    run_id = changes.run_id,
                    %error,
                    "the run's changes cannot be stored; ending the run FAILED"
                );
                evicted.insert(changes.run_id.clone());
                evicted_attempts.extend(changes.new_attempts.iter().map(|a| a.id.clone()));
                evicted_attempts.extend(changes.attempt_updates.iter().map(|a| a.id.clone()));
                self.forget_run(&changes.run_id);
                self.end_unstorable_run(&changes.namespace, &changes.run_id)
                    .await;
            }
        }
        (evicted, evicted_attempts)
    }

    /// Ends FAILED a run whose changes the database refused: reloads its
    /// last committed state and fails what is unfinished there. If even
    /// that cannot be stored, the run stays as stored and the next start
    /// recovers it.
    async fn end_unstorable_run(&mut self, namespace: &str, run_id: &str) {
        const REASON: &str = "the server could not store this run's changes (a database error; the server log has the details)";
        let restored = match self.store.load_run(namespace, run_id).await {
            Ok((detail, last_sequence)) => match self.recovered_plan(&detail.run).await {
                Ok(plan) => RunState::restore(plan, self.settings.run, &detail, last_sequence + 1)
                    .map_err(|error| error.to_string()),
                Err(error) => Err(error.to_string()),
            },
            Err(error) => Err(error.to_string()),
        };
        let mut run = match restored {
            Ok((run, _)) => run,
            Err(error) => {
                tracing::error!(run_id, error, "cannot reload the run to end it");
                return;
            }
        };
        let mut actions = Vec::new();
        if run.abort(REASON, now_unix_ms(), &mut actions).is_err() {
            return;
        }
        let changes = run.take_changes();
        if let Err(error) = self.commit_retrying(std::slice::from_ref(&changes)).await {
            tracing::error!(run_id, %error, "cannot store the run's failure either");
            return;
        }
        for action in actions {
            if let Action::Cancel {
                executor_id,
                attempt_id,
                reason,
            } = action
            {
                self.send_now(&executor_id, ExecutorCommand::Cancel { attempt_id, reason });
            }
        }
    }

    /// The answer to a result for an attempt whose run is not in memory,
    /// from what the database recorded; `None` when it cannot be read now
    /// (the executor resends after its next reconnect).
    async fn answer_from_store(&self, unresolved: &UnresolvedResult) -> Option<ResultAnswer> {
        let reporter = &unresolved.reporter;
        let stored = match self
            .store
            .attempt_state(&reporter.namespace, &unresolved.attempt_id)
            .await
        {
            Ok(stored) => stored,
            Err(error) => {
                tracing::error!(attempt_id = unresolved.attempt_id, %error, "cannot look up a late result; not answering it");
                return None;
            }
        };
        let Some(stored) = stored else {
            return Some(ResultAnswer::NotHeld);
        };
        if !stored.instance_id.is_empty() && stored.instance_id != reporter.instance_id {
            return Some(ResultAnswer::NotHeld);
        }
        // A copy of the result that ended the attempt is answered as that
        // one was; anything else is stale.
        Some(match (stored.state, &unresolved.end) {
            (AttemptState::Succeeded, ReportedEnd::Completed(_)) => ResultAnswer::Accepted,
            (AttemptState::Failed, ReportedEnd::Failed { .. }) => ResultAnswer::Accepted,
            (AttemptState::Failed, ReportedEnd::Rejected(reason)) => {
                ResultAnswer::Rejected(reason.clone())
            }
            _ => ResultAnswer::Stale,
        })
    }

    /// Retries transient failures with backoff; returns the first
    /// permanent one.
    pub(super) async fn commit_retrying(&mut self, batch: &[RunChanges]) -> Result<(), StoreError> {
        if let Some(task_id) = &self.refuse_results_of_task
            && batch
                .iter()
                .flat_map(|changes| &changes.deltas)
                .any(|delta| &delta.task_id == task_id)
        {
            return Err(StoreError::Corrupt(format!(
                "the test hook refuses results of task {task_id:?}"
            )));
        }
        let mut delay = Duration::from_millis(10);
        loop {
            match self.store.commit_changes(batch).await {
                Ok(events) => {
                    self.observer.on_commit(batch);
                    self.publish(events);
                    return Ok(());
                }
                Err(error) if error.is_transient() => {
                    self.observer.metrics().database_error("commit");
                    tracing::error!(%error, retry_in_ms = delay.as_millis() as u64, "commit failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(error) => {
                    self.observer.metrics().database_error("commit");
                    return Err(error);
                }
            }
        }
    }

    /// Hands committed events to live watchers. Nobody listening is fine:
    /// watchers that miss events catch up from the database.
    pub(super) fn publish(&mut self, events: Vec<EventRecord>) {
        self.observer.on_events(&events);
        if self.events.receiver_count() == 0 {
            return;
        }
        for event in events {
            let _ = self.events.send(Arc::new(event));
        }
    }
}
