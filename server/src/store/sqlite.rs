//! The SQLite backend: one file, WAL mode, one writer connection (SQLite
//! serializes writers anyway; a single connection makes that explicit and
//! avoids busy errors) beside a pool of readers.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Sqlite;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use tributary_core::WorkflowSpec;

use super::key_queries;
use super::run_queries::{FIND_EXPIRED_RUNS, RunQueries};
use super::schedule_queries;
use super::{
    Backend, Registration, Store, StoreError, StoredApiKey, StoredAttemptState, StoredWorkflow,
    VersionSelector, queries,
};
use super::{ScheduleProgress, StoredSchedule};
use crate::engine::records::{
    CreateRunOutcome, EventQuery, EventRecord, NewRun, RunChanges, RunDetail, RunFilter, RunRecord,
    RunRetry, RunStatus,
};

const LOCK_WORKFLOW: &str =
    "SELECT next_sequence FROM workflows WHERE namespace = $1 AND name = $2";

// In WAL mode a read transaction sees one snapshot from its first read on,
// so a plain deferred BEGIN is enough for a consistent multi-statement read.
const READ_SNAPSHOT: &str = "BEGIN";

/// How often the WAL is checkpointed into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);

pub struct SqliteStore {
    writer: SqlitePool,
    readers: SqlitePool,
    /// Set by every write; the checkpointer only checkpoints after some, so
    /// an idle server issues no queries.
    written: Arc<AtomicBool>,
    checkpointer: tokio::task::JoinHandle<()>,
}

impl SqliteStore {
    /// The writer pool, noting that the WAL will grow.
    fn writer(&self) -> &SqlitePool {
        self.written.store(true, Ordering::Relaxed);
        &self.writer
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.checkpointer.abort();
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the database file of a `sqlite://` URL and
    /// runs the migrations.
    pub async fn connect(database_url: &str) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str(database_url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // In WAL mode NORMAL is durable against process crashes; only an
            // OS crash or power loss can drop the last transactions.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        // The writer never checkpoints: SQLite would do it inside whichever
        // commit crosses the threshold, stalling that turn for milliseconds.
        // A connection of its own does it in the background instead.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone().pragma("wal_autocheckpoint", "0"))
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone().read_only(true))
            .await?;
        let checkpoints = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        let written = Arc::new(AtomicBool::new(false));
        Ok(SqliteStore {
            writer,
            readers,
            checkpointer: tokio::spawn(checkpoint_periodically(checkpoints, written.clone())),
            written,
        })
    }
}

/// Copies the WAL into the database file now and then. PASSIVE never waits
/// for (or blocks) the writer or the readers; it copies what it can, and the
/// writer starts the WAL over once a checkpoint has caught up.
async fn checkpoint_periodically(pool: SqlitePool, written: Arc<AtomicBool>) {
    let mut interval = tokio::time::interval(CHECKPOINT_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if !written.swap(false, Ordering::Relaxed) {
            continue;
        }
        if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            tracing::warn!(%error, "WAL checkpoint failed; retrying later");
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn register_workflow(
        &self,
        namespace: &str,
        spec: &WorkflowSpec,
        now_ms: i64,
    ) -> Result<Registration, StoreError> {
        queries::register_workflow(self.writer(), LOCK_WORKFLOW, namespace, spec, now_ms).await
    }

    async fn get_workflow(
        &self,
        namespace: &str,
        name: &str,
        selector: &VersionSelector,
    ) -> Result<StoredWorkflow, StoreError> {
        queries::get_workflow(&self.readers, namespace, name, selector).await
    }

    async fn list_api_keys(&self) -> Result<Vec<StoredApiKey>, StoreError> {
        key_queries::list_api_keys(&self.readers).await
    }

    async fn insert_api_key(&self, key: &StoredApiKey) -> Result<(), StoreError> {
        key_queries::insert_api_key(self.writer(), key).await
    }

    async fn revoke_api_key(&self, key_id: &str, now_ms: i64) -> Result<(), StoreError> {
        key_queries::revoke_api_key(self.writer(), key_id, now_ms).await
    }

    async fn list_workflows(
        &self,
        namespace: &str,
        after_name: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StoredWorkflow>, StoreError> {
        queries::list_workflows(&self.readers, namespace, after_name, limit).await
    }

    async fn create_run(&self, run: &NewRun) -> Result<CreateRunOutcome, StoreError> {
        RunQueries::<Sqlite>::create_run(self.writer(), run).await
    }

    async fn load_queued_runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        RunQueries::<Sqlite>::load_queued_runs(&self.readers).await
    }

    async fn start_queued_run(&self, run: &NewRun) -> Result<Option<Vec<EventRecord>>, StoreError> {
        RunQueries::<Sqlite>::start_queued_run(self.writer(), run).await
    }

    async fn cancel_queued_run(
        &self,
        run: &NewRun,
        now_ms: i64,
    ) -> Result<Option<Vec<EventRecord>>, StoreError> {
        RunQueries::<Sqlite>::cancel_queued_run(self.writer(), run, now_ms).await
    }

    async fn create_runs(&self, runs: &[NewRun]) -> Result<Vec<EventRecord>, StoreError> {
        RunQueries::<Sqlite>::create_runs(self.writer(), runs).await
    }

    async fn find_run_by_idempotency_key(
        &self,
        namespace: &str,
        idempotency_key: &str,
    ) -> Result<Option<RunRecord>, StoreError> {
        RunQueries::<Sqlite>::find_run_by_idempotency_key(&self.readers, namespace, idempotency_key)
            .await
    }

    async fn commit_changes(&self, batch: &[RunChanges]) -> Result<Vec<EventRecord>, StoreError> {
        match RunQueries::<Sqlite>::commit_as_script(self.writer(), batch).await? {
            Some(events) => Ok(events),
            None => RunQueries::<Sqlite>::commit_changes(&self.writer, batch).await,
        }
    }

    async fn retry_run(&self, retry: &RunRetry) -> Result<Vec<EventRecord>, StoreError> {
        RunQueries::<Sqlite>::retry_run(self.writer(), retry).await
    }

    async fn get_run(&self, namespace: &str, run_id: &str) -> Result<RunDetail, StoreError> {
        RunQueries::<Sqlite>::get_run(&self.readers, READ_SNAPSHOT, namespace, run_id).await
    }

    async fn list_runs(
        &self,
        namespace: &str,
        filter: &RunFilter,
    ) -> Result<Vec<RunRecord>, StoreError> {
        RunQueries::<Sqlite>::list_runs(&self.readers, namespace, filter).await
    }

    async fn load_active_runs(&self) -> Result<Vec<(RunDetail, u64)>, StoreError> {
        RunQueries::<Sqlite>::load_active_runs(&self.readers, READ_SNAPSHOT).await
    }

    async fn load_run(
        &self,
        namespace: &str,
        run_id: &str,
    ) -> Result<(RunDetail, u64), StoreError> {
        RunQueries::<Sqlite>::load_run(&self.readers, READ_SNAPSHOT, namespace, run_id).await
    }

    async fn attempt_state(
        &self,
        namespace: &str,
        attempt_id: &str,
    ) -> Result<Option<StoredAttemptState>, StoreError> {
        RunQueries::<Sqlite>::attempt_state(&self.readers, namespace, attempt_id).await
    }

    async fn newest_cursor(&self) -> Result<u64, StoreError> {
        RunQueries::<Sqlite>::newest_cursor(&self.readers).await
    }

    async fn run_status(&self, namespace: &str, run_id: &str) -> Result<RunStatus, StoreError> {
        RunQueries::<Sqlite>::run_status(&self.readers, namespace, run_id).await
    }

    async fn list_events(
        &self,
        namespace: &str,
        query: &EventQuery,
    ) -> Result<Vec<EventRecord>, StoreError> {
        RunQueries::<Sqlite>::list_events(&self.readers, namespace, query).await
    }

    async fn delete_finished_runs(
        &self,
        finished_before_ms: i64,
        batch_limit: u32,
    ) -> Result<usize, StoreError> {
        RunQueries::<Sqlite>::delete_finished_runs(
            self.writer(),
            FIND_EXPIRED_RUNS,
            finished_before_ms,
            batch_limit,
        )
        .await
    }

    async fn insert_schedule(&self, schedule: &StoredSchedule) -> Result<bool, StoreError> {
        schedule_queries::insert_schedule(self.writer(), schedule).await
    }

    async fn get_schedule(
        &self,
        namespace: &str,
        schedule_id: &str,
    ) -> Result<StoredSchedule, StoreError> {
        schedule_queries::get_schedule(&self.readers, namespace, schedule_id).await
    }

    async fn list_schedules(
        &self,
        namespace: &str,
        after_id: &str,
        limit: u32,
    ) -> Result<Vec<StoredSchedule>, StoreError> {
        schedule_queries::list_schedules(&self.readers, namespace, after_id, limit).await
    }

    async fn list_unpaused_schedules(&self) -> Result<Vec<StoredSchedule>, StoreError> {
        schedule_queries::list_unpaused_schedules(&self.readers).await
    }

    async fn set_schedule_paused(
        &self,
        namespace: &str,
        schedule_id: &str,
        resume_at_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        schedule_queries::set_schedule_paused(self.writer(), namespace, schedule_id, resume_at_ms)
            .await
    }

    async fn record_schedule_progress(
        &self,
        schedule: &StoredSchedule,
        progress: &ScheduleProgress,
    ) -> Result<(), StoreError> {
        schedule_queries::record_schedule_progress(self.writer(), schedule, progress).await
    }

    async fn delete_schedule(&self, namespace: &str, schedule_id: &str) -> Result<(), StoreError> {
        schedule_queries::delete_schedule(self.writer(), namespace, schedule_id).await
    }

    async fn close(&self) {
        self.readers.close().await;
        self.writer.close().await;
    }
}
