//! Direct, read-only queries against a test database, for facts the API
//! does not expose (such as how many deltas a run stored).

use sqlx::Row;

pub enum Probe {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Probe {
    pub async fn connect(url: &str) -> Probe {
        if url.starts_with("postgres") {
            Probe::Postgres(sqlx::PgPool::connect(url).await.expect("connects"))
        } else {
            Probe::Sqlite(sqlx::SqlitePool::connect(url).await.expect("connects"))
        }
    }

    /// Runs a `SELECT COUNT(*) ... WHERE x = $1` query.
    pub async fn count(&self, sql: &'static str, parameter: &str) -> i64 {
        match self {
            Probe::Sqlite(pool) => sqlx::query(sql)
                .bind(parameter)
                .fetch_one(pool)
                .await
                .expect("query")
                .get(0),
            Probe::Postgres(pool) => sqlx::query(sql)
                .bind(parameter)
                .fetch_one(pool)
                .await
                .expect("query")
                .get(0),
        }
    }
}
