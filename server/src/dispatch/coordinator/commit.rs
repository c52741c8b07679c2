//! The end of a turn: committing what it changed, then doing what waited
//! for the commit.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{AfterCommit, Coordinator};
use crate::dispatch::executors::ExecutorCommand;
use crate::dispatch::handle::CancelOutcome;
use crate::engine::records::{AttemptState, EventRecord, RunChanges};
use crate::engine::run::ResultDisposition;
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
    pub(super) async fn commit(&mut self, batch: Vec<RunChanges>) -> HashSet<String> {
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
    pub(super) async fn commit_retrying(&self, batch: &[RunChanges]) -> Result<(), StoreError> {
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
    pub(super) fn publish(&self, events: Vec<EventRecord>) {
        if self.events.receiver_count() == 0 {
            return;
        }
        for event in events {
            let _ = self.events.send(Arc::new(event));
        }
    }
}
