//! Storage: the backend-neutral [`Store`] trait, its models and its error
//! type, with one implementation per database ([`sqlite`], [`postgres`]).
//!
//! The database is the truth and memory a cache: every state change the
//! engine makes is committed here, with its event row, in one transaction.
//! Each backend embeds its migrations and runs them when it connects.

mod batch_sql;
mod key_queries;
pub mod postgres;
mod postgres_connect;
mod postgres_turn;
mod queries;
mod recovery_queries;
mod run_queries;
mod run_retry;
mod run_writes;
mod schedule_queries;
pub mod sqlite;
mod sqlite_turn;

use std::sync::Arc;

pub use schedule_queries::{ScheduleProgress, StoredSchedule};

use async_trait::async_trait;
use tributary_core::{WorkflowSpec, shown};

use crate::engine::records::{
    AttemptState, CreateRunOutcome, EventQuery, EventRecord, NewRun, RunChanges, RunDetail,
    RunFilter, RunRecord, RunRetry, RunStatus,
};

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// An API key as stored: never its secret, only the SHA-256 (hex) of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredApiKey {
    pub key_id: String,
    /// The namespace the key acts in; `*` for keys that manage every one.
    pub namespace: String,
    pub role: String,
    pub label: String,
    pub secret_sha256: String,
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

/// What the database knows of an attempt when a late result arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAttemptState {
    pub state: AttemptState,
    /// The instance the attempt was assigned to; empty for attempts stored
    /// before instances were recorded.
    pub instance_id: String,
}

/// A stored version of a workflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredWorkflow {
    pub spec: WorkflowSpec,
    pub version: String,
    pub sequence: u64,
    pub created_at_ms: i64,
    pub latest: bool,
}

/// The outcome of a registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub workflow: StoredWorkflow,
    /// False when the same definition had been registered before.
    pub created: bool,
}

/// Which version of a workflow to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionSelector {
    Latest,
    Version(String),
    Sequence(u64),
}

/// Why a storage operation failed. Callers can tell a missing row from an
/// outage: only [`StoreError::NotFound`] is about the request.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("unsupported database URL {0:?}: expected sqlite:// or postgres://")]
    UnsupportedUrl(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The database could not be opened at start-up; the reason says why
    /// and, where it can, what to do.
    #[error("cannot connect to {target}: {reason}")]
    Connect { target: String, reason: String },
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Whether trying the same operation again later may succeed: the
    /// database was unreachable or busy, not the data wrong.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Database(
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed,
            ) => true,
            StoreError::Database(sqlx::Error::Database(error)) => {
                // SQLITE_BUSY / SQLITE_LOCKED, and Postgres serialization
                // failures, deadlocks and connection-class errors.
                matches!(
                    error.code().as_deref(),
                    Some("5" | "6" | "40001" | "40P01" | "57P01" | "57P02" | "57P03")
                ) || error.code().is_some_and(|code| code.starts_with("08"))
            }
            _ => false,
        }
    }
}

/// The storage operations the server needs. One conformance suite
/// (`tests/e2e/store_conformance.rs`) runs against every implementation.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> Backend;

    /// Stores `spec` as a version of its workflow (if that version is new)
    /// and makes it the latest. Re-registering an older version rolls back to
    /// it; its sequence number stays the one it first got.
    async fn register_workflow(
        &self,
        namespace: &str,
        spec: &WorkflowSpec,
        now_ms: i64,
    ) -> Result<Registration, StoreError>;

    /// Reads one version of a workflow; [`StoreError::NotFound`] names what
    /// is missing.
    async fn get_workflow(
        &self,
        namespace: &str,
        name: &str,
        selector: &VersionSelector,
    ) -> Result<StoredWorkflow, StoreError>;

    /// The latest version of each workflow whose name sorts after
    /// `after_name`, ordered by name, at most `limit`.
    async fn list_workflows(
        &self,
        namespace: &str,
        after_name: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StoredWorkflow>, StoreError>;

    /// Writes a new run, its tasks and its first events in one transaction.
    /// When the run's idempotency key is already used in the namespace,
    /// writes nothing and returns the run that holds it.
    async fn create_run(&self, run: &NewRun) -> Result<CreateRunOutcome, StoreError>;

    /// Writes several new runs without idempotency keys (so none can
    /// collide), with their tasks and first events, in one transaction, and
    /// returns their events.
    async fn create_runs(&self, runs: &[NewRun]) -> Result<Vec<EventRecord>, StoreError>;

    /// The run holding an idempotency key in a namespace, if any.
    async fn find_run_by_idempotency_key(
        &self,
        namespace: &str,
        idempotency_key: &str,
    ) -> Result<Option<RunRecord>, StoreError>;

    /// Commits a batch of changes, possibly of several runs, in one
    /// transaction, and returns the events written, with their cursors
    /// assigned in commit order. Either all of the batch is committed or
    /// none of it: a run, task or attempt that does not exist in the
    /// change's namespace fails the batch with [`StoreError::NotFound`], and
    /// a second delta for a task with a database error.
    async fn commit_changes(&self, batch: &[RunChanges]) -> Result<Vec<EventRecord>, StoreError>;

    /// Commits a retry of a finished run in one transaction: the run row
    /// back to RUNNING (end cleared, retry count and request id set) only
    /// if it still has the status and retry count the retry read, the
    /// reset tasks' deltas and conflicts deleted, then the retry's changes
    /// as [`Store::commit_changes`] writes them. Returns the events written.
    /// [`StoreError::NotFound`] when the run is gone or changed meanwhile.
    async fn retry_run(&self, retry: &RunRetry) -> Result<Vec<EventRecord>, StoreError>;

    /// A run with its tasks, attempts, deltas and conflicts, read from one
    /// snapshot; [`StoreError::NotFound`] when the namespace has no such run.
    /// Tasks are ordered by position, attempts and deltas by their task's
    /// position (then attempt number), conflicts by key, winning task and overridden task.
    async fn get_run(&self, namespace: &str, run_id: &str) -> Result<RunDetail, StoreError>;

    /// Runs of a namespace, newest first (by id, which is a UUIDv7).
    async fn list_runs(
        &self,
        namespace: &str,
        filter: &RunFilter,
    ) -> Result<Vec<RunRecord>, StoreError>;

    /// Every run not yet terminal, in every namespace, with its details and
    /// the highest event sequence it has used; read at start-up to rebuild
    /// the engine's memory.
    async fn load_active_runs(&self) -> Result<Vec<(RunDetail, u64)>, StoreError>;

    /// Every QUEUED run, in every namespace, in queue order (by id) within
    /// each key; read at start-up to rebuild the queues.
    async fn load_queued_runs(&self) -> Result<Vec<RunRecord>, StoreError>;

    /// Starts a QUEUED run (`run` is what [`RunState::start`] built for
    /// it): its row becomes PENDING and its tasks and events are written in
    /// one transaction, only if it is still QUEUED; `None` when it is not,
    /// with nothing written.
    ///
    /// [`RunState::start`]: crate::engine::run::RunState::start
    async fn start_queued_run(&self, run: &NewRun) -> Result<Option<Vec<EventRecord>>, StoreError>;

    /// Ends a QUEUED run CANCELLED at `now_ms` with `run.events` (its
    /// RUN_FINISHED), only if it is still QUEUED; `None` when it is not.
    async fn cancel_queued_run(
        &self,
        run: &NewRun,
        now_ms: i64,
    ) -> Result<Option<Vec<EventRecord>>, StoreError>;

    /// One run as [`Store::load_active_runs`] reads each: its details and
    /// the highest event sequence it has used.
    async fn load_run(&self, namespace: &str, run_id: &str)
    -> Result<(RunDetail, u64), StoreError>;

    /// The stored state of an attempt of the namespace, if it exists there.
    async fn attempt_state(
        &self,
        namespace: &str,
        attempt_id: &str,
    ) -> Result<Option<StoredAttemptState>, StoreError>;

    /// The cursor of the newest committed event (0 when there is none).
    async fn newest_cursor(&self) -> Result<u64, StoreError>;

    /// A run's status; [`StoreError::NotFound`] when the namespace has no
    /// such run.
    async fn run_status(&self, namespace: &str, run_id: &str) -> Result<RunStatus, StoreError>;

    /// One page of a namespace's event log: the events after the query's
    /// position that pass its filter, in cursor order (or, for one run, in
    /// sequence order, which is the same), at most `limit`. Cursors become
    /// visible in commit order, so reading on from the last cursor returned
    /// never skips an event committed later.
    async fn list_events(
        &self,
        namespace: &str,
        query: &EventQuery,
    ) -> Result<Vec<EventRecord>, StoreError>;

    /// Deletes, in one transaction, up to `batch_limit` runs of any
    /// namespace that finished before `finished_before_ms`, with their
    /// tasks, attempts, deltas, conflicts and events; oldest first. Returns
    /// how many runs were deleted: fewer than `batch_limit` means none is
    /// left. Runs that have not finished are never touched.
    async fn delete_finished_runs(
        &self,
        finished_before_ms: i64,
        batch_limit: u32,
    ) -> Result<usize, StoreError>;

    /// Every API key, revoked and expired ones included, oldest first; read
    /// once at start-up, the server then keeps them in memory.
    async fn list_api_keys(&self) -> Result<Vec<StoredApiKey>, StoreError>;

    /// Stores a new API key.
    async fn insert_api_key(&self, key: &StoredApiKey) -> Result<(), StoreError>;

    /// Marks a key revoked at `now_ms` (a key revoked before keeps its
    /// time); [`StoreError::NotFound`] when there is no such key.
    async fn revoke_api_key(&self, key_id: &str, now_ms: i64) -> Result<(), StoreError>;

    /// Stores a new schedule; false (and nothing written) when the
    /// namespace already has a schedule with its id.
    async fn insert_schedule(&self, schedule: &StoredSchedule) -> Result<bool, StoreError>;

    /// One schedule; [`StoreError::NotFound`] when the namespace has none
    /// with that id.
    async fn get_schedule(
        &self,
        namespace: &str,
        schedule_id: &str,
    ) -> Result<StoredSchedule, StoreError>;

    /// The schedules of a namespace whose ids sort after `after_id`, by id,
    /// at most `limit`.
    async fn list_schedules(
        &self,
        namespace: &str,
        after_id: &str,
        limit: u32,
    ) -> Result<Vec<StoredSchedule>, StoreError>;

    /// Every schedule that is not paused, in every namespace: what the
    /// scheduler evaluates.
    async fn list_unpaused_schedules(&self) -> Result<Vec<StoredSchedule>, StoreError>;

    /// Pauses a schedule (dropping its queued fire), or with `resume_at_ms`
    /// resumes a paused one with its cursor moved up to that time. Changes
    /// nothing on a schedule already in that state, or missing.
    async fn set_schedule_paused(
        &self,
        namespace: &str,
        schedule_id: &str,
        resume_at_ms: Option<i64>,
    ) -> Result<(), StoreError>;

    /// Records the scheduler's progress on `schedule`, only if it is still
    /// the same schedule (same creation time) and not paused.
    async fn record_schedule_progress(
        &self,
        schedule: &StoredSchedule,
        progress: &ScheduleProgress,
    ) -> Result<(), StoreError>;

    /// Deletes a schedule; [`StoreError::NotFound`] when there is none.
    async fn delete_schedule(&self, namespace: &str, schedule_id: &str) -> Result<(), StoreError>;

    /// Closes every connection; pending writes are finished first.
    async fn close(&self);
}

/// Connects to the database a URL names and runs its migrations:
/// `sqlite://PATH` (the file is created if missing) or `postgres://…`.
pub async fn connect(database_url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if database_url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::connect(database_url).await?))
    } else if database_url.starts_with("postgres:") || database_url.starts_with("postgresql:") {
        Ok(Arc::new(
            postgres::PostgresStore::connect(database_url).await?,
        ))
    } else {
        Err(StoreError::UnsupportedUrl(database_url.to_owned()))
    }
}

/// The version's name for messages: `workflow "w"` or `version "v" of
/// workflow "w"`.
pub(crate) fn describe_selector(name: &str, selector: &VersionSelector) -> String {
    match selector {
        VersionSelector::Latest => format!("workflow {}", shown(name)),
        VersionSelector::Version(version) => {
            format!("version {} of workflow {}", shown(version), shown(name))
        }
        VersionSelector::Sequence(sequence) => {
            format!(
                "version with sequence {sequence} of workflow {}",
                shown(name)
            )
        }
    }
}
