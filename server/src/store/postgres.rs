//! The Postgres backend. Several servers may share one database: every
//! read-modify-write locks the rows it changes, so nothing assumes a single
//! process owns the data.

use async_trait::async_trait;
use sqlx::Postgres;
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tributary_core::WorkflowSpec;

use super::key_queries;
use super::run_queries::{FIND_EXPIRED_RUNS_SKIP_LOCKED, RunQueries};
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
    "SELECT next_sequence FROM workflows WHERE namespace = $1 AND name = $2 FOR UPDATE";

// READ COMMITTED takes a new snapshot per statement; a multi-statement read
// needs REPEATABLE READ to see one state of the run.
const READ_SNAPSHOT: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to a `postgres://` URL and runs the migrations.
    pub async fn connect(database_url: &str) -> Result<PostgresStore, StoreError> {
        // Prepared statements are planned for their parameters each time:
        // a generic plan made while the tables were small scans them whole
        // once they are not (a 10,000-task chain took 4 ms a step that way).
        let options = PgConnectOptions::from_str(database_url)?
            .options([("plan_cache_mode", "force_custom_plan")]);
        super::postgres_connect::check_connection(&options).await?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PostgresStore { pool })
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn register_workflow(
        &self,
        namespace: &str,
        spec: &WorkflowSpec,
        now_ms: i64,
    ) -> Result<Registration, StoreError> {
        queries::register_workflow(&self.pool, LOCK_WORKFLOW, namespace, spec, now_ms).await
    }

    async fn get_workflow(
        &self,
        namespace: &str,
        name: &str,
        selector: &VersionSelector,
    ) -> Result<StoredWorkflow, StoreError> {
        queries::get_workflow(&self.pool, namespace, name, selector).await
    }

    async fn list_api_keys(&self) -> Result<Vec<StoredApiKey>, StoreError> {
        key_queries::list_api_keys(&self.pool).await
    }

    async fn insert_api_key(&self, key: &StoredApiKey) -> Result<(), StoreError> {
        key_queries::insert_api_key(&self.pool, key).await
    }

    async fn revoke_api_key(&self, key_id: &str, now_ms: i64) -> Result<(), StoreError> {
        key_queries::revoke_api_key(&self.pool, key_id, now_ms).await
    }

    async fn list_workflows(
        &self,
        namespace: &str,
        after_name: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StoredWorkflow>, StoreError> {
        queries::list_workflows(&self.pool, namespace, after_name, limit).await
    }

    async fn create_run(&self, run: &NewRun) -> Result<CreateRunOutcome, StoreError> {
        RunQueries::<Postgres>::create_run(&self.pool, run).await
    }

    async fn load_queued_runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        RunQueries::<Postgres>::load_queued_runs(&self.pool).await
    }

    async fn start_queued_run(&self, run: &NewRun) -> Result<Option<Vec<EventRecord>>, StoreError> {
        RunQueries::<Postgres>::start_queued_run(&self.pool, run).await
    }

    async fn cancel_queued_run(
        &self,
        run: &NewRun,
        now_ms: i64,
    ) -> Result<Option<Vec<EventRecord>>, StoreError> {
        RunQueries::<Postgres>::cancel_queued_run(&self.pool, run, now_ms).await
    }

    async fn create_runs(&self, runs: &[NewRun]) -> Result<Vec<EventRecord>, StoreError> {
        RunQueries::<Postgres>::create_runs(&self.pool, runs).await
    }

    async fn find_run_by_idempotency_key(
        &self,
        namespace: &str,
        idempotency_key: &str,
    ) -> Result<Option<RunRecord>, StoreError> {
        RunQueries::<Postgres>::find_run_by_idempotency_key(&self.pool, namespace, idempotency_key)
            .await
    }

    async fn commit_changes(&self, batch: &[RunChanges]) -> Result<Vec<EventRecord>, StoreError> {
        match RunQueries::<Postgres>::commit_as_one_statement(&self.pool, batch).await? {
            Some(events) => Ok(events),
            None => RunQueries::<Postgres>::commit_changes(&self.pool, batch).await,
        }
    }

    async fn retry_run(&self, retry: &RunRetry) -> Result<Vec<EventRecord>, StoreError> {
        RunQueries::<Postgres>::retry_run(&self.pool, retry).await
    }

    async fn get_run(&self, namespace: &str, run_id: &str) -> Result<RunDetail, StoreError> {
        RunQueries::<Postgres>::get_run(&self.pool, READ_SNAPSHOT, namespace, run_id).await
    }

    async fn list_runs(
        &self,
        namespace: &str,
        filter: &RunFilter,
    ) -> Result<Vec<RunRecord>, StoreError> {
        RunQueries::<Postgres>::list_runs(&self.pool, namespace, filter).await
    }

    async fn load_active_runs(&self) -> Result<Vec<(RunDetail, u64)>, StoreError> {
        RunQueries::<Postgres>::load_active_runs(&self.pool, READ_SNAPSHOT).await
    }

    async fn load_run(
        &self,
        namespace: &str,
        run_id: &str,
    ) -> Result<(RunDetail, u64), StoreError> {
        RunQueries::<Postgres>::load_run(&self.pool, READ_SNAPSHOT, namespace, run_id).await
    }

    async fn attempt_state(
        &self,
        namespace: &str,
        attempt_id: &str,
    ) -> Result<Option<StoredAttemptState>, StoreError> {
        RunQueries::<Postgres>::attempt_state(&self.pool, namespace, attempt_id).await
    }

    async fn newest_cursor(&self) -> Result<u64, StoreError> {
        RunQueries::<Postgres>::newest_cursor(&self.pool).await
    }

    async fn run_status(&self, namespace: &str, run_id: &str) -> Result<RunStatus, StoreError> {
        RunQueries::<Postgres>::run_status(&self.pool, namespace, run_id).await
    }

    async fn list_events(
        &self,
        namespace: &str,
        query: &EventQuery,
    ) -> Result<Vec<EventRecord>, StoreError> {
        RunQueries::<Postgres>::list_events(&self.pool, namespace, query).await
    }

    async fn delete_finished_runs(
        &self,
        finished_before_ms: i64,
        batch_limit: u32,
    ) -> Result<usize, StoreError> {
        RunQueries::<Postgres>::delete_finished_runs(
            &self.pool,
            FIND_EXPIRED_RUNS_SKIP_LOCKED,
            finished_before_ms,
            batch_limit,
        )
        .await
    }

    async fn insert_schedule(&self, schedule: &StoredSchedule) -> Result<bool, StoreError> {
        schedule_queries::insert_schedule(&self.pool, schedule).await
    }

    async fn get_schedule(
        &self,
        namespace: &str,
        schedule_id: &str,
    ) -> Result<StoredSchedule, StoreError> {
        schedule_queries::get_schedule(&self.pool, namespace, schedule_id).await
    }

    async fn list_schedules(
        &self,
        namespace: &str,
        after_id: &str,
        limit: u32,
    ) -> Result<Vec<StoredSchedule>, StoreError> {
        schedule_queries::list_schedules(&self.pool, namespace, after_id, limit).await
    }

    async fn list_unpaused_schedules(&self) -> Result<Vec<StoredSchedule>, StoreError> {
        schedule_queries::list_unpaused_schedules(&self.pool).await
    }

    async fn set_schedule_paused(
        &self,
        namespace: &str,
        schedule_id: &str,
        resume_at_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        schedule_queries::set_schedule_paused(&self.pool, namespace, schedule_id, resume_at_ms)
            .await
    }

    async fn record_schedule_progress(
        &self,
        schedule: &StoredSchedule,
        progress: &ScheduleProgress,
    ) -> Result<(), StoreError> {
        schedule_queries::record_schedule_progress(&self.pool, schedule, progress).await
    }

    async fn delete_schedule(&self, namespace: &str, schedule_id: &str) -> Result<(), StoreError> {
        schedule_queries::delete_schedule(&self.pool, namespace, schedule_id).await
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
