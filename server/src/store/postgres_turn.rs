//! Postgres's fast way to commit a small coordinator turn: all of its
//! writes in one statement of data-modifying `WITH` clauses.
//!
//! Each statement is a network round trip to the database, and a turn of a
//! dozen statements spent most of its time in them (the WAL flush itself
//! takes a fraction of a millisecond here). As one statement the turn
//! costs one round trip: it is its own transaction. Foreign keys are
//! checked at the end of the statement, so a delta may reference an attempt
//! inserted beside it.
//!
//! The statement counts the rows its parts touched and fails (dividing by
//! zero) unless the count is right; the checks ride on that count as in
//! `sqlite_turn`: every update must hit its row, and events are inserted
//! only when their run exists in their namespace and is of their workflow.
//! When the statement fails, nothing of it was written, and the turn is
//! committed again the checked way (`RunQueries::commit_changes`), which
//! names the culprit.

use sqlx::{PgPool, Postgres, Row};

use super::StoreError;
use super::batch_sql::{BatchRows, MultiRow, PendingEvent, chunks};
use super::run_queries::RunQueries;
use crate::engine::records::{EventRecord, RunChanges};

/// Turns of more rows than this go the checked way: the statement's text
/// depends on its row counts, and only small turns come in few enough
/// shapes to stay prepared.
const MAX_STATEMENT_ROWS: usize = 16;

/// Events numbered from the cursor block the statement takes itself
/// (`column1` is the event's offset in the block), inserted only for runs
/// that match.
const INSERT_CHECKED_EVENTS: MultiRow = MultiRow::new(
    "INSERT INTO events (cursor, namespace, run_id, workflow_name, sequence, event_type, \
     payload_json, created_at_ms) SELECT cursors.first + v.column1, v.column2, v.column3, \
     v.column4, v.column5, v.column6, v.column7, v.column8 FROM cursors CROSS JOIN (VALUES ",
    ") AS v JOIN runs ON runs.id = v.column3 AND runs.namespace = v.column2 \
     AND runs.workflow_name = v.column4",
    8,
);

impl RunQueries<Postgres> {
    /// Commits `batch` as one statement; `None` when it must be committed
    /// the checked way instead (nothing was written).
    pub(super) async fn commit_as_one_statement(
        pool: &PgPool,
        batch: &[RunChanges],
    ) -> Result<Option<Vec<EventRecord>>, StoreError> {
        let rows = BatchRows::gather(batch)?;
        if !rows.fits_one_call(batch, MAX_STATEMENT_ROWS) {
            return Ok(None);
        }
        // Conflicts are written by statements of their own, which needs a
        // transaction around them all; they are rare.
        if batch.iter().any(|changes| !changes.conflicts.is_empty()) {
            return Ok(None);
        }
        // $1 is the number of events, $2 the rows the parts must touch; the
        // rows' values follow.
        let mut parts = vec![
            "cursors AS (UPDATE event_sequencer SET next_cursor = next_cursor + $1 \
             WHERE id = 1 RETURNING next_cursor - $1 AS first)"
                .to_owned(),
        ];
        let mut next_parameter = 3;
        let mut expected_rows = 0i64;
        for (statement, rows) in rows.turn_statements(&INSERT_CHECKED_EVENTS) {
            for range in chunks(rows) {
                let sql =
                    statement.sql_from::<Postgres>(range.len(), " RETURNING 1", next_parameter);
                parts.push(format!("part{} AS ({sql})", parts.len()));
                next_parameter += statement.parameters(range.len());
            }
            expected_rows += rows as i64;
        }
        let counts: Vec<String> = (1..parts.len())
            .map(|part| format!("(SELECT count(*) FROM part{part})"))
            .collect();
        // A count that is off divides by zero, which aborts the statement,
        // and with it every part: it runs on its own, as its own transaction.
        let statement = format!(
            "WITH {} SELECT (SELECT first FROM cursors), \
             1 / (CASE WHEN {} = $2 THEN 1 ELSE 0 END)",
            parts.join(", "),
            counts.join(" + ")
        );

        let offsets: Vec<(i64, &PendingEvent<'_>)> = (0..).zip(&rows.events).collect();
        let query = Self::bind_turn(
            sqlx::query::<Postgres>(sqlx::AssertSqlSafe(statement))
                .bind(i64::try_from(rows.events.len()).unwrap_or(i64::MAX))
                .bind(expected_rows),
            &rows,
            &offsets,
        );
        let row = match query.fetch_one(pool).await {
            Ok(row) => row,
            Err(error) => {
                let error = StoreError::from(error);
                if error.is_transient() {
                    return Err(error);
                }
                // Division by zero (22012) is the count check; anything
                // else, a constraint say, the checked way will name.
                tracing::debug!(%error, "the turn's statement was refused; committing it the checked way");
                return Ok(None);
            }
        };
        let first: i64 = row.try_get(0)?;
        Ok(Some(PendingEvent::records(first, &rows.events)?))
    }
}
