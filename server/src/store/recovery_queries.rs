//! What recovery reads: every active run with everything under it, one
//! statement per table (not per run), so that a restart with thousands of
//! active runs is healthy in about a second; and one run, to end it after
//! its changes were refused.

use std::collections::HashMap;

use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

use super::StoreError;
use super::run_queries::{LIST_ACTIVE_RUNS, RunQueries};
use crate::engine::records::{RunDetail, RunRecord};

const MAX_EVENT_SEQUENCE: &str = "SELECT COALESCE(MAX(sequence), 0) FROM events WHERE run_id = $1";

// Each statement adds the run's id as its last column, so the row decoders
// stay those of GetRun.
const ACTIVE_TASKS: &str = "SELECT t.task_id, t.position, t.state, t.skip_reason, \
     t.attempts_started, t.failures, t.reassignments, t.current_attempt_id, \
     t.next_attempt_at_ms, t.error, t.updated_at_ms, t.map_index, t.map_size, t.run_id \
     FROM task_runs t JOIN runs r ON r.id = t.run_id \
     WHERE r.status IN ('pending', 'running') ORDER BY t.run_id, t.position, t.task_id";

const ACTIVE_ATTEMPTS: &str = "SELECT a.id, a.run_id, a.task_id, a.number, a.executor_id, \
     a.state, a.error, a.assigned_at_ms, a.deadline_at_ms, a.started_at_ms, a.finished_at_ms, \
     COALESCE(a.instance_id, '') \
     FROM attempts a JOIN runs r ON r.id = a.run_id \
     WHERE r.status IN ('pending', 'running') ORDER BY a.run_id, a.task_id, a.number";

const ACTIVE_DELTAS: &str = "SELECT d.task_id, d.attempt_id, d.set_json, d.removed_json, \
     d.run_id FROM context_deltas d JOIN runs r ON r.id = d.run_id \
     WHERE r.status IN ('pending', 'running') ORDER BY d.run_id, d.task_id";

const ACTIVE_MAP_OUTPUTS: &str = "SELECT m.task_id, '', m.set_json, '[]', m.run_id \
     FROM map_outputs m JOIN runs r ON r.id = m.run_id \
     WHERE r.status IN ('pending', 'running') ORDER BY m.run_id, m.task_id";

const ACTIVE_CONFLICTS: &str = "SELECT c.key, c.winning_task_id, c.overridden_task_id, \
     c.run_id FROM context_conflicts c JOIN runs r ON r.id = c.run_id \
     WHERE r.status IN ('pending', 'running') \
     ORDER BY c.run_id, c.key, c.winning_task_id, c.overridden_task_id";

const ACTIVE_MAX_SEQUENCES: &str = "SELECT e.run_id, MAX(e.sequence) \
     FROM events e JOIN runs r ON r.id = e.run_id \
     WHERE r.status IN ('pending', 'running') GROUP BY e.run_id";

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
    /// Every active run with everything under it, read with one statement
    /// per table inside one snapshot (`begin_snapshot`).
    pub(super) async fn load_active_runs(
        pool: &Pool<DB>,
        begin_snapshot: &'static str,
    ) -> Result<Vec<(RunDetail, u64)>, StoreError> {
        let mut transaction = pool.begin_with(begin_snapshot).await?;
        let runs: Vec<RunRecord> = sqlx::query::<DB>(LIST_ACTIVE_RUNS)
            .fetch_all(&mut *transaction)
            .await?
            .iter()
            .map(Self::run_from_row)
            .collect::<Result<_, _>>()?;
        let mut details: HashMap<String, (RunDetail, u64)> = runs
            .into_iter()
            .map(|run| {
                let detail = RunDetail {
                    run,
                    tasks: Vec::new(),
                    attempts: Vec::new(),
                    deltas: Vec::new(),
                    conflicts: Vec::new(),
                };
                (detail.run.id.clone(), (detail, 0))
            })
            .collect();
        for row in sqlx::query::<DB>(ACTIVE_TASKS)
            .fetch_all(&mut *transaction)
            .await?
        {
            let run_id: String = row.try_get(13)?;
            let task = Self::task_from_row(&row, &run_id)?;
            detail_of(&mut details, &run_id)?.tasks.push(task);
        }
        for row in sqlx::query::<DB>(ACTIVE_ATTEMPTS)
            .fetch_all(&mut *transaction)
            .await?
        {
            let attempt = Self::attempt_from_row(&row)?;
            detail_of(&mut details, &attempt.run_id.clone())?
                .attempts
                .push(attempt);
        }
        for row in sqlx::query::<DB>(ACTIVE_DELTAS)
            .fetch_all(&mut *transaction)
            .await?
        {
            let run_id: String = row.try_get(4)?;
            let delta = Self::delta_from_row(&row, &run_id)?;
            detail_of(&mut details, &run_id)?.deltas.push(delta);
        }
        for row in sqlx::query::<DB>(ACTIVE_MAP_OUTPUTS)
            .fetch_all(&mut *transaction)
            .await?
        {
            let run_id: String = row.try_get(4)?;
            let output = Self::delta_from_row(&row, &run_id)?;
            detail_of(&mut details, &run_id)?.deltas.push(output);
        }
        for row in sqlx::query::<DB>(ACTIVE_CONFLICTS)
            .fetch_all(&mut *transaction)
            .await?
        {
            let run_id: String = row.try_get(3)?;
            let conflict = Self::conflict_from_row(&row)?;
            detail_of(&mut details, &run_id)?.conflicts.push(conflict);
        }
        for row in sqlx::query::<DB>(ACTIVE_MAX_SEQUENCES)
            .fetch_all(&mut *transaction)
            .await?
        {
            let run_id: String = row.try_get(0)?;
            let last_sequence: i64 = row.try_get(1)?;
            let last_sequence = u64::try_from(last_sequence).map_err(|_| {
                StoreError::Corrupt(format!("run {run_id:?} has event sequence {last_sequence}"))
            })?;
            if let Some((_, sequence)) = details.get_mut(&run_id) {
                *sequence = last_sequence;
            }
        }
        transaction.commit().await?;
        let mut active: Vec<(RunDetail, u64)> = details.into_values().collect();
        active.sort_by(|(a, _), (b, _)| a.run.id.cmp(&b.run.id));
        Ok(active)
    }

    /// One run with everything under it and the highest event sequence it
    /// has used, as recovery reads it.
    pub(super) async fn load_run(
        pool: &Pool<DB>,
        begin_snapshot: &'static str,
        namespace: &str,
        run_id: &str,
    ) -> Result<(RunDetail, u64), StoreError> {
        let detail = Self::get_run(pool, begin_snapshot, namespace, run_id).await?;
        let mut connection = pool.acquire().await?;
        let last_sequence: i64 = sqlx::query::<DB>(MAX_EVENT_SEQUENCE)
            .bind(run_id)
            .fetch_one(&mut *connection)
            .await?
            .try_get(0)?;
        let last_sequence = u64::try_from(last_sequence).map_err(|_| {
            StoreError::Corrupt(format!("run {run_id:?} has event sequence {last_sequence}"))
        })?;
        Ok((detail, last_sequence))
    }
}

/// The detail of a run being recovered.
fn detail_of<'a>(
    details: &'a mut HashMap<String, (RunDetail, u64)>,
    run_id: &str,
) -> Result<&'a mut RunDetail, StoreError> {
    details
        .get_mut(run_id)
        .map(|(detail, _)| detail)
        .ok_or_else(|| StoreError::Corrupt(format!("rows of run {run_id:?} without its run row")))
}
