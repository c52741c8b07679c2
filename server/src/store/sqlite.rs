//! The SQLite backend: one file, WAL mode, one writer connection (SQLite
//! serializes writers anyway; a single connection makes that explicit and
//! avoids busy errors) beside a pool of readers.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::{Backend, Registration, Store, StoreError, StoredWorkflow, VersionSelector, queries};
use crate::definition::WorkflowSpec;
use crate::engine::records::{
    CreateRunOutcome, EventRecord, NewRun, RunChanges, RunDetail, RunFilter, RunRecord,
};

const LOCK_WORKFLOW: &str =
    "SELECT next_sequence FROM workflows WHERE namespace = $1 AND name = $2";

pub struct SqliteStore {
    writer: SqlitePool,
    readers: SqlitePool,
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
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        Ok(SqliteStore { writer, readers })
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
        queries::register_workflow(&self.writer, LOCK_WORKFLOW, namespace, spec, now_ms).await
    }

    async fn get_workflow(
        &self,
        namespace: &str,
        name: &str,
        selector: &VersionSelector,
    ) -> Result<StoredWorkflow, StoreError> {
        queries::get_workflow(&self.readers, namespace, name, selector).await
    }

    async fn list_workflows(
        &self,
        namespace: &str,
        after_name: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StoredWorkflow>, StoreError> {
        queries::list_workflows(&self.readers, namespace, after_name, limit).await
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
        self.readers.close().await;
        self.writer.close().await;
    }
}
