//! The scheduler: one background task that starts the runs of schedules at
//! their fire times. What is due and what a fire does are decided by the
//! engine (`engine/schedule_plan.rs`); this module reads schedules, asks
//! the clock, starts runs through the coordinator as `StartRun` does, and
//! records its progress.
//!
//! It is driven by its clock and by wake-ups, never by polling: it sleeps
//! until the earliest next fire time, and wakes early when the API changes
//! a schedule or when a run a queued fire waits for finishes.

pub mod clock;
mod fire;
mod scheduler;

use std::sync::Arc;

use tokio::sync::Notify;

pub use clock::{ManualClock, ScheduleClock, WallClock};
pub use scheduler::{Scheduler, SchedulerSettings};

/// Wakes the scheduler to evaluate every schedule again, after the API
/// created, paused, resumed or deleted one.
#[derive(Debug, Clone, Default)]
pub struct SchedulerWake {
    notify: Arc<Notify>,
}

impl SchedulerWake {
    pub fn wake(&self) {
        // A permit is kept when the scheduler is busy, so no wake is lost.
        self.notify.notify_one();
    }

    pub(crate) async fn woken(&self) {
        self.notify.notified().await;
    }
}
