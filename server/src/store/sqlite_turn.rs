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
use super::batch_sql::{BatchRows, INSERT_CHECKED_EVENTS, PendingEvent, chunks};
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
        let rows = BatchRows::gather(batch)?;
        if !rows.fits_one_call(batch, MAX_SCRIPT_ROWS) {
            return Ok(None);
        }
        let mut script = String::new();
        let mut expected_rows = 0u64;
        for (statement, rows) in rows.turn_statements(&INSERT_CHECKED_EVENTS) {
            for range in chunks(rows) {
                script.push_str(&statement.sql::<Sqlite>(range.len(), ""));
                script.push_str(";\n");
            }
            expected_rows += rows as u64;
        }

        let mut transaction = pool.begin().await?;
        let first = Self::take_cursors(&mut transaction, rows.events.len()).await?;
        let numbered: Vec<(i64, &PendingEvent<'_>)> = (first..).zip(&rows.events).collect();
        let query = Self::bind_turn(
            sqlx::query::<Sqlite>(sqlx::AssertSqlSafe(script)),
            &rows,
            &numbered,
        );
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
