//! The run queries, written once for both backends in the manner of
//! [`super::queries`]: runs, their tasks, attempts, context deltas and
//! conflicts, and the event log with its global cursor. A backend supplies
//! only its pool and how a consistent read snapshot is begun.
//!
//! Every write goes through one transaction, and the event cursors are taken
//! from the `event_sequencer` row inside it, as late as possible: the row
//! lock serializes event writers only for the last statements before the
//! commit, and a later cursor can never become visible before an earlier one.

use std::marker::PhantomData;

use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

use super::StoreError;
use crate::engine::records::{
    AttemptRecord, AttemptState, ConflictRecord, CreateRunOutcome, DeltaRecord, EventDetails,
    EventPosition, EventQuery, EventRecord, EventType, NewEvent, NewRun, RunChanges, RunDetail,
    RunFilter, RunRecord, RunStatus, SkipReason, TaskRecord, TaskState,
};

/// The columns `RunQueries::run_from_row` decodes, in its order.
macro_rules! run_columns {
    () => {
        "id, namespace, workflow_name, workflow_version, status, input_context_json, \
         final_context_json, idempotency_key, request_hash, created_at_ms, started_at_ms, \
         finished_at_ms"
    };
}

const INSERT_RUN: &str = "INSERT INTO runs \
     (id, namespace, workflow_name, workflow_version, status, input_context_json, \
     final_context_json, idempotency_key, request_hash, created_at_ms, started_at_ms, \
     finished_at_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $8, $9, NULL, NULL) \
     ON CONFLICT (namespace, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING \
     RETURNING id";

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

const LIST_ACTIVE_RUNS: &str = concat!(
    "SELECT ",
    run_columns!(),
    " FROM runs WHERE status IN ('pending', 'running') ORDER BY id"
);

const MAX_EVENT_SEQUENCE: &str = "SELECT COALESCE(MAX(sequence), 0) FROM events WHERE run_id = $1";

const ATTEMPT_STATE: &str = "SELECT state FROM attempts WHERE id = $1";

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

const RUN_WORKFLOW: &str = "SELECT workflow_name FROM runs WHERE id = $1 AND namespace = $2";

// A retried status change must not erase what an earlier one recorded, so
// absent times and contexts keep the stored values.
const UPDATE_RUN_STATUS: &str = "UPDATE runs SET status = $3, \
     started_at_ms = COALESCE($4, started_at_ms), \
     finished_at_ms = COALESCE($5, finished_at_ms), \
     final_context_json = COALESCE($6, final_context_json) \
     WHERE id = $1 AND namespace = $2 RETURNING workflow_name";

const INSERT_TASK: &str = "INSERT INTO task_runs \
     (run_id, namespace, task_id, position, state, skip_reason, attempts_started, failures, \
     reassignments, current_attempt_id, next_attempt_at_ms, error, updated_at_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";

const UPDATE_TASK: &str = "UPDATE task_runs SET position = $4, state = $5, skip_reason = $6, \
     attempts_started = $7, failures = $8, reassignments = $9, current_attempt_id = $10, \
     next_attempt_at_ms = $11, error = $12, updated_at_ms = $13 \
     WHERE run_id = $1 AND namespace = $2 AND task_id = $3 RETURNING task_id";

const GET_TASKS: &str = "SELECT task_id, position, state, skip_reason, attempts_started, \
     failures, reassignments, current_attempt_id, next_attempt_at_ms, error, updated_at_ms \
     FROM task_runs WHERE run_id = $1 AND namespace = $2 ORDER BY position, task_id";

const INSERT_ATTEMPT: &str = "INSERT INTO attempts \
     (id, namespace, run_id, task_id, number, executor_id, state, error, assigned_at_ms, \
     deadline_at_ms, started_at_ms, finished_at_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

// An update that does not know a time (a late result, say) leaves the
// recorded one in place.
const UPDATE_ATTEMPT: &str = "UPDATE attempts SET state = $4, error = $5, \
     started_at_ms = COALESCE($6, started_at_ms), \
     finished_at_ms = COALESCE($7, finished_at_ms) \
     WHERE id = $1 AND run_id = $2 AND namespace = $3 RETURNING id";

const GET_ATTEMPTS: &str = "SELECT a.id, a.run_id, a.task_id, a.number, a.executor_id, \
     a.state, a.error, a.assigned_at_ms, a.deadline_at_ms, a.started_at_ms, a.finished_at_ms \
     FROM attempts a JOIN task_runs t ON t.run_id = a.run_id AND t.task_id = a.task_id \
     WHERE a.run_id = $1 AND a.namespace = $2 \
     ORDER BY t.position, a.task_id, a.number";

const INSERT_DELTA: &str = "INSERT INTO context_deltas \
     (run_id, namespace, task_id, attempt_id, set_json, removed_json) \
     VALUES ($1, $2, $3, $4, $5, $6)";

const GET_DELTAS: &str = "SELECT d.task_id, d.attempt_id, d.set_json, d.removed_json \
     FROM context_deltas d JOIN task_runs t ON t.run_id = d.run_id AND t.task_id = d.task_id \
     WHERE d.run_id = $1 AND d.namespace = $2 ORDER BY t.position, d.task_id";

// The engine may report the same conflict again (a replayed step): the
// identical row is skipped. One task may be overridden by several winners
// (a three-way race), each its own row.
const INSERT_CONFLICT: &str = "INSERT INTO context_conflicts \
     (run_id, namespace, key, winning_task_id, overridden_task_id) \
     SELECT $1, $2, $3, $4, $5 WHERE NOT EXISTS (SELECT 1 FROM context_conflicts \
     WHERE run_id = $1 AND key = $3 AND winning_task_id = $4 AND overridden_task_id = $5)";

const GET_CONFLICTS: &str = "SELECT key, winning_task_id, overridden_task_id \
     FROM context_conflicts WHERE run_id = $1 AND namespace = $2 \
     ORDER BY key, winning_task_id, overridden_task_id";

/// Reserves `$1` cursors and returns the first. Updating the single row locks
/// it until the commit (Postgres) or runs on the only writer (SQLite), which
/// is what makes cursors visible in commit order.
const TAKE_CURSORS: &str = "UPDATE event_sequencer SET next_cursor = next_cursor + $1 \
     WHERE id = 1 RETURNING next_cursor - $1";

const INSERT_EVENT: &str = "INSERT INTO events \
     (cursor, namespace, run_id, workflow_name, sequence, event_type, payload_json, \
     created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

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
const RUN_CHILD_TABLES: [&str; 5] = [
    "events",
    "context_conflicts",
    "context_deltas",
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

/// An event whose columns are computed, waiting for its cursor. Everything
/// that can fail is done before the sequencer row is locked.
struct PendingEvent<'a> {
    namespace: &'a str,
    run_id: &'a str,
    workflow_name: &'a str,
    event: &'a NewEvent,
    sequence: i64,
    payload_json: String,
}

impl<'a> PendingEvent<'a> {
    fn new(
        namespace: &'a str,
        run_id: &'a str,
        workflow_name: &'a str,
        event: &'a NewEvent,
    ) -> Result<PendingEvent<'a>, StoreError> {
        let sequence = i64::try_from(event.sequence).map_err(|_| {
            StoreError::Corrupt(format!(
                "sequence {} of an event of run {run_id:?} is out of range",
                event.sequence
            ))
        })?;
        let payload_json = serde_json::to_string(&event.details).map_err(|error| {
            StoreError::Corrupt(format!(
                "details of event {} of run {run_id:?}: {error}",
                event.sequence
            ))
        })?;
        Ok(PendingEvent {
            namespace,
            run_id,
            workflow_name,
            event,
            sequence,
            payload_json,
        })
    }
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
    /// Writes a run, its tasks and its events, unless its idempotency key is
    /// taken. The insert itself decides (`ON CONFLICT DO NOTHING` on the
    /// idempotency index), so two concurrent requests with one key cannot
    /// both create a run: the second waits for the first and then finds it.
    pub(super) async fn create_run(
        pool: &Pool<DB>,
        run: &NewRun,
    ) -> Result<CreateRunOutcome, StoreError> {
        let pending = run
            .events
            .iter()
            .map(|event| PendingEvent::new(&run.namespace, &run.id, &run.workflow_name, event))
            .collect::<Result<Vec<_>, _>>()?;
        let mut transaction = pool.begin().await?;
        let inserted = sqlx::query::<DB>(INSERT_RUN)
            .bind(run.id.as_str())
            .bind(run.namespace.as_str())
            .bind(run.workflow_name.as_str())
            .bind(run.workflow_version.as_str())
            .bind(RunStatus::Pending.as_str())
            .bind(run.input_context_json.as_str())
            .bind(run.idempotency_key.as_deref())
            .bind(run.request_hash.as_str())
            .bind(run.created_at_ms)
            .fetch_optional(&mut *transaction)
            .await?;
        if inserted.is_none() {
            // Only the idempotency index is the conflict target, so the key
            // is set and its holder has committed (Postgres waited for it).
            let existing = match run.idempotency_key.as_deref() {
                Some(key) => {
                    Self::find_by_idempotency_key(&mut transaction, &run.namespace, key).await?
                }
                None => None,
            };
            transaction.rollback().await?;
            return existing
                .map(CreateRunOutcome::IdempotencyKeyTaken)
                .ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "run {:?} was not inserted, yet no run holds its idempotency key",
                        run.id
                    ))
                });
        }
        for task in &run.tasks {
            sqlx::query::<DB>(INSERT_TASK)
                .bind(run.id.as_str())
                .bind(run.namespace.as_str())
                .bind(task.task_id.as_str())
                .bind(i64::from(task.position))
                .bind(task.state.as_str())
                .bind(task.skip_reason.map(SkipReason::as_str))
                .bind(i64::from(task.attempts_started))
                .bind(i64::from(task.failures))
                .bind(i64::from(task.reassignments))
                .bind(task.current_attempt_id.as_deref())
                .bind(task.next_attempt_at_ms)
                .bind(task.error.as_deref())
                .bind(task.updated_at_ms)
                .execute(&mut *transaction)
                .await?;
        }
        let events = Self::append_events(&mut transaction, &pending).await?;
        transaction.commit().await?;
        Ok(CreateRunOutcome::Created(events))
    }

    pub(super) async fn find_run_by_idempotency_key(
        pool: &Pool<DB>,
        namespace: &str,
        idempotency_key: &str,
    ) -> Result<Option<RunRecord>, StoreError> {
        let mut connection = pool.acquire().await?;
        Self::find_by_idempotency_key(&mut connection, namespace, idempotency_key).await
    }

    async fn find_by_idempotency_key(
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

    /// Commits a batch in one transaction. Every change names its run and
    /// namespace, and each is checked, so a change can never land in another
    /// namespace's run; any failure rolls the whole batch back.
    pub(super) async fn commit_changes(
        pool: &Pool<DB>,
        batch: &[RunChanges],
    ) -> Result<Vec<EventRecord>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let pending = batch
            .iter()
            .flat_map(|changes| {
                changes.events.iter().map(|event| {
                    PendingEvent::new(
                        &changes.namespace,
                        &changes.run_id,
                        &changes.workflow_name,
                        event,
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut transaction = pool.begin().await?;
        for changes in batch {
            Self::apply_changes(&mut transaction, changes).await?;
        }
        let events = Self::append_events(&mut transaction, &pending).await?;
        transaction.commit().await?;
        Ok(events)
    }

    /// Everything of one run's changes except its events.
    async fn apply_changes(
        connection: &mut DB::Connection,
        changes: &RunChanges,
    ) -> Result<(), StoreError> {
        let run_id = changes.run_id.as_str();
        let namespace = changes.namespace.as_str();
        let row = match &changes.status {
            Some(change) => {
                sqlx::query::<DB>(UPDATE_RUN_STATUS)
                    .bind(run_id)
                    .bind(namespace)
                    .bind(change.status.as_str())
                    .bind(change.started_at_ms)
                    .bind(change.finished_at_ms)
                    .bind(change.final_context_json.as_deref())
                    .fetch_optional(&mut *connection)
                    .await?
            }
            None => {
                sqlx::query::<DB>(RUN_WORKFLOW)
                    .bind(run_id)
                    .bind(namespace)
                    .fetch_optional(&mut *connection)
                    .await?
            }
        };
        let Some(row) = row else {
            return Err(StoreError::NotFound(format!("run {run_id:?}")));
        };
        // The events' workflow_name column comes from the changes; a
        // mismatch would file them under the wrong workflow for good.
        let workflow_name: String = row.try_get(0)?;
        if workflow_name != changes.workflow_name {
            return Err(StoreError::Corrupt(format!(
                "changes of run {run_id:?} name workflow {:?}, but the run is of {workflow_name:?}",
                changes.workflow_name
            )));
        }

        for task in &changes.tasks {
            let updated = sqlx::query::<DB>(UPDATE_TASK)
                .bind(run_id)
                .bind(namespace)
                .bind(task.task_id.as_str())
                .bind(i64::from(task.position))
                .bind(task.state.as_str())
                .bind(task.skip_reason.map(SkipReason::as_str))
                .bind(i64::from(task.attempts_started))
                .bind(i64::from(task.failures))
                .bind(i64::from(task.reassignments))
                .bind(task.current_attempt_id.as_deref())
                .bind(task.next_attempt_at_ms)
                .bind(task.error.as_deref())
                .bind(task.updated_at_ms)
                .fetch_optional(&mut *connection)
                .await?;
            if updated.is_none() {
                return Err(StoreError::NotFound(format!(
                    "task {:?} of run {run_id:?}",
                    task.task_id
                )));
            }
        }

        for attempt in &changes.new_attempts {
            if attempt.run_id != changes.run_id {
                return Err(StoreError::Corrupt(format!(
                    "attempt {:?} of run {:?} is in the changes of run {run_id:?}",
                    attempt.id, attempt.run_id
                )));
            }
            sqlx::query::<DB>(INSERT_ATTEMPT)
                .bind(attempt.id.as_str())
                .bind(namespace)
                .bind(run_id)
                .bind(attempt.task_id.as_str())
                .bind(i64::from(attempt.number))
                .bind(attempt.executor_id.as_str())
                .bind(attempt.state.as_str())
                .bind(attempt.error.as_deref())
                .bind(attempt.assigned_at_ms)
                .bind(attempt.deadline_at_ms)
                .bind(attempt.started_at_ms)
                .bind(attempt.finished_at_ms)
                .execute(&mut *connection)
                .await?;
        }

        for update in &changes.attempt_updates {
            let updated = sqlx::query::<DB>(UPDATE_ATTEMPT)
                .bind(update.id.as_str())
                .bind(run_id)
                .bind(namespace)
                .bind(update.state.as_str())
                .bind(update.error.as_deref())
                .bind(update.started_at_ms)
                .bind(update.finished_at_ms)
                .fetch_optional(&mut *connection)
                .await?;
            if updated.is_none() {
                return Err(StoreError::NotFound(format!(
                    "attempt {:?} of run {run_id:?}",
                    update.id
                )));
            }
        }

        for delta in &changes.deltas {
            let removed_json = serde_json::to_string(&delta.removed_keys).map_err(|error| {
                StoreError::Corrupt(format!(
                    "removed keys of task {:?} of run {run_id:?}: {error}",
                    delta.task_id
                ))
            })?;
            // A second delta for a task violates the primary key: each task
            // succeeds once, so that is the caller's bug and fails the batch.
            sqlx::query::<DB>(INSERT_DELTA)
                .bind(run_id)
                .bind(namespace)
                .bind(delta.task_id.as_str())
                .bind(delta.attempt_id.as_str())
                .bind(delta.set_json.as_str())
                .bind(removed_json)
                .execute(&mut *connection)
                .await?;
        }

        for conflict in &changes.conflicts {
            sqlx::query::<DB>(INSERT_CONFLICT)
                .bind(run_id)
                .bind(namespace)
                .bind(conflict.key.as_str())
                .bind(conflict.winning_task_id.as_str())
                .bind(conflict.overridden_task_id.as_str())
                .execute(&mut *connection)
                .await?;
        }
        Ok(())
    }

    /// Takes one block of cursors for all `pending` events (one sequencer
    /// update per transaction) and inserts them in order.
    async fn append_events(
        connection: &mut DB::Connection,
        pending: &[PendingEvent<'_>],
    ) -> Result<Vec<EventRecord>, StoreError> {
        if pending.is_empty() {
            return Ok(Vec::new());
        }
        let count = i64::try_from(pending.len())
            .map_err(|_| StoreError::Corrupt(format!("{} events in one batch", pending.len())))?;
        let first: i64 = sqlx::query::<DB>(TAKE_CURSORS)
            .bind(count)
            .fetch_one(&mut *connection)
            .await?
            .try_get(0)?;
        let mut records = Vec::with_capacity(pending.len());
        for (cursor, event) in (first..).zip(pending) {
            sqlx::query::<DB>(INSERT_EVENT)
                .bind(cursor)
                .bind(event.namespace)
                .bind(event.run_id)
                .bind(event.workflow_name)
                .bind(event.sequence)
                .bind(event.event.event_type.as_str())
                .bind(event.payload_json.as_str())
                .bind(event.event.created_at_ms)
                .execute(&mut *connection)
                .await?;
            records.push(EventRecord {
                cursor: u64::try_from(cursor).map_err(|_| {
                    StoreError::Corrupt(format!("event sequencer handed out cursor {cursor}"))
                })?,
                namespace: event.namespace.to_owned(),
                run_id: event.run_id.to_owned(),
                workflow_name: event.workflow_name.to_owned(),
                sequence: event.event.sequence,
                event_type: event.event.event_type,
                details: event.event.details.clone(),
                created_at_ms: event.event.created_at_ms,
            });
        }
        Ok(records)
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
            None => return Err(StoreError::NotFound(format!("run {run_id:?}"))),
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
        let deltas = sqlx::query::<DB>(GET_DELTAS)
            .bind(run_id)
            .bind(namespace)
            .fetch_all(&mut *transaction)
            .await?
            .iter()
            .map(|row| Self::delta_from_row(row, run_id))
            .collect::<Result<Vec<_>, _>>()?;
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
    pub(super) async fn load_active_runs(
        pool: &Pool<DB>,
        read_snapshot: &'static str,
    ) -> Result<Vec<(RunDetail, u64)>, StoreError> {
        let rows = {
            let mut connection = pool.acquire().await?;
            sqlx::query::<DB>(LIST_ACTIVE_RUNS)
                .fetch_all(&mut *connection)
                .await?
        };
        let runs: Vec<RunRecord> = rows
            .iter()
            .map(Self::run_from_row)
            .collect::<Result<_, _>>()?;
        let mut active = Vec::with_capacity(runs.len());
        for run in runs {
            let detail = Self::get_run(pool, read_snapshot, &run.namespace, &run.id).await?;
            let mut connection = pool.acquire().await?;
            let last_sequence: i64 = sqlx::query::<DB>(MAX_EVENT_SEQUENCE)
                .bind(run.id.as_str())
                .fetch_one(&mut *connection)
                .await?
                .try_get(0)?;
            let last_sequence = u64::try_from(last_sequence).map_err(|_| {
                StoreError::Corrupt(format!(
                    "run {:?} has event sequence {last_sequence}",
                    run.id
                ))
            })?;
            active.push((detail, last_sequence));
        }
        Ok(active)
    }

    pub(super) async fn attempt_state(
        pool: &Pool<DB>,
        attempt_id: &str,
    ) -> Result<Option<AttemptState>, StoreError> {
        let mut connection = pool.acquire().await?;
        let row = sqlx::query::<DB>(ATTEMPT_STATE)
            .bind(attempt_id)
            .fetch_optional(&mut *connection)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let state: String = row.try_get(0)?;
        AttemptState::parse(&state).map(Some).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "attempt {attempt_id:?} has unknown state {state:?}"
            ))
        })
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
            .ok_or_else(|| StoreError::NotFound(format!("run {run_id:?}")))?;
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
    fn run_from_row(row: &DB::Row) -> Result<RunRecord, StoreError> {
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
            id,
        })
    }

    fn task_from_row(row: &DB::Row, run_id: &str) -> Result<TaskRecord, StoreError> {
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
            task_id,
        })
    }

    fn attempt_from_row(row: &DB::Row) -> Result<AttemptRecord, StoreError> {
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
            id,
        })
    }

    fn delta_from_row(row: &DB::Row, run_id: &str) -> Result<DeltaRecord, StoreError> {
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

    fn conflict_from_row(row: &DB::Row) -> Result<ConflictRecord, StoreError> {
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
