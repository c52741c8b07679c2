//! A fresh database per scenario, so one scenario's rows never weigh on the
//! next: a SQLite file in a temporary directory, or a new database in the
//! given Postgres cluster (dropped afterwards).

use sqlx::{Connection, PgConnection};

use crate::BenchError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseKind {
    Sqlite,
    Postgres,
}

pub enum BenchDatabase {
    Sqlite {
        url: String,
        _directory: tempfile::TempDir,
    },
    Postgres {
        url: String,
        admin_url: String,
        name: String,
    },
}

impl BenchDatabase {
    pub async fn create(
        kind: DatabaseKind,
        postgres_url: Option<&str>,
    ) -> Result<BenchDatabase, BenchError> {
        match kind {
            DatabaseKind::Sqlite => {
                let directory = tempfile::tempdir().map_err(BenchError::Spawn)?;
                let path = directory.path().join("bench.db");
                Ok(BenchDatabase::Sqlite {
                    url: format!("sqlite://{}", path.display()),
                    _directory: directory,
                })
            }
            DatabaseKind::Postgres => {
                let admin_url = postgres_url.ok_or(BenchError::NoPostgresUrl)?;
                let name = format!("tributary_bench_{}", uuid::Uuid::now_v7().simple());
                let mut admin = PgConnection::connect(admin_url).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut admin)
                    .await?;
                let _ = admin.close().await;
                let base = admin_url
                    .split('?')
                    .next()
                    .and_then(|url| url.rsplit_once('/'))
                    .map_or(admin_url, |(base, _)| base);
                Ok(BenchDatabase::Postgres {
                    url: format!("{base}/{name}"),
                    admin_url: admin_url.to_owned(),
                    name,
                })
            }
        }
    }

    pub fn url(&self) -> &str {
        match self {
            BenchDatabase::Sqlite { url, .. } | BenchDatabase::Postgres { url, .. } => url,
        }
    }

    /// The durability settings the numbers were taken with.
    pub async fn durability(&self) -> Result<String, BenchError> {
        match self {
            // The server opens SQLite in WAL mode with synchronous=NORMAL
            // (store/sqlite.rs): a commit survives a crash of the process,
            // and the last commits may be lost on power loss.
            BenchDatabase::Sqlite { .. } => Ok("journal_mode=WAL, synchronous=NORMAL".into()),
            BenchDatabase::Postgres { url, .. } => {
                let mut connection = PgConnection::connect(url).await?;
                let mut settings = Vec::new();
                for setting in ["fsync", "synchronous_commit", "wal_sync_method"] {
                    let value: String =
                        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SHOW {setting}")))
                            .fetch_one(&mut connection)
                            .await?;
                    settings.push(format!("{setting}={value}"));
                }
                let _ = connection.close().await;
                Ok(settings.join(", "))
            }
        }
    }

    /// Bytes of every stored result's `set_json`.
    pub async fn result_bytes(&self) -> Result<u64, BenchError> {
        let bytes: i64 = match self {
            BenchDatabase::Sqlite { url, .. } => {
                let mut connection = sqlx::SqliteConnection::connect(url).await?;
                let bytes = sqlx::query_scalar(
                    "SELECT COALESCE(SUM(LENGTH(CAST(set_json AS BLOB))), 0) FROM context_deltas",
                )
                .fetch_one(&mut connection)
                .await?;
                let _ = connection.close().await;
                bytes
            }
            BenchDatabase::Postgres { url, .. } => {
                let mut connection = PgConnection::connect(url).await?;
                let bytes = sqlx::query_scalar(
                    "SELECT COALESCE(SUM(octet_length(set_json)), 0)::BIGINT FROM context_deltas",
                )
                .fetch_one(&mut connection)
                .await?;
                let _ = connection.close().await;
                bytes
            }
        };
        Ok(u64::try_from(bytes).unwrap_or(0))
    }

    pub async fn drop_database(self) {
        if let BenchDatabase::Postgres {
            admin_url, name, ..
        } = self
            && let Ok(mut admin) = PgConnection::connect(&admin_url).await
        {
            let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            if let Err(error) = sqlx::query(sqlx::AssertSqlSafe(drop))
                .execute(&mut admin)
                .await
            {
                tracing::warn!(%error, database = %name, "cannot drop the bench database");
            }
            let _ = admin.close().await;
        }
    }
}
