//! The retention job: a background task that deletes finished runs older
//! than the configured age, with everything under them (tasks, attempts,
//! deltas, conflicts and events), so the database does not grow forever.
//!
//! It wakes once per interval (and once at start-up), then deletes in small
//! batches, one transaction each, until a batch comes back short: a large
//! backlog never becomes one long transaction holding up the engine's
//! commits (on SQLite they share the single writer). Runs that have not
//! finished are never touched, however old.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::clock::now_unix_ms;
use crate::store::{Store, StoreError};

/// What the job keeps and how it works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionSettings {
    /// Finished runs older than this are deleted.
    pub keep_for: Duration,
    /// Time between sweeps.
    pub interval: Duration,
    /// Runs deleted per transaction.
    pub batch_runs: u32,
}

/// Starts the job; it stops when `shutdown` turns true.
pub fn spawn(
    store: Arc<dyn Store>,
    settings: RetentionSettings,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(settings.interval);
        // A sweep that overran its interval is followed by a pause, not by
        // a burst of catch-up sweeps.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.wait_for(|stopped| *stopped) => return,
            }
            let keep_for_ms = i64::try_from(settings.keep_for.as_millis()).unwrap_or(i64::MAX);
            let finished_before_ms = now_unix_ms().saturating_sub(keep_for_ms);
            match sweep(&*store, finished_before_ms, settings.batch_runs, &shutdown).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, "retention deleted expired runs"),
                // The next sweep tries again; nothing is lost by waiting.
                Err(error) => tracing::error!(%error, "retention sweep failed"),
            }
        }
    })
}

/// Deletes every run that finished before `finished_before_ms`, in batches
/// of `batch_runs` (at least 1), stopping early when `shutdown` turns true.
/// Returns how many runs were deleted.
pub async fn sweep(
    store: &dyn Store,
    finished_before_ms: i64,
    batch_runs: u32,
    shutdown: &watch::Receiver<bool>,
) -> Result<usize, StoreError> {
    // A batch of 0 would never come back short, so the loop would not end.
    let batch_runs = batch_runs.max(1);
    let mut deleted = 0;
    loop {
        let batch = store
            .delete_finished_runs(finished_before_ms, batch_runs)
            .await?;
        deleted += batch;
        if batch < batch_runs as usize || *shutdown.borrow() {
            return Ok(deleted);
        }
        // Each batch takes a connection anew, so the engine's commits
        // waiting for the writer get it in between.
        tokio::task::yield_now().await;
    }
}
