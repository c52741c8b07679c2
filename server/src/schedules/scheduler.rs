//! The scheduler task: evaluate every schedule that is not paused, start
//! the runs due, record the progress, sleep until the next fire time.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use super::SchedulerWake;
use super::clock::ScheduleClock;
use super::fire::{FireError, fire_time_text, start_fire_run};
use crate::dispatch::CoordinatorHandle;
use crate::engine::records::{EventRecord, EventType};
use crate::engine::schedule::{CronSchedule, OverlapPolicy};
use crate::engine::schedule_plan::{FireStep, OverlapState, due_fires, plan_fires};
use crate::store::{ScheduleProgress, Store, StoreError, StoredSchedule};

/// How the scheduler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerSettings {
    /// How long to wait (real time) before trying again when the database
    /// or the coordinator did not answer.
    pub retry_after: Duration,
}

impl Default for SchedulerSettings {
    fn default() -> SchedulerSettings {
        SchedulerSettings {
            retry_after: Duration::from_secs(1),
        }
    }
}

/// The scheduler and everything it talks to.
pub struct Scheduler {
    pub store: Arc<dyn Store>,
    pub coordinator: CoordinatorHandle,
    pub clock: Arc<dyn ScheduleClock>,
    pub wake: SchedulerWake,
    /// Committed events: a finished run may release a queued fire.
    pub events: broadcast::Receiver<Arc<EventRecord>>,
    pub stop: watch::Receiver<bool>,
    pub settings: SchedulerSettings,
}

/// What one evaluation found.
#[derive(Debug, Default)]
struct Evaluation {
    /// The earliest next fire time of any schedule.
    next_wake_ms: Option<i64>,
    /// Runs (namespace, run id) that queued fires wait for.
    awaited: HashSet<(String, String)>,
}

/// Why the scheduler stops waiting.
enum Wake {
    Evaluate,
    Stop,
}

impl Scheduler {
    pub fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(self.run())
    }

    async fn run(mut self) {
        loop {
            if *self.stop.borrow() {
                return;
            }
            let now_ms = self.clock.now_ms();
            let (next_wake_ms, awaited, retry) = match self.evaluate(now_ms).await {
                Ok(evaluation) => (evaluation.next_wake_ms, evaluation.awaited, false),
                Err(error) => {
                    tracing::warn!(%error, "scheduler could not evaluate schedules; trying again");
                    (None, HashSet::new(), true)
                }
            };
            if let Wake::Stop = self.wait(next_wake_ms, &awaited, retry).await {
                return;
            }
        }
    }

    async fn wait(
        &mut self,
        next_wake_ms: Option<i64>,
        awaited: &HashSet<(String, String)>,
        retry: bool,
    ) -> Wake {
        loop {
            let clock = self.clock.clone();
            let sleep = async move {
                match next_wake_ms {
                    Some(deadline) => clock.sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            let retry_after = self.settings.retry_after;
            let retry_sleep = async move {
                if retry {
                    tokio::time::sleep(retry_after).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                () = sleep => return Wake::Evaluate,
                () = retry_sleep => return Wake::Evaluate,
                () = self.wake.woken() => return Wake::Evaluate,
                event = self.events.recv() => match event {
                    Ok(event) => {
                        if event.event_type == EventType::RunFinished
                            && awaited.contains(&(event.namespace.clone(), event.run_id.clone()))
                        {
                            return Wake::Evaluate;
                        }
                    }
                    // Missed events may include an awaited run's end.
                    Err(broadcast::error::RecvError::Lagged(_)) => return Wake::Evaluate,
                    Err(broadcast::error::RecvError::Closed) => return Wake::Stop,
                },
                _ = self.stop.wait_for(|stopped| *stopped) => return Wake::Stop,
            }
        }
    }

    async fn evaluate(&self, now_ms: i64) -> Result<Evaluation, FireError> {
        let mut evaluation = Evaluation::default();
        for schedule in self.store.list_unpaused_schedules().await? {
            let cron = match CronSchedule::parse(&schedule.cron, &schedule.time_zone) {
                Ok(cron) => cron,
                Err(error) => {
                    // Validated when created; a row that no longer parses
                    // (an older time zone database) is left alone.
                    tracing::error!(
                        namespace = %schedule.namespace,
                        schedule_id = %schedule.schedule_id,
                        %error,
                        "schedule cannot be evaluated"
                    );
                    continue;
                }
            };
            let progress = self.fire_schedule(&schedule, &cron, now_ms).await?;
            if let Some(next) = cron.next_after(progress.cursor_ms.max(now_ms)) {
                evaluation.next_wake_ms =
                    Some(evaluation.next_wake_ms.map_or(next, |wake| wake.min(next)));
            }
            if progress.queued_fire_ms.is_some()
                && let Some(run_id) = progress.last_run_id
            {
                evaluation
                    .awaited
                    .insert((schedule.namespace.clone(), run_id));
            }
        }
        Ok(evaluation)
    }

    /// Deals with the fire times of one schedule due at `now_ms`; returns
    /// its progress afterwards.
    async fn fire_schedule(
        &self,
        schedule: &StoredSchedule,
        cron: &CronSchedule,
        now_ms: i64,
    ) -> Result<ScheduleProgress, FireError> {
        let mut progress = schedule.progress.clone();
        let due = due_fires(cron, progress.cursor_ms, now_ms, schedule.catch_up);
        let queued = progress.queued_fire_ms;
        if due.through_ms.is_none() && queued.is_none() {
            return Ok(progress);
        }
        let needs_previous =
            queued.is_some() || (!due.fire.is_empty() && schedule.overlap != OverlapPolicy::Allow);
        let previous_active = match (&progress.last_run_id, needs_previous) {
            (Some(run_id), true) => {
                match self.store.run_status(&schedule.namespace, run_id).await {
                    Ok(status) => !status.is_terminal(),
                    // Deleted by retention: long finished.
                    Err(StoreError::NotFound(_)) => false,
                    Err(error) => return Err(error.into()),
                }
            }
            _ => false,
        };
        let (steps, still_queued) = plan_fires(
            schedule.overlap,
            OverlapState {
                previous_active,
                queued_ms: queued,
            },
            &due.fire,
        );
        if due.through_ms.is_none() && still_queued == queued {
            // A queued fire still waiting, nothing new: nothing to record.
            return Ok(progress);
        }
        for step in steps {
            self.apply(schedule, step, &mut progress).await?;
        }
        if let Some(through) = due.through_ms {
            progress.cursor_ms = progress.cursor_ms.max(through);
        }
        progress.queued_fire_ms = still_queued;
        self.store
            .record_schedule_progress(schedule, &progress)
            .await?;
        Ok(progress)
    }

    async fn apply(
        &self,
        schedule: &StoredSchedule,
        step: FireStep,
        progress: &mut ScheduleProgress,
    ) -> Result<(), FireError> {
        let (namespace, schedule_id) = (&schedule.namespace, &schedule.schedule_id);
        match step {
            FireStep::Start(fire_ms) => {
                match start_fire_run(&*self.store, &self.coordinator, schedule, fire_ms).await {
                    Ok(run_id) => {
                        tracing::info!(
                            %namespace, %schedule_id, fire_time = %fire_time_text(fire_ms), %run_id,
                            "schedule fired"
                        );
                        progress.last_fire_ms = Some(fire_ms);
                        progress.last_run_id = Some(run_id);
                        progress.last_error = None;
                    }
                    Err(FireError::Refused(reason)) => {
                        tracing::warn!(
                            %namespace, %schedule_id, fire_time = %fire_time_text(fire_ms), %reason,
                            "schedule fire started no run"
                        );
                        progress.last_error = Some(reason);
                    }
                    Err(transient) => return Err(transient),
                }
            }
            FireStep::Skip(fire_ms) => tracing::info!(
                %namespace, %schedule_id, fire_time = %fire_time_text(fire_ms),
                "schedule fire skipped: its previous run is still active"
            ),
            FireStep::Queue(fire_ms) => tracing::info!(
                %namespace, %schedule_id, fire_time = %fire_time_text(fire_ms),
                "schedule fire queued until its previous run ends"
            ),
        }
        Ok(())
    }
}
