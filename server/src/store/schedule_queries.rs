//! The schedule queries, written once for both backends.

use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

use super::StoreError;
use crate::engine::schedule::{CatchUpKind, CatchUpPolicy, OverlapPolicy, catch_up_policy};

/// A schedule as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSchedule {
    pub namespace: String,
    pub schedule_id: String,
    pub workflow_name: String,
    /// Empty for the latest version at each fire.
    pub workflow_version: String,
    pub cron: String,
    pub time_zone: String,
    pub input_context_json: String,
    pub overlap: OverlapPolicy,
    pub catch_up: CatchUpPolicy,
    pub paused: bool,
    pub created_at_ms: i64,
    pub progress: ScheduleProgress,
}

/// What the scheduler has done with a schedule; only it writes these (but
/// pausing drops the queued fire and resuming moves the cursor).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScheduleProgress {
    /// The latest fire time dealt with.
    pub cursor_ms: i64,
    pub queued_fire_ms: Option<i64>,
    pub last_fire_ms: Option<i64>,
    pub last_run_id: Option<String>,
    pub last_error: Option<String>,
}

const COLUMNS: &str = "namespace, schedule_id, workflow_name, workflow_version, cron, \
     time_zone, input_context_json, overlap_policy, catch_up_policy, max_catch_up, paused, \
     created_at_ms, cursor_ms, queued_fire_ms, last_fire_ms, last_run_id, last_error";

const INSERT: &str = "INSERT INTO schedules (namespace, schedule_id, workflow_name, \
     workflow_version, cron, time_zone, input_context_json, overlap_policy, catch_up_policy, \
     max_catch_up, paused, created_at_ms, cursor_ms, queued_fire_ms, last_fire_ms, last_run_id, \
     last_error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, NULL, NULL, \
     NULL, NULL) ON CONFLICT (namespace, schedule_id) DO NOTHING RETURNING schedule_id";

// Pausing drops the queued fire: it would otherwise start on resume, for a
// time the pause was meant to skip.
const PAUSE: &str = "UPDATE schedules SET paused = TRUE, queued_fire_ms = NULL \
     WHERE namespace = $1 AND schedule_id = $2";

// The paused period is not caught up: the cursor moves to the resumption.
const RESUME: &str = "UPDATE schedules SET paused = FALSE, \
     cursor_ms = CASE WHEN cursor_ms < $3 THEN $3 ELSE cursor_ms END \
     WHERE namespace = $1 AND schedule_id = $2 AND paused = TRUE";

// Only the schedule the scheduler read, and only while it is not paused: a
// schedule deleted and created again, or paused meanwhile, keeps its own.
const RECORD_PROGRESS: &str = "UPDATE schedules SET cursor_ms = $4, queued_fire_ms = $5, \
     last_fire_ms = $6, last_run_id = $7, last_error = $8 \
     WHERE namespace = $1 AND schedule_id = $2 AND created_at_ms = $3 AND paused = FALSE";

const DELETE: &str =
    "DELETE FROM schedules WHERE namespace = $1 AND schedule_id = $2 RETURNING schedule_id";

fn select_one() -> String {
    format!("SELECT {COLUMNS} FROM schedules WHERE namespace = $1 AND schedule_id = $2")
}

fn select_page() -> String {
    format!(
        "SELECT {COLUMNS} FROM schedules WHERE namespace = $1 AND schedule_id > $2 \
         ORDER BY schedule_id LIMIT $3"
    )
}

fn select_unpaused() -> String {
    format!("SELECT {COLUMNS} FROM schedules WHERE paused = FALSE ORDER BY namespace, schedule_id")
}

fn overlap_text(overlap: OverlapPolicy) -> &'static str {
    match overlap {
        OverlapPolicy::Skip => "skip",
        OverlapPolicy::Queue => "queue",
        OverlapPolicy::Allow => "allow",
    }
}

fn catch_up_text(catch_up: CatchUpPolicy) -> &'static str {
    match catch_up.kind() {
        CatchUpKind::None => "none",
        CatchUpKind::Last => "last",
        CatchUpKind::All => "all",
    }
}

fn from_row<R>(row: &R) -> Result<StoredSchedule, StoreError>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'q> String: Decode<'q, R::Database> + Type<R::Database>,
    for<'q> Option<String>: Decode<'q, R::Database> + Type<R::Database>,
    for<'q> i64: Decode<'q, R::Database> + Type<R::Database>,
    for<'q> Option<i64>: Decode<'q, R::Database> + Type<R::Database>,
    for<'q> bool: Decode<'q, R::Database> + Type<R::Database>,
{
    let schedule_id: String = row.try_get(1)?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("{what} of schedule {schedule_id:?}"));
    let overlap: String = row.try_get(7)?;
    let overlap = match overlap.as_str() {
        "skip" => OverlapPolicy::Skip,
        "queue" => OverlapPolicy::Queue,
        "allow" => OverlapPolicy::Allow,
        _ => return Err(corrupt("overlap policy")),
    };
    let kind: String = row.try_get(8)?;
    let kind = match kind.as_str() {
        "none" => CatchUpKind::None,
        "last" => CatchUpKind::Last,
        "all" => CatchUpKind::All,
        _ => return Err(corrupt("catch-up policy")),
    };
    let max_catch_up: i64 = row.try_get(9)?;
    let catch_up = u32::try_from(max_catch_up)
        .ok()
        .and_then(|max| catch_up_policy(kind, max).ok())
        .ok_or_else(|| corrupt("max_catch_up"))?;
    Ok(StoredSchedule {
        namespace: row.try_get(0)?,
        workflow_name: row.try_get(2)?,
        workflow_version: row.try_get(3)?,
        cron: row.try_get(4)?,
        time_zone: row.try_get(5)?,
        input_context_json: row.try_get(6)?,
        overlap,
        catch_up,
        paused: row.try_get(10)?,
        created_at_ms: row.try_get(11)?,
        progress: ScheduleProgress {
            cursor_ms: row.try_get(12)?,
            queued_fire_ms: row.try_get(13)?,
            last_fire_ms: row.try_get(14)?,
            last_run_id: row.try_get(15)?,
            last_error: row.try_get(16)?,
        },
        schedule_id,
    })
}

/// Stores a new schedule; false when the namespace has one with its id.
pub(super) async fn insert_schedule<DB>(
    pool: &Pool<DB>,
    schedule: &StoredSchedule,
) -> Result<bool, StoreError>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Type<DB>,
{
    let inserted = sqlx::query::<DB>(INSERT)
        .bind(schedule.namespace.clone())
        .bind(schedule.schedule_id.clone())
        .bind(schedule.workflow_name.clone())
        .bind(schedule.workflow_version.clone())
        .bind(schedule.cron.clone())
        .bind(schedule.time_zone.clone())
        .bind(schedule.input_context_json.clone())
        .bind(overlap_text(schedule.overlap).to_owned())
        .bind(catch_up_text(schedule.catch_up).to_owned())
        .bind(i64::from(schedule.catch_up.max_catch_up()))
        .bind(schedule.paused)
        .bind(schedule.created_at_ms)
        .bind(schedule.progress.cursor_ms)
        .fetch_optional(pool)
        .await?;
    Ok(inserted.is_some())
}

/// One schedule; [`StoreError::NotFound`] names it when it is missing.
pub(super) async fn get_schedule<DB>(
    pool: &Pool<DB>,
    namespace: &str,
    schedule_id: &str,
) -> Result<StoredSchedule, StoreError>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Decode<'q, DB> + Type<DB>,
    for<'q> i64: Decode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Decode<'q, DB> + Type<DB>,
    for<'q> bool: Decode<'q, DB> + Type<DB>,
{
    let sql = select_one();
    let row = sqlx::query::<DB>(sqlx::AssertSqlSafe(sql))
        .bind(namespace.to_owned())
        .bind(schedule_id.to_owned())
        .fetch_optional(pool)
        .await?;
    match row {
        Some(row) => from_row(&row),
        None => Err(StoreError::NotFound(format!(
            "schedule {}",
            tributary_core::shown(schedule_id)
        ))),
    }
}

/// The schedules of a namespace whose ids sort after `after_id`, by id.
pub(super) async fn list_schedules<DB>(
    pool: &Pool<DB>,
    namespace: &str,
    after_id: &str,
    limit: u32,
) -> Result<Vec<StoredSchedule>, StoreError>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Decode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Decode<'q, DB> + Type<DB>,
    for<'q> bool: Decode<'q, DB> + Type<DB>,
{
    let sql = select_page();
    let rows = sqlx::query::<DB>(sqlx::AssertSqlSafe(sql))
        .bind(namespace.to_owned())
        .bind(after_id.to_owned())
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?;
    rows.iter().map(from_row).collect()
}

/// Every schedule that is not paused, in every namespace.
pub(super) async fn list_unpaused_schedules<DB>(
    pool: &Pool<DB>,
) -> Result<Vec<StoredSchedule>, StoreError>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> String: Decode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Decode<'q, DB> + Type<DB>,
    for<'q> i64: Decode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Decode<'q, DB> + Type<DB>,
    for<'q> bool: Decode<'q, DB> + Type<DB>,
{
    let sql = select_unpaused();
    let rows = sqlx::query::<DB>(sqlx::AssertSqlSafe(sql))
        .fetch_all(pool)
        .await?;
    rows.iter().map(from_row).collect()
}

/// Pauses (`resume_at_ms` unset) or resumes a schedule.
pub(super) async fn set_schedule_paused<DB>(
    pool: &Pool<DB>,
    namespace: &str,
    schedule_id: &str,
    resume_at_ms: Option<i64>,
) -> Result<(), StoreError>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    let query = match resume_at_ms {
        None => sqlx::query::<DB>(PAUSE)
            .bind(namespace.to_owned())
            .bind(schedule_id.to_owned()),
        Some(now_ms) => sqlx::query::<DB>(RESUME)
            .bind(namespace.to_owned())
            .bind(schedule_id.to_owned())
            .bind(now_ms),
    };
    query.execute(pool).await?;
    Ok(())
}

/// Records the scheduler's progress on the schedule it read.
pub(super) async fn record_schedule_progress<DB>(
    pool: &Pool<DB>,
    schedule: &StoredSchedule,
    progress: &ScheduleProgress,
) -> Result<(), StoreError>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
{
    sqlx::query::<DB>(RECORD_PROGRESS)
        .bind(schedule.namespace.clone())
        .bind(schedule.schedule_id.clone())
        .bind(schedule.created_at_ms)
        .bind(progress.cursor_ms)
        .bind(progress.queued_fire_ms)
        .bind(progress.last_fire_ms)
        .bind(progress.last_run_id.clone())
        .bind(progress.last_error.clone())
        .execute(pool)
        .await?;
    Ok(())
}

/// Deletes a schedule; [`StoreError::NotFound`] when there is none.
pub(super) async fn delete_schedule<DB>(
    pool: &Pool<DB>,
    namespace: &str,
    schedule_id: &str,
) -> Result<(), StoreError>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
{
    let deleted = sqlx::query::<DB>(DELETE)
        .bind(namespace.to_owned())
        .bind(schedule_id.to_owned())
        .fetch_optional(pool)
        .await?;
    if deleted.is_none() {
        return Err(StoreError::NotFound(format!(
            "schedule {}",
            tributary_core::shown(schedule_id)
        )));
    }
    Ok(())
}
