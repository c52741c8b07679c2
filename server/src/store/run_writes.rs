//! The run writes: creating runs and committing a coordinator turn, for both
//! backends.
//!
//! A turn touches many rows of few kinds, so each kind is written with
//! multi-row statements ([`super::batch_sql`]) rather than a statement per
//! row: a statement costs a round trip to the database (a thread hand-off
//! with SQLite, a network exchange with Postgres) whatever its size, and
//! that round trip, not the rows, bounded throughput. Row counts are split
//! into chunks whose sizes are powers of two, so each table has only a
//! handful of distinct statement texts and the prepared-statement caches
//! stay warm.
//!
//! Every write goes through one transaction, and the event cursors are taken
//! from the `event_sequencer` row inside it: the row lock serializes event
//! writers only for the last statements before the commit (Postgres), and a
//! later cursor can never become visible before an earlier one.

use std::collections::{BTreeSet, HashMap};

use sqlx::query::Query;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

use super::StoreError;
use super::batch_sql::{
    BatchRows, INSERT_ATTEMPTS, INSERT_DELTAS, INSERT_EVENTS, INSERT_MAP_OUTPUTS, INSERT_RUNS,
    INSERT_TASKS, PendingEvent, RETURNING_ATTEMPTS, RETURNING_RUNS, RETURNING_TASKS, SELECT_RUNS,
    TaskRow, UPDATE_ATTEMPTS, UPDATE_RUNS, UPDATE_TASKS, chunks,
};
use super::run_queries::RunQueries;
use crate::engine::records::{
    AttemptRecord, AttemptUpdate, CreateRunOutcome, DeltaRecord, EventRecord, NewRun, RunChanges,
    RunStatusChange, SkipReason,
};

const INSERT_RUN: &str = "INSERT INTO runs \
     (id, namespace, workflow_name, workflow_version, status, input_context_json, \
     final_context_json, idempotency_key, request_hash, created_at_ms, started_at_ms, \
     finished_at_ms, concurrency_key) \
     VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $5 = 'cancelled' THEN $6 END, $7, $8, $9, \
     NULL, CASE WHEN $5 = 'cancelled' THEN $9 END, $10) \
     ON CONFLICT (namespace, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING \
     RETURNING id";

const START_QUEUED_RUN: &str = "UPDATE runs SET status = 'pending' \
     WHERE id = $1 AND namespace = $2 AND status = 'queued' RETURNING id";

const CANCEL_QUEUED_RUN: &str = "UPDATE runs SET status = 'cancelled', finished_at_ms = $3, \
     final_context_json = input_context_json \
     WHERE id = $1 AND namespace = $2 AND status = 'queued' RETURNING id";

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

type BoundQuery<'q, DB> = Query<'q, DB, <DB as Database>::Arguments>;

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
        let pending = PendingEvent::of_runs(std::slice::from_ref(run))?;
        let mut transaction = pool.begin().await?;
        let inserted = sqlx::query::<DB>(INSERT_RUN)
            .bind(run.id.as_str())
            .bind(run.namespace.as_str())
            .bind(run.workflow_name.as_str())
            .bind(run.workflow_version.as_str())
            .bind(run.status.as_str())
            .bind(run.input_context_json.as_str())
            .bind(run.idempotency_key.as_deref())
            .bind(run.request_hash.as_str())
            .bind(run.created_at_ms)
            .bind(run.concurrency_key.as_deref())
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
        Self::insert_rows(
            &mut transaction,
            &TaskRow::of_runs(std::slice::from_ref(run)),
            |rows| INSERT_TASKS.sql::<DB>(rows, ""),
            Self::bind_task,
        )
        .await?;
        let events = Self::append_events(&mut transaction, &pending).await?;
        transaction.commit().await?;
        Ok(CreateRunOutcome::Created(events))
    }

    /// Starts a QUEUED run: its row becomes PENDING and its tasks and events
    /// are written, in one transaction, only if it is still QUEUED (a
    /// CancelRun may have ended it meanwhile); `None` then, with nothing
    /// written.
    pub(super) async fn start_queued_run(
        pool: &Pool<DB>,
        run: &NewRun,
    ) -> Result<Option<Vec<EventRecord>>, StoreError> {
        let pending = PendingEvent::of_runs(std::slice::from_ref(run))?;
        let mut transaction = pool.begin().await?;
        let updated = sqlx::query::<DB>(START_QUEUED_RUN)
            .bind(run.id.as_str())
            .bind(run.namespace.as_str())
            .fetch_optional(&mut *transaction)
            .await?;
        if updated.is_none() {
            transaction.rollback().await?;
            return Ok(None);
        }
        Self::insert_rows(
            &mut transaction,
            &TaskRow::of_runs(std::slice::from_ref(run)),
            |rows| INSERT_TASKS.sql::<DB>(rows, ""),
            Self::bind_task,
        )
        .await?;
        let events = Self::append_events(&mut transaction, &pending).await?;
        transaction.commit().await?;
        Ok(Some(events))
    }

    /// Ends a QUEUED run CANCELLED with `events` (its RUN_FINISHED), only if
    /// it is still QUEUED; `None` then, with nothing written.
    pub(super) async fn cancel_queued_run(
        pool: &Pool<DB>,
        run: &NewRun,
        now_ms: i64,
    ) -> Result<Option<Vec<EventRecord>>, StoreError> {
        let pending = PendingEvent::of_runs(std::slice::from_ref(run))?;
        let mut transaction = pool.begin().await?;
        let updated = sqlx::query::<DB>(CANCEL_QUEUED_RUN)
            .bind(run.id.as_str())
            .bind(run.namespace.as_str())
            .bind(now_ms)
            .fetch_optional(&mut *transaction)
            .await?;
        if updated.is_none() {
            transaction.rollback().await?;
            return Ok(None);
        }
        let events = Self::append_events(&mut transaction, &pending).await?;
        transaction.commit().await?;
        Ok(Some(events))
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
        let pending = PendingEvent::of_runs(runs)?;
        let mut transaction = pool.begin().await?;
        Self::insert_rows(
            &mut transaction,
            runs,
            |rows| INSERT_RUNS.sql::<DB>(rows, ""),
            Self::bind_run,
        )
        .await?;
        Self::insert_rows(
            &mut transaction,
            &TaskRow::of_runs(runs),
            |rows| INSERT_TASKS.sql::<DB>(rows, ""),
            Self::bind_task,
        )
        .await?;
        let events = Self::append_events(&mut transaction, &pending).await?;
        transaction.commit().await?;
        Ok(events)
    }

    /// Commits a batch in one transaction, one statement per kind of row
    /// (and chunk), each checked as it goes, so a failure names its culprit.
    /// Every change names its run and namespace, and each is checked, so a
    /// change can never land in another namespace's run; any failure rolls
    /// the whole batch back.
    pub(super) async fn commit_changes(
        pool: &Pool<DB>,
        batch: &[RunChanges],
    ) -> Result<Vec<EventRecord>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut transaction = pool.begin().await?;
        let events = Self::write_changes(&mut *transaction, batch).await?;
        transaction.commit().await?;
        Ok(events)
    }

    /// The statements of [`Self::commit_changes`], inside the caller's
    /// transaction.
    pub(super) async fn write_changes(
        transaction: &mut DB::Connection,
        batch: &[RunChanges],
    ) -> Result<Vec<EventRecord>, StoreError> {
        let rows = BatchRows::gather(batch)?;
        Self::update_runs(&mut *transaction, &rows).await?;
        // Instances expanded in this batch, before anything refers to them.
        Self::insert_rows(
            &mut *transaction,
            &rows.new_tasks,
            |rows| INSERT_TASKS.sql::<DB>(rows, ""),
            Self::bind_task,
        )
        .await?;
        // Task rows are replaced whole; each must exist.
        Self::update_rows(
            &mut *transaction,
            &rows.tasks,
            |rows| UPDATE_TASKS.sql::<DB>(rows, RETURNING_TASKS),
            Self::bind_task,
            |row| format!("{} {}", row.run_id, row.task.task_id),
            |row| format!("task {:?} of run {:?}", row.task.task_id, row.run_id),
        )
        .await?;
        Self::insert_rows(
            &mut *transaction,
            &rows.new_attempts,
            |rows| INSERT_ATTEMPTS.sql::<DB>(rows, ""),
            Self::bind_new_attempt,
        )
        .await?;
        Self::update_rows(
            &mut *transaction,
            &rows.attempt_updates,
            |rows| UPDATE_ATTEMPTS.sql::<DB>(rows, RETURNING_ATTEMPTS),
            Self::bind_attempt_update,
            |(_, update)| update.id.clone(),
            |(changes, update)| format!("attempt {:?} of run {:?}", update.id, changes.run_id),
        )
        .await?;
        Self::insert_rows(
            &mut *transaction,
            &rows.deltas,
            |rows| INSERT_DELTAS.sql::<DB>(rows, ""),
            Self::bind_delta,
        )
        .await?;
        Self::insert_rows(
            &mut *transaction,
            &rows.map_outputs,
            |rows| INSERT_MAP_OUTPUTS.sql::<DB>(rows, ""),
            Self::bind_map_output,
        )
        .await?;
        Self::insert_conflicts(&mut *transaction, batch).await?;
        Self::append_events(&mut *transaction, &rows.events).await
    }

    /// Inserts `rows` with multi-row statements built by `sql` (given a row
    /// count) and bound row by row with `bind`.
    async fn insert_rows<R>(
        connection: &mut DB::Connection,
        rows: &[R],
        sql: impl Fn(usize) -> String,
        bind: for<'q> fn(BoundQuery<'q, DB>, &'q R) -> BoundQuery<'q, DB>,
    ) -> Result<(), StoreError> {
        for range in chunks(rows.len()) {
            let chunk = &rows[range];
            let mut query = sqlx::query::<DB>(sqlx::AssertSqlSafe(sql(chunk.len())));
            for row in chunk {
                query = bind(query, row);
            }
            query.execute(&mut *connection).await?;
        }
        Ok(())
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
            let sql = UPDATE_RUNS.sql::<DB>(chunk.len(), RETURNING_RUNS);
            let mut query = sqlx::query::<DB>(sqlx::AssertSqlSafe(sql));
            for change in chunk {
                query = Self::bind_status(query, change);
            }
            for row in query.fetch_all(&mut *connection).await? {
                found.insert(row.try_get(0)?, row.try_get(1)?);
            }
        }
        for range in chunks(rows.unchanged_runs.len()) {
            let chunk = &rows.unchanged_runs[range];
            let sql = SELECT_RUNS.sql::<DB>(chunk.len(), "");
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
        for changes in rows.runs() {
            let run_id = &changes.run_id;
            match found.get(run_id) {
                None => {
                    return Err(StoreError::NotFound(format!(
                        "run {}",
                        tributary_core::shown(run_id)
                    )));
                }
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

    /// Updates rows that must all exist, with multi-row statements whose
    /// `RETURNING` gives one key per row updated; names the first row that
    /// was not there.
    async fn update_rows<R>(
        connection: &mut DB::Connection,
        rows: &[R],
        sql: impl Fn(usize) -> String,
        bind: for<'q> fn(BoundQuery<'q, DB>, &'q R) -> BoundQuery<'q, DB>,
        key: fn(&R) -> String,
        describe: fn(&R) -> String,
    ) -> Result<(), StoreError> {
        for range in chunks(rows.len()) {
            let chunk = &rows[range];
            let mut query = sqlx::query::<DB>(sqlx::AssertSqlSafe(sql(chunk.len())));
            for row in chunk {
                query = bind(query, row);
            }
            let updated = query.fetch_all(&mut *connection).await?;
            if updated.len() != chunk.len() {
                let mut present = BTreeSet::new();
                for row in &updated {
                    present.insert(row.try_get::<String, _>(0)?);
                }
                return Err(StoreError::NotFound(
                    match chunk.iter().find(|row| !present.contains(&key(row))) {
                        Some(row) => describe(row),
                        None => "a row updated twice in one batch".to_owned(),
                    },
                ));
            }
        }
        Ok(())
    }

    pub(super) async fn insert_conflicts(
        connection: &mut DB::Connection,
        batch: &[RunChanges],
    ) -> Result<(), StoreError> {
        for changes in batch {
            for conflict in &changes.conflicts {
                sqlx::query::<DB>(INSERT_CONFLICT)
                    .bind(changes.run_id.as_str())
                    .bind(changes.namespace.as_str())
                    .bind(conflict.key.as_str())
                    .bind(conflict.winning_task_id.as_str())
                    .bind(conflict.overridden_task_id.as_str())
                    .execute(&mut *connection)
                    .await?;
            }
        }
        Ok(())
    }

    /// Takes one block of cursors for `count` events (one sequencer update
    /// per transaction) and returns the first.
    pub(super) async fn take_cursors(
        connection: &mut DB::Connection,
        count: usize,
    ) -> Result<i64, StoreError> {
        let count = i64::try_from(count)
            .map_err(|_| StoreError::Corrupt(format!("{count} events in one batch")))?;
        Ok(sqlx::query::<DB>(TAKE_CURSORS)
            .bind(count)
            .fetch_one(&mut *connection)
            .await?
            .try_get(0)?)
    }

    /// Takes cursors for all `pending` events and inserts them in order.
    async fn append_events(
        connection: &mut DB::Connection,
        pending: &[PendingEvent<'_>],
    ) -> Result<Vec<EventRecord>, StoreError> {
        if pending.is_empty() {
            return Ok(Vec::new());
        }
        let first = Self::take_cursors(&mut *connection, pending.len()).await?;
        let numbered: Vec<(i64, &PendingEvent<'_>)> = (first..).zip(pending).collect();
        Self::insert_rows(
            connection,
            &numbered,
            |rows| INSERT_EVENTS.sql::<DB>(rows, ""),
            Self::bind_event,
        )
        .await?;
        PendingEvent::records(first, pending)
    }

    /// Binds every row of a turn in the order of
    /// `BatchRows::turn_statements`; `events` are the events with their
    /// cursors (or offsets).
    pub(super) fn bind_turn<'q>(
        mut query: BoundQuery<'q, DB>,
        rows: &'q BatchRows<'_>,
        events: &'q [(i64, &PendingEvent<'_>)],
    ) -> BoundQuery<'q, DB> {
        for change in &rows.status_changes {
            query = Self::bind_status(query, change);
        }
        for task in &rows.tasks {
            query = Self::bind_task(query, task);
        }
        for attempt in &rows.new_attempts {
            query = Self::bind_new_attempt(query, attempt);
        }
        for update in &rows.attempt_updates {
            query = Self::bind_attempt_update(query, update);
        }
        for delta in &rows.deltas {
            query = Self::bind_delta(query, delta);
        }
        for event in events {
            query = Self::bind_event(query, event);
        }
        query
    }

    fn bind_run<'q>(query: BoundQuery<'q, DB>, run: &'q NewRun) -> BoundQuery<'q, DB> {
        query
            .bind(run.id.as_str())
            .bind(run.namespace.as_str())
            .bind(run.workflow_name.as_str())
            .bind(run.workflow_version.as_str())
            .bind(run.status.as_str())
            .bind(run.input_context_json.as_str())
            .bind(run.idempotency_key.as_deref())
            .bind(run.request_hash.as_str())
            .bind(run.created_at_ms)
            .bind(run.concurrency_key.as_deref())
    }

    fn bind_status<'q>(
        query: BoundQuery<'q, DB>,
        (changes, status): &'q (&RunChanges, &RunStatusChange),
    ) -> BoundQuery<'q, DB> {
        query
            .bind(changes.run_id.as_str())
            .bind(changes.namespace.as_str())
            .bind(status.status.as_str())
            .bind(status.started_at_ms)
            .bind(status.finished_at_ms)
            .bind(status.final_context_json.as_deref())
    }

    /// A task row's 15 columns in the order of `INSERT_TASKS` and
    /// `UPDATE_TASKS`.
    pub(super) fn bind_task<'q>(
        query: BoundQuery<'q, DB>,
        row: &'q TaskRow<'_>,
    ) -> BoundQuery<'q, DB> {
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
            .bind(task.map_index.map(i64::from))
            .bind(task.map_size.map(i64::from))
    }

    fn bind_map_output<'q>(
        query: BoundQuery<'q, DB>,
        (changes, output): &'q (&RunChanges, &DeltaRecord),
    ) -> BoundQuery<'q, DB> {
        query
            .bind(changes.run_id.as_str())
            .bind(changes.namespace.as_str())
            .bind(output.task_id.as_str())
            .bind(output.set_json.as_str())
    }

    fn bind_new_attempt<'q>(
        query: BoundQuery<'q, DB>,
        (changes, attempt): &'q (&RunChanges, &AttemptRecord),
    ) -> BoundQuery<'q, DB> {
        query
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
            .bind(attempt.finished_at_ms)
            .bind(attempt.instance_id.as_str())
    }

    fn bind_attempt_update<'q>(
        query: BoundQuery<'q, DB>,
        (changes, update): &'q (&RunChanges, &AttemptUpdate),
    ) -> BoundQuery<'q, DB> {
        query
            .bind(update.id.as_str())
            .bind(changes.run_id.as_str())
            .bind(changes.namespace.as_str())
            .bind(update.state.as_str())
            .bind(update.error.as_deref())
            .bind(update.started_at_ms)
            .bind(update.finished_at_ms)
    }

    fn bind_delta<'q>(
        query: BoundQuery<'q, DB>,
        (changes, delta, removed_json): &'q (&RunChanges, &DeltaRecord, String),
    ) -> BoundQuery<'q, DB> {
        query
            .bind(changes.run_id.as_str())
            .bind(changes.namespace.as_str())
            .bind(delta.task_id.as_str())
            .bind(delta.attempt_id.as_str())
            .bind(delta.set_json.as_str())
            .bind(removed_json.as_str())
    }

    fn bind_event<'q>(
        query: BoundQuery<'q, DB>,
        (cursor, event): &'q (i64, &PendingEvent<'_>),
    ) -> BoundQuery<'q, DB> {
        query
            .bind(*cursor)
            .bind(event.namespace)
            .bind(event.run_id)
            .bind(event.workflow_name)
            .bind(event.sequence)
            .bind(event.event.event_type.as_str())
            .bind(event.payload_json.as_str())
            .bind(event.event.created_at_ms)
    }
}
