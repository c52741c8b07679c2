//! The run queries, written once for both backends in the manner of
//! [`super::queries`]: reading runs, their tasks, attempts, context deltas
//! and conflicts, the event log, and deleting expired runs. A backend
//! supplies only its pool and how a consistent read snapshot is begun. The
//! writes of the hot path are in [`super::run_writes`].

use std::marker::PhantomData;

use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

use super::{StoreError, StoredAttemptState};
use crate::engine::records::{
    AttemptRecord, AttemptState, ConflictRecord, DeltaRecord, EventDetails, EventPosition,
    EventQuery, EventRecord, EventType, RunDetail, RunFilter, RunRecord, RunStatus, SkipReason,
    TaskRecord, TaskState,
};

/// The columns `RunQueries::run_from_row` decodes, in its order.
macro_rules! run_columns {
    () => {
        "id, namespace, workflow_name, workflow_version, status, input_context_json, \
         final_context_json, idempotency_key, request_hash, created_at_ms, started_at_ms, \
         finished_at_ms, retry_count, retry_request_id, concurrency_key, \
         CASE WHEN status = 'queued' THEN (SELECT COUNT(*) FROM runs q \
         WHERE q.namespace = runs.namespace AND q.workflow_name = runs.workflow_name \
         AND q.concurrency_key = runs.concurrency_key AND q.status = 'queued' \
         AND q.id <= runs.id) ELSE 0 END"
    };
}

const GET_RUN: &str = concat!(
    "SELECT ",
    run_columns!(),
    " FROM runs WHERE namespace = $1 AND id = $2"
);

const FIND_BY_IDEMPOTENCY_KEY: &str = concat!(
    "SELECT ",
    run_columns!(),
    " FROM runs WHERE namespace = $1 AND idempotency_key = $2"
);

/// Every queued run, in queue order within each key.
pub(super) const LIST_QUEUED_RUNS: &str = concat!(
    "SELECT ",
    run_columns!(),
    " FROM runs WHERE status = 'queued' ORDER BY id"
);

pub(super) const LIST_ACTIVE_RUNS: &str = concat!(
    "SELECT ",
    run_columns!(),
    " FROM runs WHERE status IN ('pending', 'running') ORDER BY id"
);

const ATTEMPT_STATE: &str =
    "SELECT state, COALESCE(instance_id, '') FROM attempts WHERE id = $1 AND namespace = $2";

// One statement for every combination of filters keeps the SQL static; the
// `IS NULL` arms switch a filter off.
const LIST_RUNS: &str = concat!(
    "SELECT ",
    run_columns!(),
    " FROM runs WHERE namespace = $1 \
     AND ($2 IS NULL OR workflow_name = $2) \
     AND ($3 IS NULL OR status = $3) \
     AND ($4 IS NULL OR id < $4) \
     ORDER BY id DESC LIMIT $5"
);

// A mapped task's instances follow it, in element order.
const GET_TASKS: &str = "SELECT task_id, position, state, skip_reason, attempts_started, \
     failures, reassignments, current_attempt_id, next_attempt_at_ms, error, updated_at_ms, \
     map_index, map_size \
     FROM task_runs WHERE run_id = $1 AND namespace = $2 \
     ORDER BY position, COALESCE(map_index, -1), task_id";

const GET_ATTEMPTS: &str = "SELECT a.id, a.run_id, a.task_id, a.number, a.executor_id, \
     a.state, a.error, a.assigned_at_ms, a.deadline_at_ms, a.started_at_ms, a.finished_at_ms, \
     COALESCE(a.instance_id, '') \
     FROM attempts a JOIN task_runs t ON t.run_id = a.run_id AND t.task_id = a.task_id \
     WHERE a.run_id = $1 AND a.namespace = $2 \
     ORDER BY t.position, a.task_id, a.number";

const GET_DELTAS: &str = "SELECT d.task_id, d.attempt_id, d.set_json, d.removed_json \
     FROM context_deltas d JOIN task_runs t ON t.run_id = d.run_id AND t.task_id = d.task_id \
     WHERE d.run_id = $1 AND d.namespace = $2 ORDER BY t.position, d.task_id";

/// Decoded as deltas without an attempt and without removals.
const GET_MAP_OUTPUTS: &str = "SELECT task_id, '', set_json, '[]' \
     FROM map_outputs WHERE run_id = $1 AND namespace = $2 ORDER BY task_id";

const GET_CONFLICTS: &str = "SELECT key, winning_task_id, overridden_task_id \
     FROM context_conflicts WHERE run_id = $1 AND namespace = $2 \
     ORDER BY key, winning_task_id, overridden_task_id";

const NEWEST_CURSOR: &str = "SELECT next_cursor - 1 FROM event_sequencer WHERE id = 1";

const RUN_STATUS: &str = "SELECT status FROM runs WHERE namespace = $1 AND id = $2";

/// The columns `RunQueries::event_from_row` decodes, in its order.
const EVENT_COLUMNS: &str = "cursor, namespace, run_id, workflow_name, sequence, event_type, \
     payload_json, created_at_ms";

/// Selects finished runs that finished before `$1`, oldest first, at most
/// `$2`. Only terminal runs have `finished_at_ms`; the status check keeps a
/// bad row from taking a live run with it.
macro_rules! find_expired_runs {
    () => {
        "SELECT id FROM runs WHERE finished_at_ms IS NOT NULL AND finished_at_ms < $1 \
         AND status IN ('succeeded', 'failed', 'cancelled') \
         ORDER BY finished_at_ms, id LIMIT $2"
    };
}

/// For a single writer (SQLite): nothing else can hold the rows.
pub(super) const FIND_EXPIRED_RUNS: &str = find_expired_runs!();

/// For several servers on one database (Postgres): each sweeper takes runs
/// nobody else is deleting, instead of waiting for them.
pub(super) const FIND_EXPIRED_RUNS_SKIP_LOCKED: &str =
    concat!(find_expired_runs!(), " FOR UPDATE SKIP LOCKED");

/// The tables holding rows under a run, children before parents: deltas
/// reference attempts, attempts and deltas reference task_runs, and
/// task_runs and conflicts reference runs, which go last. Events reference
/// nothing; they go first.
const RUN_CHILD_TABLES: [&str; 6] = [
    "events",
    "context_conflicts",
    "context_deltas",
    "map_outputs",
    "attempts",
    "task_runs",
];

/// A value bound into a statement built at run time.
enum Param<'a> {
    Text(&'a str),
    Integer(i64),
}

/// Builds `SELECT … FROM events` for a query: the position picks the order
/// and the index (`(run_id, sequence)` for one run, `(namespace, cursor)` or
/// `(namespace, workflow_name, cursor)` for the namespace), and each
/// non-empty filter list adds one `IN (…)`. Values are always bound, never
/// spliced into the text.
fn list_events_statement<'a>(
    namespace: &'a str,
    query: &'a EventQuery,
) -> (String, Vec<Param<'a>>) {
    let mut params = vec![Param::Text(namespace)];
    let mut sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE namespace = $1");
    let order = match &query.position {
        EventPosition::AfterCursor(cursor) => {
            params.push(Param::Integer(super::queries::sequence_param(*cursor)));
            sql.push_str(" AND cursor > $2");
            "cursor"
        }
        EventPosition::AfterSequence { run_id, sequence } => {
            params.push(Param::Text(run_id));
            params.push(Param::Integer(super::queries::sequence_param(*sequence)));
            sql.push_str(" AND run_id = $2 AND sequence > $3");
            "sequence"
        }
    };
    let filter = &query.filter;
    let lists: [(&str, Vec<&str>); 3] = [
        (
            "workflow_name",
            filter.workflow_names.iter().map(String::as_str).collect(),
        ),
        (
            "run_id",
            filter.run_ids.iter().map(String::as_str).collect(),
        ),
        (
            "event_type",
            filter
                .types
                .iter()
                .map(|event_type| event_type.as_str())
                .collect(),
        ),
    ];
    for (column, values) in lists {
        if values.is_empty() {
            continue;
        }
        let placeholders: Vec<String> = values
            .into_iter()
            .map(|value| {
                params.push(Param::Text(value));
                format!("${}", params.len())
            })
            .collect();
        sql.push_str(&format!(" AND {column} IN ({})", placeholders.join(", ")));
    }
    params.push(Param::Integer(i64::from(query.limit)));
    sql.push_str(&format!(" ORDER BY {order} LIMIT ${}", params.len()));
    (sql, params)
}

/// The run queries over one database type. The bounds live on the impl block
/// so they are written once; every function needs the same capabilities.
pub(super) struct RunQueries<DB>(PhantomData<DB>);

impl<DB> RunQueries<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB>,
{
    pub(super) async fn find_run_by_idempotency_key(
        pool: &Pool<DB>,
        namespace: &str,
        idempotency_key: &str,
    ) -> Result<Option<RunRecord>, StoreError> {
        let mut connection = pool.acquire().await?;
        Self::find_by_idempotency_key(&mut connection, namespace, idempotency_key).await
    }

    pub(super) async fn find_by_idempotency_key(
        connection: &mut DB::Connection,
        namespace: &str,
        idempotency_key: &str,
    ) -> Result<Option<RunRecord>, StoreError> {
        let row = sqlx::query::<DB>(FIND_BY_IDEMPOTENCY_KEY)
            .bind(namespace)
            .bind(idempotency_key)
            .fetch_optional(&mut *connection)
            .await?;
        row.as_ref().map(Self::run_from_row).transpose()
    }

    /// Reads a run and everything under it in one transaction begun with
    /// `begin_snapshot`, which must give the statements one snapshot, so the
    /// tasks, attempts and deltas shown agree with each other.
    pub(super) async fn get_run(
        pool: &Pool<DB>,
        begin_snapshot: &'static str,
        namespace: &str,
        run_id: &str,
    ) -> Result<RunDetail, StoreError> {
        let mut transaction = pool.begin_with(begin_snapshot).await?;
        let run = match sqlx::query::<DB>(GET_RUN)
            .bind(namespace)
            .bind(run_id)
            .fetch_optional(&mut *transaction)
            .await?
        {
            Some(row) => Self::run_from_row(&row)?,
            None => {
                return Err(StoreError::NotFound(format!(
                    "run {}",
                    tributary_core::shown(run_id)
                )));
            }
        };
        let tasks = sqlx::query::<DB>(GET_TASKS)
            .bind(run_id)
            .bind(namespace)
            .fetch_all(&mut *transaction)
            .await?
            .iter()
            .map(|row| Self::task_from_row(row, run_id))
            .collect::<Result<Vec<_>, _>>()?;
        let attempts = sqlx::query::<DB>(GET_ATTEMPTS)
            .bind(run_id)
            .bind(namespace)
            .fetch_all(&mut *transaction)
            .await?
            .iter()
            .map(Self::attempt_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let mut deltas = sqlx::query::<DB>(GET_DELTAS)
            .bind(run_id)
            .bind(namespace)
            .fetch_all(&mut *transaction)
            .await?
            .iter()
            .map(|row| Self::delta_from_row(row, run_id))
            .collect::<Result<Vec<_>, _>>()?;
        for row in sqlx::query::<DB>(GET_MAP_OUTPUTS)
            .bind(run_id)
            .bind(namespace)
            .fetch_all(&mut *transaction)
            .await?
        {
            deltas.push(Self::delta_from_row(&row, run_id)?);
        }
        let conflicts = sqlx::query::<DB>(GET_CONFLICTS)
            .bind(run_id)
            .bind(namespace)
            .fetch_all(&mut *transaction)
            .await?
            .iter()
            .map(Self::conflict_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        transaction.commit().await?;
        Ok(RunDetail {
            run,
            tasks,
            attempts,
            deltas,
            conflicts,
        })
    }

    pub(super) async fn load_queued_runs(pool: &Pool<DB>) -> Result<Vec<RunRecord>, StoreError> {
        sqlx::query::<DB>(LIST_QUEUED_RUNS)
            .fetch_all(pool)
            .await?
            .iter()
            .map(Self::run_from_row)
            .collect()
    }

    pub(super) async fn list_runs(
        pool: &Pool<DB>,
        namespace: &str,
        filter: &RunFilter,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let mut connection = pool.acquire().await?;
        let rows = sqlx::query::<DB>(LIST_RUNS)
            .bind(namespace)
            .bind(filter.workflow_name.as_deref())
            .bind(filter.status.map(RunStatus::as_str))
            .bind(filter.before_id.as_deref())
            .bind(i64::from(filter.limit))
            .fetch_all(&mut *connection)
            .await?;
        rows.iter().map(Self::run_from_row).collect()
    }

    /// Every run not yet terminal, in every namespace, with its details and
    /// the last event sequence it used.
    pub(super) async fn attempt_state(
        pool: &Pool<DB>,
        namespace: &str,
        attempt_id: &str,
    ) -> Result<Option<StoredAttemptState>, StoreError> {
        let mut connection = pool.acquire().await?;
        let row = sqlx::query::<DB>(ATTEMPT_STATE)
            .bind(attempt_id)
            .bind(namespace)
            .fetch_optional(&mut *connection)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let state: String = row.try_get(0)?;
        let state = AttemptState::parse(&state).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "attempt {attempt_id:?} has unknown state {state:?}"
            ))
        })?;
        Ok(Some(StoredAttemptState {
            state,
            instance_id: row.try_get(1)?,
        }))
    }

    pub(super) async fn newest_cursor(pool: &Pool<DB>) -> Result<u64, StoreError> {
        let mut connection = pool.acquire().await?;
        let newest: i64 = sqlx::query::<DB>(NEWEST_CURSOR)
            .fetch_one(&mut *connection)
            .await?
            .try_get(0)?;
        u64::try_from(newest)
            .map_err(|_| StoreError::Corrupt(format!("the event sequencer is at {newest}")))
    }

    /// The status of a run; [`StoreError::NotFound`] when the namespace has
    /// no such run.
    pub(super) async fn run_status(
        pool: &Pool<DB>,
        namespace: &str,
        run_id: &str,
    ) -> Result<RunStatus, StoreError> {
        let mut connection = pool.acquire().await?;
        let row = sqlx::query::<DB>(RUN_STATUS)
            .bind(namespace)
            .bind(run_id)
            .fetch_optional(&mut *connection)
            .await?
            .ok_or_else(|| {
                StoreError::NotFound(format!("run {}", tributary_core::shown(run_id)))
            })?;
        let status: String = row.try_get(0)?;
        RunStatus::parse(&status).ok_or_else(|| {
            StoreError::Corrupt(format!("run {run_id:?} has unknown status {status:?}"))
        })
    }

    /// One page of a namespace's event log (see [`EventQuery`]).
    pub(super) async fn list_events(
        pool: &Pool<DB>,
        namespace: &str,
        query: &EventQuery,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let (sql, params) = list_events_statement(namespace, query);
        let mut statement = sqlx::query::<DB>(sqlx::AssertSqlSafe(sql));
        for param in params {
            statement = match param {
                Param::Text(text) => statement.bind(text),
                Param::Integer(integer) => statement.bind(integer),
            };
        }
        let mut connection = pool.acquire().await?;
        let rows = statement.fetch_all(&mut *connection).await?;
        rows.iter().map(Self::event_from_row).collect()
    }

    /// Deletes up to `batch_limit` finished runs that finished before
    /// `finished_before_ms`, with every row under them, in one transaction;
    /// returns how many runs were deleted. `find_expired_sql` selects the
    /// runs ([`FIND_EXPIRED_RUNS`] or its locking variant).
    pub(super) async fn delete_finished_runs(
        pool: &Pool<DB>,
        find_expired_sql: &'static str,
        finished_before_ms: i64,
        batch_limit: u32,
    ) -> Result<usize, StoreError> {
        if batch_limit == 0 {
            return Ok(0);
        }
        let mut transaction = pool.begin().await?;
        // The ids are read once and bound into every delete: a subquery per
        // statement could pick a different set as runs finish meanwhile.
        let run_ids: Vec<String> = sqlx::query::<DB>(find_expired_sql)
            .bind(finished_before_ms)
            .bind(i64::from(batch_limit))
            .fetch_all(&mut *transaction)
            .await?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()?;
        if run_ids.is_empty() {
            transaction.rollback().await?;
            return Ok(0);
        }
        let placeholders: Vec<String> = (1..=run_ids.len()).map(|n| format!("${n}")).collect();
        let placeholders = placeholders.join(", ");
        for table in RUN_CHILD_TABLES {
            let sql = format!("DELETE FROM {table} WHERE run_id IN ({placeholders})");
            let mut statement = sqlx::query::<DB>(sqlx::AssertSqlSafe(sql));
            for run_id in &run_ids {
                statement = statement.bind(run_id.as_str());
            }
            statement.execute(&mut *transaction).await?;
        }
        // RETURNING counts the deleted runs in both dialects (sqlx's generic
        // query result has no row count).
        let sql = format!("DELETE FROM runs WHERE id IN ({placeholders}) RETURNING id");
        let mut statement = sqlx::query::<DB>(sqlx::AssertSqlSafe(sql));
        for run_id in &run_ids {
            statement = statement.bind(run_id.as_str());
        }
        let deleted_runs = statement.fetch_all(&mut *transaction).await?.len();
        transaction.commit().await?;
        Ok(deleted_runs)
    }

    fn event_from_row(row: &DB::Row) -> Result<EventRecord, StoreError> {
        let cursor: i64 = row.try_get(0)?;
        let what = || format!("event {cursor}");
        let cursor = u64::try_from(cursor)
            .map_err(|_| StoreError::Corrupt(format!("{} has a negative cursor", what())))?;
        let sequence: i64 = row.try_get(4)?;
        let sequence = u64::try_from(sequence).map_err(|_| {
            StoreError::Corrupt(format!("{} has negative sequence {sequence}", what()))
        })?;
        let event_type: String = row.try_get(5)?;
        let event_type = EventType::parse(&event_type).ok_or_else(|| {
            StoreError::Corrupt(format!("{} has unknown type {event_type:?}", what()))
        })?;
        let payload_json: String = row.try_get(6)?;
        let details: EventDetails = serde_json::from_str(&payload_json)
            .map_err(|error| StoreError::Corrupt(format!("details of {}: {error}", what())))?;
        Ok(EventRecord {
            cursor,
            namespace: row.try_get(1)?,
            run_id: row.try_get(2)?,
            workflow_name: row.try_get(3)?,
            sequence,
            event_type,
            details,
            created_at_ms: row.try_get(7)?,
        })
    }

    /// Decodes a row selected with `run_columns!()`.
    pub(super) fn run_from_row(row: &DB::Row) -> Result<RunRecord, StoreError> {
        let id: String = row.try_get(0)?;
        let status: String = row.try_get(4)?;
        let status = RunStatus::parse(&status).ok_or_else(|| {
            StoreError::Corrupt(format!("run {id:?} has unknown status {status:?}"))
        })?;
        Ok(RunRecord {
            namespace: row.try_get(1)?,
            workflow_name: row.try_get(2)?,
            workflow_version: row.try_get(3)?,
            status,
            input_context_json: row.try_get(5)?,
            final_context_json: row.try_get(6)?,
            idempotency_key: row.try_get(7)?,
            request_hash: row.try_get(8)?,
            created_at_ms: row.try_get(9)?,
            started_at_ms: row.try_get(10)?,
            finished_at_ms: row.try_get(11)?,
            retry_count: to_u32(row.try_get(12)?, "retry_count", &|| format!("run {id:?}"))?,
            retry_request_id: row.try_get(13)?,
            concurrency_key: row.try_get(14)?,
            queue_position: match row.try_get::<i64, _>(15)? {
                0 => None,
                position => Some(to_u32(position, "queue position", &|| {
                    format!("run {id:?}")
                })?),
            },
            id,
        })
    }

    pub(super) fn task_from_row(row: &DB::Row, run_id: &str) -> Result<TaskRecord, StoreError> {
        let task_id: String = row.try_get(0)?;
        let what = || format!("task {task_id:?} of run {run_id:?}");
        let state: String = row.try_get(2)?;
        let state = TaskState::parse(&state).ok_or_else(|| {
            StoreError::Corrupt(format!("{} has unknown state {state:?}", what()))
        })?;
        let skip_reason = match row.try_get::<Option<String>, _>(3)? {
            Some(text) => Some(SkipReason::parse(&text).ok_or_else(|| {
                StoreError::Corrupt(format!("{} has unknown skip reason {text:?}", what()))
            })?),
            None => None,
        };
        Ok(TaskRecord {
            position: to_u32(row.try_get(1)?, "position", &what)?,
            state,
            skip_reason,
            attempts_started: to_u32(row.try_get(4)?, "attempts_started", &what)?,
            failures: to_u32(row.try_get(5)?, "failures", &what)?,
            reassignments: to_u32(row.try_get(6)?, "reassignments", &what)?,
            current_attempt_id: row.try_get(7)?,
            next_attempt_at_ms: row.try_get(8)?,
            error: row.try_get(9)?,
            updated_at_ms: row.try_get(10)?,
            map_index: to_optional_u32(row.try_get(11)?, "map_index", &what)?,
            map_size: to_optional_u32(row.try_get(12)?, "map_size", &what)?,
            task_id,
        })
    }

    pub(super) fn attempt_from_row(row: &DB::Row) -> Result<AttemptRecord, StoreError> {
        let id: String = row.try_get(0)?;
        let what = || format!("attempt {id:?}");
        let state: String = row.try_get(5)?;
        let state = AttemptState::parse(&state).ok_or_else(|| {
            StoreError::Corrupt(format!("{} has unknown state {state:?}", what()))
        })?;
        Ok(AttemptRecord {
            run_id: row.try_get(1)?,
            task_id: row.try_get(2)?,
            number: to_u32(row.try_get(3)?, "number", &what)?,
            executor_id: row.try_get(4)?,
            state,
            error: row.try_get(6)?,
            assigned_at_ms: row.try_get(7)?,
            deadline_at_ms: row.try_get(8)?,
            started_at_ms: row.try_get(9)?,
            finished_at_ms: row.try_get(10)?,
            instance_id: row.try_get(11)?,
            id,
        })
    }

    pub(super) fn delta_from_row(row: &DB::Row, run_id: &str) -> Result<DeltaRecord, StoreError> {
        let task_id: String = row.try_get(0)?;
        let removed_json: String = row.try_get(3)?;
        let removed_keys = serde_json::from_str(&removed_json).map_err(|error| {
            StoreError::Corrupt(format!(
                "removed keys of the delta of task {task_id:?} of run {run_id:?}: {error}"
            ))
        })?;
        Ok(DeltaRecord {
            attempt_id: row.try_get(1)?,
            set_json: row.try_get(2)?,
            removed_keys,
            task_id,
        })
    }

    pub(super) fn conflict_from_row(row: &DB::Row) -> Result<ConflictRecord, StoreError> {
        Ok(ConflictRecord {
            key: row.try_get(0)?,
            winning_task_id: row.try_get(1)?,
            overridden_task_id: row.try_get(2)?,
        })
    }
}

/// Reads a counter column back into its domain type; a value the domain
/// cannot hold means the row was not written by this store.
fn to_u32(value: i64, column: &str, what: &dyn Fn() -> String) -> Result<u32, StoreError> {
    u32::try_from(value)
        .map_err(|_| StoreError::Corrupt(format!("{} has {column} {value}, out of range", what())))
}

/// [`to_u32`] of a nullable column.
fn to_optional_u32(
    value: Option<i64>,
    column: &str,
    what: &dyn Fn() -> String,
) -> Result<Option<u32>, StoreError> {
    value.map(|value| to_u32(value, column, what)).transpose()
}
