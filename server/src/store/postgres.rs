//! The Postgres backend. Several servers may share one database: every
//! read-modify-write locks the rows it changes, so nothing assumes a single
//! process owns the data.

use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions};

use super::{Backend, Registration, Store, StoreError, StoredWorkflow, VersionSelector, queries};
use crate::definition::WorkflowSpec;
use crate::engine::records::{
    CreateRunOutcome, EventRecord, NewRun, RunChanges, RunDetail, RunFilter, RunRecord,
};

const LOCK_WORKFLOW: &str =
    "SELECT next_sequence FROM workflows WHERE namespace = $1 AND name = $2 FOR UPDATE";

pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to a `postgres://` URL and runs the migrations.
    pub async fn connect(database_url: &str) -> Result<PostgresStore, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .connect(database_url)
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

    async fn list_workflows(
        &self,
        namespace: &str,
        after_name: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StoredWorkflow>, StoreError> {
        queries::list_workflows(&self.pool, namespace, after_name, limit).await
    }

    async fn create_run(&self, _run: &NewRun) -> Result<CreateRunOutcome, StoreError> {
        todo!("store: create_run")
    }

    async fn find_run_by_idempotency_key(
        &self,
        _namespace: &str,
        _idempotency_key: &str,
    ) -> Result<Option<RunRecord>, StoreError> {
        todo!("store: find_run_by_idempotency_key")
    }

    async fn commit_changes(&self, _batch: &[RunChanges]) -> Result<Vec<EventRecord>, StoreError> {
        todo!("store: commit_changes")
    }

    async fn get_run(&self, _namespace: &str, _run_id: &str) -> Result<RunDetail, StoreError> {
        todo!("store: get_run")
    }

    async fn list_runs(
        &self,
        _namespace: &str,
        _filter: &RunFilter,
    ) -> Result<Vec<RunRecord>, StoreError> {
        todo!("store: list_runs")
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
