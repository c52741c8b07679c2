//! The API key queries, written once for both backends.

use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

use super::{StoreError, StoredApiKey};

const SELECT_KEYS: &str = "SELECT key_id, namespace, role, label, secret_sha256, \
     created_at_ms, expires_at_ms, revoked_at_ms FROM api_keys ORDER BY key_id";

const INSERT_KEY: &str = "INSERT INTO api_keys (key_id, namespace, role, label, secret_sha256, \
     created_at_ms, expires_at_ms, revoked_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)";

// Revoking twice keeps the first time.
const REVOKE_KEY: &str = "UPDATE api_keys SET revoked_at_ms = COALESCE(revoked_at_ms, $2) \
     WHERE key_id = $1 RETURNING key_id";

/// Every key, revoked and expired ones included, by id (oldest first).
pub(super) async fn list_api_keys<DB>(pool: &Pool<DB>) -> Result<Vec<StoredApiKey>, StoreError>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> String: Decode<'q, DB> + Type<DB>,
    for<'q> i64: Decode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Decode<'q, DB> + Type<DB>,
{
    let rows = sqlx::query::<DB>(SELECT_KEYS).fetch_all(pool).await?;
    rows.iter()
        .map(|row| {
            Ok(StoredApiKey {
                key_id: row.try_get(0)?,
                namespace: row.try_get(1)?,
                role: row.try_get(2)?,
                label: row.try_get(3)?,
                secret_sha256: row.try_get(4)?,
                created_at_ms: row.try_get(5)?,
                expires_at_ms: row.try_get(6)?,
                revoked_at_ms: row.try_get(7)?,
            })
        })
        .collect()
}

pub(super) async fn insert_api_key<DB>(
    pool: &Pool<DB>,
    key: &StoredApiKey,
) -> Result<(), StoreError>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
{
    sqlx::query::<DB>(INSERT_KEY)
        .bind(key.key_id.clone())
        .bind(key.namespace.clone())
        .bind(key.role.clone())
        .bind(key.label.clone())
        .bind(key.secret_sha256.clone())
        .bind(key.created_at_ms)
        .bind(key.expires_at_ms)
        .execute(pool)
        .await?;
    Ok(())
}

/// Marks a key revoked; [`StoreError::NotFound`] when there is no such key.
pub(super) async fn revoke_api_key<DB>(
    pool: &Pool<DB>,
    key_id: &str,
    now_ms: i64,
) -> Result<(), StoreError>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    let revoked = sqlx::query::<DB>(REVOKE_KEY)
        .bind(key_id.to_owned())
        .bind(now_ms)
        .fetch_optional(pool)
        .await?;
    if revoked.is_none() {
        return Err(StoreError::NotFound(format!("API key {key_id:?}")));
    }
    Ok(())
}
