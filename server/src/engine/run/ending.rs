//! How a run ends before its tasks do: cancelled by a client, or aborted
//! when the database refuses its changes.

use super::*;

impl RunState {
    /// Cancels the run: no rule is evaluated any more, unfinished tasks
    /// become CANCELLED, and executors holding attempts are told to stop.
    pub fn cancel(
        &mut self,
        now_ms: i64,
        actions: &mut Vec<Action>,
    ) -> Result<(), AlreadyFinished> {
        self.ensure_active()?;
        self.stop_unfinished_tasks(None, "the run was cancelled", now_ms, actions);
        self.finish_run(RunStatus::Cancelled, now_ms, actions);
        Ok(())
    }

    /// Cancels the run as [`RunState::cancel`] does, with `reason` on its
    /// RUN_FINISHED and on its attempts' cancellations: a newer run of its
    /// concurrency key took its slot (`cancel_in_progress`).
    pub fn cancel_with_reason(
        &mut self,
        reason: &str,
        now_ms: i64,
        actions: &mut Vec<Action>,
    ) -> Result<(), AlreadyFinished> {
        self.ensure_active()?;
        self.stop_unfinished_tasks(None, reason, now_ms, actions);
        self.finish_run_with_error(RunStatus::Cancelled, Some(reason), now_ms, actions);
        Ok(())
    }

    /// The run's changes cannot be stored: every unfinished task FAILS with
    /// `reason` (attempts out are cancelled) and the run ends FAILED, so it
    /// is never left RUNNING with nobody driving it.
    pub fn abort(
        &mut self,
        reason: &str,
        now_ms: i64,
        actions: &mut Vec<Action>,
    ) -> Result<(), AlreadyFinished> {
        self.ensure_active()?;
        self.stop_unfinished_tasks(Some(reason), reason, now_ms, actions);
        self.finish_run_with_error(RunStatus::Failed, Some(reason), now_ms, actions);
        Ok(())
    }

    fn ensure_active(&self) -> Result<(), AlreadyFinished> {
        if self.status.is_terminal() {
            return Err(AlreadyFinished {
                run_id: self.id.clone(),
                status: self.status,
            });
        }
        Ok(())
    }

    /// Ends every unfinished task: CANCELLED, or FAILED with `failure` when
    /// given. Attempts out are cancelled with `reason`.
    fn stop_unfinished_tasks(
        &mut self,
        failure: Option<&str>,
        reason: &str,
        now_ms: i64,
        actions: &mut Vec<Action>,
    ) {
        for task in 0..self.tasks.len() {
            if self.tasks[task].state.is_terminal() {
                continue;
            }
            // The event names the attempt it stopped, if one was out.
            let mut details = match self.tasks[task].current.take() {
                Some(current) => {
                    self.update_attempt(&current.id, |attempt| {
                        attempt.state = AttemptState::Cancelled;
                        attempt.finished_at_ms = Some(now_ms);
                    });
                    let details = self.attempt_details(task, &current.id);
                    actions.push(Action::Cancel {
                        executor_id: current.executor_id,
                        attempt_id: current.id,
                        reason: reason.to_owned(),
                    });
                    details
                }
                None => self.task_details(task),
            };
            self.tasks[task].next_attempt_at_ms = None;
            let event = match failure {
                Some(error) => {
                    self.tasks[task].state = TaskState::Failed;
                    self.tasks[task].error = Some(error.to_owned());
                    details.error = Some(error.to_owned());
                    EventType::TaskFailed
                }
                None => {
                    self.tasks[task].state = TaskState::Cancelled;
                    EventType::TaskCancelled
                }
            };
            self.touch(task, now_ms);
            self.event(event, details, now_ms);
        }
    }
}
