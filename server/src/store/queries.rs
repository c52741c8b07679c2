//! The workflow queries, written once for both backends: the statements use
//! the dialect both accept (`$N` placeholders work in SQLite too), and the
//! functions are generic over the sqlx database. A backend supplies only what
//! differs, such as how a row is locked.

use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};
use tributary_core::WorkflowSpec;

use super::{Registration, StoreError, StoredWorkflow, VersionSelector, describe_selector};

pub(super) const GET_LATEST: &str = "SELECT v.version, v.sequence, v.definition_json, v.created_at_ms, \
     (w.latest_version = v.version) AS latest \
     FROM workflow_versions v JOIN workflows w \
     ON w.namespace = v.namespace AND w.name = v.name AND w.latest_version = v.version \
     WHERE w.namespace = $1 AND w.name = $2";

pub(super) const GET_BY_VERSION: &str = "SELECT v.version, v.sequence, v.definition_json, v.created_at_ms, \
     (w.latest_version = v.version) AS latest \
     FROM workflow_versions v JOIN workflows w \
     ON w.namespace = v.namespace AND w.name = v.name \
     WHERE v.namespace = $1 AND v.name = $2 AND v.version = $3";

pub(super) const GET_BY_SEQUENCE: &str = "SELECT v.version, v.sequence, v.definition_json, v.created_at_ms, \
     (w.latest_version = v.version) AS latest \
     FROM workflow_versions v JOIN workflows w \
     ON w.namespace = v.namespace AND w.name = v.name \
     WHERE v.namespace = $1 AND v.name = $2 AND v.sequence = $3";

pub(super) const LIST_LATEST: &str = "SELECT v.version, v.sequence, v.definition_json, v.created_at_ms, \
     (w.latest_version = v.version) AS latest \
     FROM workflow_versions v JOIN workflows w \
     ON w.namespace = v.namespace AND w.name = v.name AND w.latest_version = v.version \
     WHERE w.namespace = $1 AND w.name > $2 \
     ORDER BY w.name LIMIT $3";

pub(super) const INSERT_WORKFLOW_IF_MISSING: &str = "INSERT INTO workflows \
     (namespace, name, latest_version, next_sequence, created_at_ms, updated_at_ms) \
     VALUES ($1, $2, $3, 1, $4, $4) ON CONFLICT (namespace, name) DO NOTHING";

pub(super) const FIND_VERSION: &str =
    "SELECT sequence FROM workflow_versions WHERE namespace = $1 AND name = $2 AND version = $3";

pub(super) const INSERT_VERSION: &str = "INSERT INTO workflow_versions \
     (namespace, name, version, sequence, definition_json, created_at_ms) \
     VALUES ($1, $2, $3, $4, $5, $6)";

pub(super) const ADVANCE_WORKFLOW: &str = "UPDATE workflows SET latest_version = $3, \
     next_sequence = next_sequence + $4, updated_at_ms = $5 \
     WHERE namespace = $1 AND name = $2";

/// Decodes a row selected with the workflow columns above.
fn workflow_from_row<R>(row: &R) -> Result<StoredWorkflow, StoreError>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
{
    let version: String = row.try_get(0)?;
    let sequence: i64 = row.try_get(1)?;
    let definition_json: String = row.try_get(2)?;
    let created_at_ms: i64 = row.try_get(3)?;
    let latest: bool = row.try_get(4)?;
    let spec = WorkflowSpec::from_canonical_json(&definition_json).map_err(|error| {
        StoreError::Corrupt(format!("definition of version {version:?}: {error}"))
    })?;
    let sequence = u64::try_from(sequence).map_err(|_| {
        StoreError::Corrupt(format!(
            "negative sequence {sequence} of version {version:?}"
        ))
    })?;
    Ok(StoredWorkflow {
        spec,
        version,
        sequence,
        created_at_ms,
        latest,
    })
}

/// Converts a sequence number for binding; sequences beyond `i64::MAX`
/// cannot exist, so such a request simply finds nothing.
pub(super) fn sequence_param(sequence: u64) -> i64 {
    i64::try_from(sequence).unwrap_or(i64::MAX)
}

/// Registers a workflow version. `lock_workflow_sql` must select the
/// workflow's row (by `$1` namespace, `$2` name) and lock it against
/// concurrent registrations where the database needs that (Postgres:
/// `FOR UPDATE`; SQLite has a single writer connection).
pub(super) async fn register_workflow<DB>(
    pool: &Pool<DB>,
    lock_workflow_sql: &'static str,
    namespace: &str,
    spec: &WorkflowSpec,
    now_ms: i64,
) -> Result<Registration, StoreError>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> bool: Decode<'q, DB> + Type<DB>,
{
    let version = spec.version();
    let mut transaction = pool.begin().await?;
    sqlx::query::<DB>(INSERT_WORKFLOW_IF_MISSING)
        .bind(namespace)
        .bind(spec.name.as_str())
        .bind(version.as_str())
        .bind(now_ms)
        .execute(&mut *transaction)
        .await?;
    let next_sequence: i64 = sqlx::query::<DB>(lock_workflow_sql)
        .bind(namespace)
        .bind(spec.name.as_str())
        .fetch_one(&mut *transaction)
        .await?
        .try_get(0)?;
    let existing = sqlx::query::<DB>(FIND_VERSION)
        .bind(namespace)
        .bind(spec.name.as_str())
        .bind(version.as_str())
        .fetch_optional(&mut *transaction)
        .await?;
    let created = existing.is_none();
    if created {
        sqlx::query::<DB>(INSERT_VERSION)
            .bind(namespace)
            .bind(spec.name.as_str())
            .bind(version.as_str())
            .bind(next_sequence)
            .bind(spec.canonical_json())
            .bind(now_ms)
            .execute(&mut *transaction)
            .await?;
    }
    sqlx::query::<DB>(ADVANCE_WORKFLOW)
        .bind(namespace)
        .bind(spec.name.as_str())
        .bind(version.as_str())
        .bind(i64::from(created))
        .bind(now_ms)
        .execute(&mut *transaction)
        .await?;
    let row = sqlx::query::<DB>(GET_LATEST)
        .bind(namespace)
        .bind(spec.name.as_str())
        .fetch_one(&mut *transaction)
        .await?;
    let workflow = workflow_from_row(&row)?;
    transaction.commit().await?;
    Ok(Registration { workflow, created })
}

pub(super) async fn get_workflow<DB>(
    pool: &Pool<DB>,
    namespace: &str,
    name: &str,
    selector: &VersionSelector,
) -> Result<StoredWorkflow, StoreError>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> bool: Decode<'q, DB> + Type<DB>,
{
    let query = match selector {
        VersionSelector::Latest => sqlx::query::<DB>(GET_LATEST).bind(namespace).bind(name),
        VersionSelector::Version(version) => sqlx::query::<DB>(GET_BY_VERSION)
            .bind(namespace)
            .bind(name)
            .bind(version.as_str()),
        VersionSelector::Sequence(sequence) => sqlx::query::<DB>(GET_BY_SEQUENCE)
            .bind(namespace)
            .bind(name)
            .bind(sequence_param(*sequence)),
    };
    match query.fetch_optional(pool).await? {
        Some(row) => workflow_from_row(&row),
        None => Err(StoreError::NotFound(describe_selector(name, selector))),
    }
}

pub(super) async fn list_workflows<DB>(
    pool: &Pool<DB>,
    namespace: &str,
    after_name: Option<&str>,
    limit: u32,
) -> Result<Vec<StoredWorkflow>, StoreError>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> bool: Decode<'q, DB> + Type<DB>,
{
    let rows = sqlx::query::<DB>(LIST_LATEST)
        .bind(namespace)
        .bind(after_name.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?;
    rows.iter().map(workflow_from_row).collect()
}
