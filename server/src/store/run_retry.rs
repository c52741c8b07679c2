//! Writing a retry (`RetryRun`): the run row reopened, the reset tasks'
//! deltas and conflicts deleted, and the engine's rows, in one transaction.
//! Retries are rare, so this is a checked path of its own rather than part
//! of a turn's batch.

use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Type};

use super::StoreError;
use super::run_queries::RunQueries;
use crate::engine::records::{EventRecord, RunRetry, RunStatus};

/// Reopens the run only if it is still as the retry read it: the same
/// terminal status and retry count. Otherwise another retry won the race,
/// or the retention job deleted the run, and nothing is written.
const REOPEN_RUN: &str = "UPDATE runs SET status = $1, finished_at_ms = NULL, \
     final_context_json = NULL, retry_count = $2, retry_request_id = $3 \
     WHERE id = $4 AND namespace = $5 AND status = $6 AND retry_count = $7 RETURNING id";

const DELETE_DELTA: &str =
    "DELETE FROM context_deltas WHERE run_id = $1 AND namespace = $2 AND task_id = $3";

// A reset mapped task that had succeeded over an empty array (the only
// kind a retry may reset: expanded ones are refused) loses its output too.
const DELETE_MAP_OUTPUT: &str =
    "DELETE FROM map_outputs WHERE run_id = $1 AND namespace = $2 AND task_id = $3";

// The instances of a reset mapped task: every row stored under
// `<task id>[<index>]`, children first. (LIKE would read `_` in the id as a
// wildcard, hence the prefix comparison.)
const INSTANCE_ROWS: &str = "SELECT task_id FROM task_runs WHERE run_id = $1 AND namespace = $2 \
     AND map_index IS NOT NULL AND substr(task_id, 1, length($3) + 1) = $3 || '['";

const DELETE_CONFLICTS: &str = "DELETE FROM context_conflicts WHERE run_id = $1 \
     AND namespace = $2 AND (winning_task_id = $3 OR overridden_task_id = $3)";

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
    /// Commits a retry; [`StoreError::NotFound`] when the run is gone or no
    /// longer as it was read.
    pub(super) async fn retry_run(
        pool: &Pool<DB>,
        retry: &RunRetry,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let changes = &retry.changes;
        let mut transaction = pool.begin().await?;
        let reopened = sqlx::query::<DB>(REOPEN_RUN)
            .bind(RunStatus::Running.as_str())
            .bind(i64::from(retry.retry_count))
            .bind(retry.request_id.as_deref())
            .bind(changes.run_id.as_str())
            .bind(changes.namespace.as_str())
            .bind(retry.expected_status.as_str())
            .bind(i64::from(retry.expected_retry_count))
            .fetch_optional(&mut *transaction)
            .await?;
        if reopened.is_none() {
            transaction.rollback().await?;
            return Err(StoreError::NotFound(format!(
                "run {:?} as it was read (it was retried or deleted meanwhile)",
                changes.run_id
            )));
        }
        for task_id in &retry.reset_task_ids {
            for statement in [DELETE_DELTA, DELETE_MAP_OUTPUT, DELETE_CONFLICTS] {
                sqlx::query::<DB>(statement)
                    .bind(changes.run_id.as_str())
                    .bind(changes.namespace.as_str())
                    .bind(task_id.as_str())
                    .execute(&mut *transaction)
                    .await?;
            }
        }
        for task_id in &retry.dropped_map_task_ids {
            for table in ["context_deltas", "attempts", "task_runs"] {
                let statement = format!(
                    "DELETE FROM {table} WHERE run_id = $1 AND namespace = $2 \
                     AND task_id IN ({INSTANCE_ROWS})"
                );
                sqlx::query::<DB>(sqlx::AssertSqlSafe(statement))
                    .bind(changes.run_id.as_str())
                    .bind(changes.namespace.as_str())
                    .bind(task_id.as_str())
                    .execute(&mut *transaction)
                    .await?;
            }
        }
        let events = Self::write_changes(&mut *transaction, std::slice::from_ref(changes)).await?;
        transaction.commit().await?;
        Ok(events)
    }
}
