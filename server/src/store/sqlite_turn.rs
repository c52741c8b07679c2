//! SQLite's fast way to commit a coordinator turn: all of the turn's
//! multi-row statements sent as one script, in one call.
//!
//! sqlx runs each SQLite statement on the connection's own thread, so a
//! statement costs two thread hand-offs whatever it does; a turn of a dozen
//! statements spent more time waking threads than writing rows. As one
//! script the turn costs four calls (begin, cursors, script, commit).
//!
//! The script cannot report which statement matched what, only how many
//! rows all of them touched, so the checks ride on that count: every
//! update must hit its row, and events are inserted only when their run
//! exists in their namespace and is of their workflow. When the count is
//! off, or the script fails, the turn is rolled back and committed again
//! the checked way (`RunQueries::commit_changes`), which names the culprit.

use sqlx::{Sqlite, SqlitePool};

use super::StoreError;
use super::batch_sql::{
    BatchRows, INSERT_ATTEMPTS, INSERT_CHECKED_EVENTS, INSERT_DELTAS, MultiRow, PendingEvent,
    UPDATE_ATTEMPTS, UPDATE_RUNS, UPDATE_TASKS, chunks,
};
use super::run_queries::RunQueries;
use crate::engine::records::{EventRecord, RunChanges};

/// Turns of more rows than this go the checked way. A script's text
/// depends on its row counts, and SQLite keeps a prepared statement per
/// text: small turns (what a lightly loaded server, where latency matters,
/// commits) come in a few shapes that stay prepared, while large ones would
/// each be prepared anew and crowd the cache, and save little, since their
/// statements are few compared with their rows.
const MAX_SCRIPT_ROWS: usize = 16;

impl RunQueries<Sqlite> {
    /// Commits `batch` as one script; `None` when it must be committed the
    /// checked way instead (nothing was written).
    pub(super) async fn commit_as_script(
        pool: &SqlitePool,
        batch: &[RunChanges],
    ) -> Result<Option<Vec<EventRecord>>, StoreError> {
        // The run checks ride on the events; a run without any has nothing
        // to carry them.
        if batch.is_empty() || batch.iter().any(|changes| changes.events.is_empty()) {
            return Ok(None);
        }
        let rows = BatchRows::gather(batch)?;
        if rows.row_count() > MAX_SCRIPT_ROWS {
            return Ok(None);
        }
        let mut script = String::new();
        let mut expected_rows = 0u64;
        let mut add = |statement: &MultiRow, rows: usize| {
            for range in chunks(rows) {
                script.push_str(&statement.sql::<Sqlite>(range.len(), ""));
                script.push_str(";\n");
            }
            expected_rows += rows as u64;
        };
        add(&UPDATE_RUNS, rows.status_changes.len());
        add(&UPDATE_TASKS, rows.tasks.len());
        add(&INSERT_ATTEMPTS, rows.new_attempts.len());
        add(&UPDATE_ATTEMPTS, rows.attempt_updates.len());
        add(&INSERT_DELTAS, rows.deltas.len());
        add(&INSERT_CHECKED_EVENTS, rows.events.len());

        let mut transaction = pool.begin().await?;
        let first = Self::take_cursors(&mut transaction, rows.events.len()).await?;
        let numbered: Vec<(i64, &PendingEvent<'_>)> = (first..).zip(&rows.events).collect();
        let mut query = sqlx::query::<Sqlite>(sqlx::AssertSqlSafe(script));
        // Bound in the order of the statements, each kind's rows in order.
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
        for event in &numbered {
            query = Self::bind_event(query, event);
        }
        let touched = match query.execute(&mut *transaction).await {
            Ok(result) => result.rows_affected(),
            Err(error) => {
                let error = StoreError::from(error);
                if error.is_transient() {
                    return Err(error);
                }
                tracing::debug!(%error, "the turn's script failed; committing it the checked way");
                transaction.rollback().await?;
                return Ok(None);
            }
        };
        if touched != expected_rows {
            tracing::debug!(
                touched,
                expected_rows,
                "the turn's script touched an unexpected number of rows; committing it the checked way"
            );
            transaction.rollback().await?;
            return Ok(None);
        }
        Self::insert_conflicts(&mut transaction, batch).await?;
        transaction.commit().await?;
        Ok(Some(PendingEvent::records(first, &rows.events)?))
    }
}
