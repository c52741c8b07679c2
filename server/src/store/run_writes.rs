//! The run writes: creating a run and committing a coordinator turn, for
//! both backends.
//!
//! A turn touches many rows of few kinds, so each kind is written with
//! multi-row statements (`INSERT … VALUES (…), (…)` and
//! `UPDATE … FROM (VALUES …)`) rather than a statement per row: a statement
//! costs a round trip to the database (a thread hand-off with SQLite, a
//! network exchange with Postgres) whatever its size, and that round trip,
//! not the rows, bounded throughput. Row counts are split into chunks whose
//! sizes are powers of two, so each table has only a handful of distinct
//! statement texts and the prepared-statement caches stay warm.
//!
//! Both SQLite and Postgres name the columns of a `VALUES` list `column1`,
//! `column2`, …, which is what the updates join on.
//!
//! Every write goes through one transaction, and the event cursors are taken
//! from the `event_sequencer` row inside it, as late as possible: the row
//! lock serializes event writers only for the last statements before the
//! commit, and a later cursor can never become visible before an earlier one.

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;

use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

use super::StoreError;
use super::run_queries::RunQueries;
use crate::engine::records::{
    AttemptRecord, AttemptUpdate, CreateRunOutcome, DeltaRecord, EventRecord, NewEvent, NewRun,
    RunChanges, RunStatus, RunStatusChange, SkipReason, TaskRecord,
};

/// Rows per multi-row statement at most. 256 rows of the widest table (13
/// columns) stay far below SQLite's and Postgres's parameter limits.
const MAX_ROWS_PER_STATEMENT: usize = 256;

const INSERT_RUN: &str = "INSERT INTO runs \
     (id, namespace, workflow_name, workflow_version, status, input_context_json, \
     final_context_json, idempotency_key, request_hash, created_at_ms, started_at_ms, \
     finished_at_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $8, $9, NULL, NULL) \
     ON CONFLICT (namespace, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING \
     RETURNING id";

const INSERT_RUNS: &str = "INSERT INTO runs \
     (id, namespace, workflow_name, workflow_version, status, input_context_json, \
     idempotency_key, request_hash, created_at_ms) VALUES ";

const INSERT_TASKS: &str = "INSERT INTO task_runs \
     (run_id, namespace, task_id, position, state, skip_reason, attempts_started, failures, \
     reassignments, current_attempt_id, next_attempt_at_ms, error, updated_at_ms) VALUES ";

// A retried status change must not erase what an earlier one recorded, so
// absent times and contexts keep the stored values.
const UPDATE_RUNS: (&str, &str) = (
    "UPDATE runs SET status = v.column3, \
     started_at_ms = COALESCE(v.column4, runs.started_at_ms), \
     finished_at_ms = COALESCE(v.column5, runs.finished_at_ms), \
     final_context_json = COALESCE(v.column6, runs.final_context_json) FROM (VALUES ",
    ") AS v WHERE runs.id = v.column1 AND runs.namespace = v.column2 \
     RETURNING runs.id, runs.workflow_name",
);

const SELECT_RUNS: (&str, &str) = (
    "SELECT runs.id, runs.workflow_name FROM runs JOIN (VALUES ",
    ") AS v ON runs.id = v.column1 AND runs.namespace = v.column2",
);

const UPDATE_TASKS: (&str, &str) = (
    "UPDATE task_runs SET position = v.column4, state = v.column5, skip_reason = v.column6, \
     attempts_started = v.column7, failures = v.column8, reassignments = v.column9, \
     current_attempt_id = v.column10, next_attempt_at_ms = v.column11, error = v.column12, \
     updated_at_ms = v.column13 FROM (VALUES ",
    ") AS v WHERE task_runs.run_id = v.column1 AND task_runs.namespace = v.column2 \
     AND task_runs.task_id = v.column3 RETURNING task_runs.run_id, task_runs.task_id",
);

const INSERT_ATTEMPTS: &str = "INSERT INTO attempts \
     (id, namespace, run_id, task_id, number, executor_id, state, error, assigned_at_ms, \
     deadline_at_ms, started_at_ms, finished_at_ms) VALUES ";

// An update that does not know a time (a late result, say) leaves the
// recorded one in place.
const UPDATE_ATTEMPTS: (&str, &str) = (
    "UPDATE attempts SET state = v.column4, error = v.column5, \
     started_at_ms = COALESCE(v.column6, attempts.started_at_ms), \
     finished_at_ms = COALESCE(v.column7, attempts.finished_at_ms) FROM (VALUES ",
    ") AS v WHERE attempts.id = v.column1 AND attempts.run_id = v.column2 \
     AND attempts.namespace = v.column3 RETURNING attempts.id",
);

// A second delta for a task violates the primary key: each task succeeds
// once, so that is the caller's bug and fails the batch.
const INSERT_DELTAS: &str = "INSERT INTO context_deltas \
     (run_id, namespace, task_id, attempt_id, set_json, removed_json) VALUES ";

// The engine may report the same conflict again (a replayed step): the
// identical row is skipped. One task may be overridden by several winners
// (a three-way race), each its own row. Conflicts are rare: one statement
// each.
const INSERT_CONFLICT: &str = "INSERT INTO context_conflicts \
     (run_id, namespace, key, winning_task_id, overridden_task_id) \
     SELECT $1, $2, $3, $4, $5 WHERE NOT EXISTS (SELECT 1 FROM context_conflicts \
     WHERE run_id = $1 AND key = $3 AND winning_task_id = $4 AND overridden_task_id = $5)";

/// Reserves `$1` cursors and returns the first. Updating the single row locks
/// it until the commit (Postgres) or runs on the only writer (SQLite), which
/// is what makes cursors visible in commit order.
const TAKE_CURSORS: &str = "UPDATE event_sequencer SET next_cursor = next_cursor + $1 \
     WHERE id = 1 RETURNING next_cursor - $1";

const INSERT_EVENTS: &str = "INSERT INTO events \
     (cursor, namespace, run_id, workflow_name, sequence, event_type, payload_json, \
     created_at_ms) VALUES ";

/// `rows` rows of `columns` placeholders: `($1, $2), ($3, $4)` for
/// Postgres, `(?, ?), (?, ?)` for SQLite. SQLite gets anonymous ones because
/// sqlx looks up the name of every numbered parameter, and SQLite finds a
/// name by scanning all of them: quadratic in a statement's parameters.
fn placeholders<DB: Database>(rows: usize, columns: usize) -> String {
    let numbered = DB::NAME != "SQLite";
    let mut text = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        if row > 0 {
            text.push_str(", ");
        }
        text.push('(');
        for column in 0..columns {
            if column > 0 {
                text.push_str(", ");
            }
            if numbered {
                text.push('$');
                text.push_str(&(row * columns + column + 1).to_string());
            } else {
                text.push('?');
            }
        }
        text.push(')');
    }
    text
}

/// Splits `0..len` into chunks of power-of-two sizes, largest first, none
/// above [`MAX_ROWS_PER_STATEMENT`].
fn chunks(len: usize) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let mut start = 0;
    while start < len {
        let remaining = len - start;
        let size = if remaining >= MAX_ROWS_PER_STATEMENT {
            MAX_ROWS_PER_STATEMENT
        } else {
            1 << remaining.ilog2()
        };
        ranges.push(start..start + size);
        start += size;
    }
    ranges
}

/// A task row with the run it belongs to.
struct TaskRow<'a> {
    run_id: &'a str,
    namespace: &'a str,
    task: &'a TaskRecord,
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

/// The rows of a batch, gathered by table, with what the checks need.
struct BatchRows<'a> {
    status_changes: Vec<(&'a RunChanges, &'a RunStatusChange)>,
    unchanged_runs: Vec<&'a RunChanges>,
    tasks: Vec<TaskRow<'a>>,
    new_attempts: Vec<(&'a RunChanges, &'a AttemptRecord)>,
    attempt_updates: Vec<(&'a RunChanges, &'a AttemptUpdate)>,
    deltas: Vec<(&'a RunChanges, &'a DeltaRecord, String)>,
    events: Vec<PendingEvent<'a>>,
}

impl<'a> BatchRows<'a> {
    fn gather(batch: &'a [RunChanges]) -> Result<BatchRows<'a>, StoreError> {
        let mut rows = BatchRows {
            status_changes: Vec::new(),
            unchanged_runs: Vec::new(),
            tasks: Vec::new(),
            new_attempts: Vec::new(),
            attempt_updates: Vec::new(),
            deltas: Vec::new(),
            events: Vec::new(),
        };
        let mut runs_seen = BTreeSet::new();
        for changes in batch {
            let run_id = changes.run_id.as_str();
            // One entry per run: the multi-row updates could not say which
            // of two changes to one row came last.
            if !runs_seen.insert(run_id) {
                return Err(StoreError::Corrupt(format!(
                    "run {run_id:?} appears twice in one batch"
                )));
            }
            match &changes.status {
                Some(status) => rows.status_changes.push((changes, status)),
                None => rows.unchanged_runs.push(changes),
            }
            let mut tasks_seen = BTreeSet::new();
            for task in &changes.tasks {
                if !tasks_seen.insert(task.task_id.as_str()) {
                    return Err(StoreError::Corrupt(format!(
                        "task {:?} of run {run_id:?} appears twice in one batch",
                        task.task_id
                    )));
                }
                rows.tasks.push(TaskRow {
                    run_id,
                    namespace: &changes.namespace,
                    task,
                });
            }
            for attempt in &changes.new_attempts {
                if attempt.run_id != changes.run_id {
                    return Err(StoreError::Corrupt(format!(
                        "attempt {:?} of run {:?} is in the changes of run {run_id:?}",
                        attempt.id, attempt.run_id
                    )));
                }
                rows.new_attempts.push((changes, attempt));
            }
            let mut attempts_seen = BTreeSet::new();
            for update in &changes.attempt_updates {
                if !attempts_seen.insert(update.id.as_str()) {
                    return Err(StoreError::Corrupt(format!(
                        "attempt {:?} of run {run_id:?} is updated twice in one batch",
                        update.id
                    )));
                }
                rows.attempt_updates.push((changes, update));
            }
            for delta in &changes.deltas {
                let removed_json = serde_json::to_string(&delta.removed_keys).map_err(|error| {
                    StoreError::Corrupt(format!(
                        "removed keys of task {:?} of run {run_id:?}: {error}",
                        delta.task_id
                    ))
                })?;
                rows.deltas.push((changes, delta, removed_json));
            }
            for event in &changes.events {
                rows.events.push(PendingEvent::new(
                    &changes.namespace,
                    run_id,
                    &changes.workflow_name,
                    event,
                )?);
            }
        }
        Ok(rows)
    }
}

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
        let tasks: Vec<TaskRow<'_>> = run
            .tasks
            .iter()
            .map(|task| TaskRow {
                run_id: &run.id,
                namespace: &run.namespace,
                task,
            })
            .collect();
        Self::insert_tasks(&mut transaction, &tasks).await?;
        let events = Self::append_events(&mut transaction, &pending).await?;
        transaction.commit().await?;
        Ok(CreateRunOutcome::Created(events))
    }

    /// Writes runs that carry no idempotency key, their tasks and events,
    /// in one transaction.
    pub(super) async fn create_runs(
        pool: &Pool<DB>,
        runs: &[NewRun],
    ) -> Result<Vec<EventRecord>, StoreError> {
        if let Some(run) = runs.iter().find(|run| run.idempotency_key.is_some()) {
            return Err(StoreError::Corrupt(format!(
                "run {:?} has an idempotency key; it must be created on its own",
                run.id
            )));
        }
        let pending = runs
            .iter()
            .flat_map(|run| {
                run.events.iter().map(|event| {
                    PendingEvent::new(&run.namespace, &run.id, &run.workflow_name, event)
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let tasks: Vec<TaskRow<'_>> = runs
            .iter()
            .flat_map(|run| {
                run.tasks.iter().map(|task| TaskRow {
                    run_id: &run.id,
                    namespace: &run.namespace,
                    task,
                })
            })
            .collect();
        let mut transaction = pool.begin().await?;
        for range in chunks(runs.len()) {
            let chunk = &runs[range];
            let sql = format!("{INSERT_RUNS}{}", placeholders::<DB>(chunk.len(), 9));
            let mut query = sqlx::query::<DB>(sqlx::AssertSqlSafe(sql));
            for run in chunk {
                query = query
                    .bind(run.id.as_str())
                    .bind(run.namespace.as_str())
                    .bind(run.workflow_name.as_str())
                    .bind(run.workflow_version.as_str())
                    .bind(RunStatus::Pending.as_str())
                    .bind(run.input_context_json.as_str())
                    .bind(None::<&str>)
                    .bind(run.request_hash.as_str())
                    .bind(run.created_at_ms);
            }
            query.execute(&mut *transaction).await?;
        }
        Self::insert_tasks(&mut transaction, &tasks).await?;
        let events = Self::append_events(&mut transaction, &pending).await?;
        transaction.commit().await?;
        Ok(events)
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
        let rows = BatchRows::gather(batch)?;
        let mut transaction = pool.begin().await?;
        Self::update_runs(&mut transaction, &rows).await?;
        Self::update_tasks(&mut transaction, &rows.tasks).await?;
        Self::insert_attempts(&mut transaction, &rows.new_attempts).await?;
        Self::update_attempts(&mut transaction, &rows.attempt_updates).await?;
        Self::insert_deltas(&mut transaction, &rows.deltas).await?;
        for changes in batch {
            for conflict in &changes.conflicts {
                sqlx::query::<DB>(INSERT_CONFLICT)
                    .bind(changes.run_id.as_str())
                    .bind(changes.namespace.as_str())
                    .bind(conflict.key.as_str())
                    .bind(conflict.winning_task_id.as_str())
                    .bind(conflict.overridden_task_id.as_str())
                    .execute(&mut *transaction)
                    .await?;
            }
        }
        let events = Self::append_events(&mut transaction, &rows.events).await?;
        transaction.commit().await?;
        Ok(events)
    }

    /// Applies the status changes and checks that every run of the batch
    /// exists in its namespace and is of the workflow its changes name (the
    /// events' workflow_name column comes from the changes; a mismatch would
    /// file them under the wrong workflow for good).
    async fn update_runs(
        connection: &mut DB::Connection,
        rows: &BatchRows<'_>,
    ) -> Result<(), StoreError> {
        let mut found: HashMap<String, String> = HashMap::new();
        for range in chunks(rows.status_changes.len()) {
            let chunk = &rows.status_changes[range];
            let sql = format!(
                "{}{}{}",
                UPDATE_RUNS.0,
                placeholders::<DB>(chunk.len(), 6),
                UPDATE_RUNS.1
            );
            let mut query = sqlx::query::<DB>(sqlx::AssertSqlSafe(sql));
            for (changes, status) in chunk {
                query = query
                    .bind(changes.run_id.as_str())
                    .bind(changes.namespace.as_str())
                    .bind(status.status.as_str())
                    .bind(status.started_at_ms)
                    .bind(status.finished_at_ms)
                    .bind(status.final_context_json.as_deref());
            }
            for row in query.fetch_all(&mut *connection).await? {
                found.insert(row.try_get(0)?, row.try_get(1)?);
            }
        }
        for range in chunks(rows.unchanged_runs.len()) {
            let chunk = &rows.unchanged_runs[range];
            let sql = format!(
                "{}{}{}",
                SELECT_RUNS.0,
                placeholders::<DB>(chunk.len(), 2),
                SELECT_RUNS.1
            );
            let mut query = sqlx::query::<DB>(sqlx::AssertSqlSafe(sql));
            for changes in chunk {
                query = query
                    .bind(changes.run_id.as_str())
                    .bind(changes.namespace.as_str());
            }
            for row in query.fetch_all(&mut *connection).await? {
                found.insert(row.try_get(0)?, row.try_get(1)?);
            }
        }
        let all_runs = rows
            .status_changes
            .iter()
            .map(|(changes, _)| *changes)
            .chain(rows.unchanged_runs.iter().copied());
        for changes in all_runs {
            let run_id = &changes.run_id;
            match found.get(run_id) {
                None => return Err(StoreError::NotFound(format!("run {run_id:?}"))),
                Some(workflow_name) if *workflow_name != changes.workflow_name => {
                    return Err(StoreError::Corrupt(format!(
                        "changes of run {run_id:?} name workflow {:?}, but the run is of {workflow_name:?}",
                        changes.workflow_name
                    )));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    async fn insert_tasks(
        connection: &mut DB::Connection,
        tasks: &[TaskRow<'_>],
    ) -> Result<(), StoreError> {
        for range in chunks(tasks.len()) {
            let chunk = &tasks[range];
            let sql = format!("{INSERT_TASKS}{}", placeholders::<DB>(chunk.len(), 13));
            let mut query = sqlx::query::<DB>(sqlx::AssertSqlSafe(sql));
            for row in chunk {
                query = bind_task(query, row);
            }
            query.execute(&mut *connection).await?;
        }
        Ok(())
    }

    /// Replaces task rows whole; each must exist.
    async fn update_tasks(
        connection: &mut DB::Connection,
        tasks: &[TaskRow<'_>],
    ) -> Result<(), StoreError> {
        for range in chunks(tasks.len()) {
            let chunk = &tasks[range];
            let sql = format!(
                "{}{}{}",
                UPDATE_TASKS.0,
                placeholders::<DB>(chunk.len(), 13),
                UPDATE_TASKS.1
            );
            let mut query = sqlx::query::<DB>(sqlx::AssertSqlSafe(sql));
            for row in chunk {
                query = bind_task(query, row);
            }
            let updated = query.fetch_all(&mut *connection).await?;
            if updated.len() != chunk.len() {
                let mut present = BTreeSet::new();
                for row in &updated {
                    present.insert((row.try_get::<String, _>(0)?, row.try_get::<String, _>(1)?));
                }
                let missing = chunk.iter().find(|row| {
                    !present.contains(&(row.run_id.to_owned(), row.task.task_id.clone()))
                });
                return Err(StoreError::NotFound(match missing {
                    Some(row) => format!("task {:?} of run {:?}", row.task.task_id, row.run_id),
                    None => "a task updated twice in one batch".to_owned(),
                }));
            }
        }
        Ok(())
    }

    async fn insert_attempts(
        connection: &mut DB::Connection,
        attempts: &[(&RunChanges, &AttemptRecord)],
    ) -> Result<(), StoreError> {
        for range in chunks(attempts.len()) {
            let chunk = &attempts[range];
            let sql = format!("{INSERT_ATTEMPTS}{}", placeholders::<DB>(chunk.len(), 12));
            let mut query = sqlx::query::<DB>(sqlx::AssertSqlSafe(sql));
            for (changes, attempt) in chunk {
                query = query
                    .bind(attempt.id.as_str())
                    .bind(changes.namespace.as_str())
                    .bind(changes.run_id.as_str())
                    .bind(attempt.task_id.as_str())
                    .bind(i64::from(attempt.number))
                    .bind(attempt.executor_id.as_str())
                    .bind(attempt.state.as_str())
                    .bind(attempt.error.as_deref())
                    .bind(attempt.assigned_at_ms)
                    .bind(attempt.deadline_at_ms)
                    .bind(attempt.started_at_ms)
                    .bind(attempt.finished_at_ms);
            }
            query.execute(&mut *connection).await?;
        }
        Ok(())
    }

    async fn update_attempts(
        connection: &mut DB::Connection,
        updates: &[(&RunChanges, &AttemptUpdate)],
    ) -> Result<(), StoreError> {
        for range in chunks(updates.len()) {
            let chunk = &updates[range];
            let sql = format!(
                "{}{}{}",
                UPDATE_ATTEMPTS.0,
                placeholders::<DB>(chunk.len(), 7),
                UPDATE_ATTEMPTS.1
            );
            let mut query = sqlx::query::<DB>(sqlx::AssertSqlSafe(sql));
            for (changes, update) in chunk {
                query = query
                    .bind(update.id.as_str())
                    .bind(changes.run_id.as_str())
                    .bind(changes.namespace.as_str())
                    .bind(update.state.as_str())
                    .bind(update.error.as_deref())
                    .bind(update.started_at_ms)
                    .bind(update.finished_at_ms);
            }
            let updated = query.fetch_all(&mut *connection).await?;
            if updated.len() != chunk.len() {
                let mut present = BTreeSet::new();
                for row in &updated {
                    present.insert(row.try_get::<String, _>(0)?);
                }
                let missing = chunk
                    .iter()
                    .find(|(_, update)| !present.contains(&update.id));
                return Err(StoreError::NotFound(match missing {
                    Some((changes, update)) => {
                        format!("attempt {:?} of run {:?}", update.id, changes.run_id)
                    }
                    None => "an attempt updated twice in one batch".to_owned(),
                }));
            }
        }
        Ok(())
    }

    async fn insert_deltas(
        connection: &mut DB::Connection,
        deltas: &[(&RunChanges, &DeltaRecord, String)],
    ) -> Result<(), StoreError> {
        for range in chunks(deltas.len()) {
            let chunk = &deltas[range];
            let sql = format!("{INSERT_DELTAS}{}", placeholders::<DB>(chunk.len(), 6));
            let mut query = sqlx::query::<DB>(sqlx::AssertSqlSafe(sql));
            for (changes, delta, removed_json) in chunk {
                query = query
                    .bind(changes.run_id.as_str())
                    .bind(changes.namespace.as_str())
                    .bind(delta.task_id.as_str())
                    .bind(delta.attempt_id.as_str())
                    .bind(delta.set_json.as_str())
                    .bind(removed_json.as_str());
            }
            query.execute(&mut *connection).await?;
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
        for range in chunks(pending.len()) {
            let chunk = &pending[range.clone()];
            let sql = format!("{INSERT_EVENTS}{}", placeholders::<DB>(chunk.len(), 8));
            let mut query = sqlx::query::<DB>(sqlx::AssertSqlSafe(sql));
            for (offset, event) in range.zip(chunk) {
                query = query
                    .bind(first + offset as i64)
                    .bind(event.namespace)
                    .bind(event.run_id)
                    .bind(event.workflow_name)
                    .bind(event.sequence)
                    .bind(event.event.event_type.as_str())
                    .bind(event.payload_json.as_str())
                    .bind(event.event.created_at_ms);
            }
            query.execute(&mut *connection).await?;
        }
        let mut records = Vec::with_capacity(pending.len());
        for (cursor, event) in (first..).zip(pending) {
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
}

/// Binds a task row's 13 columns in the order of `INSERT_TASKS` and
/// `UPDATE_TASKS`.
fn bind_task<'q, DB>(
    query: sqlx::query::Query<'q, DB, DB::Arguments>,
    row: &'q TaskRow<'_>,
) -> sqlx::query::Query<'q, DB, DB::Arguments>
where
    DB: Database,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'a> Option<&'a str>: Encode<'a, DB>,
    for<'a> i64: Encode<'a, DB> + Type<DB>,
    for<'a> Option<i64>: Encode<'a, DB>,
{
    let task = row.task;
    query
        .bind(row.run_id)
        .bind(row.namespace)
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_powers_of_two_and_cover_every_row() {
        assert!(chunks(0).is_empty());
        assert_eq!(chunks(1), vec![Range { start: 0, end: 1 }]);
        assert_eq!(chunks(7), [0..4, 4..6, 6..7]);
        let many = chunks(600);
        assert_eq!(many, [0..256, 256..512, 512..576, 576..592, 592..600]);
        for len in 0..1100 {
            let ranges = chunks(len);
            assert_eq!(ranges.iter().map(|range| range.len()).sum::<usize>(), len);
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].end, pair[1].start);
            }
            for range in &ranges {
                assert!(range.len().is_power_of_two() && range.len() <= MAX_ROWS_PER_STATEMENT);
            }
        }
    }

    #[test]
    fn placeholders_number_rows_then_columns() {
        assert_eq!(placeholders::<sqlx::Postgres>(1, 2), "($1, $2)");
        assert_eq!(
            placeholders::<sqlx::Postgres>(2, 3),
            "($1, $2, $3), ($4, $5, $6)"
        );
        assert_eq!(placeholders::<sqlx::Sqlite>(2, 2), "(?, ?), (?, ?)");
    }
}
