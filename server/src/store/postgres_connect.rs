//! The first connection to Postgres, made alone before the pool, so that a
//! server that cannot reach its database says why within seconds (the
//! pool would retry silently for 30 s, then say only "pool timed out").

use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use super::StoreError;

/// How long the first connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens and closes one connection; the error names the database (never
/// the password) and the cause.
pub(super) async fn check_connection(options: &PgConnectOptions) -> Result<(), StoreError> {
    let database = options
        .get_database()
        .unwrap_or(options.get_username())
        .to_owned();
    let target = format!(
        "Postgres at {}:{} (database {database:?}, user {:?})",
        options.get_host(),
        options.get_port(),
        options.get_username()
    );
    let connected =
        tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(options)).await;
    let reason = match connected {
        Ok(Ok(connection)) => {
            // Closing politely may fail on a broken link; the pool opens its own.
            let _ = connection.close().await;
            return Ok(());
        }
        Err(_) => format!("no answer within {CONNECT_TIMEOUT:?}: is the host right and reachable?"),
        Ok(Err(error)) => describe(&error, options, &database),
    };
    Err(StoreError::Connect { target, reason })
}

/// The cause of a failed connection, in words that point at the fix.
fn describe(error: &sqlx::Error, options: &PgConnectOptions, database: &str) -> String {
    match error {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // invalid_catalog_name
            Some("3D000") => format!(
                "database {database:?} does not exist; create it first, e.g. \
                 `createdb -h {host} -p {port} -U {user} {database}`, or \
                 `CREATE DATABASE \"{database}\";` in psql",
                host = options.get_host(),
                port = options.get_port(),
                user = options.get_username(),
            ),
            // invalid_authorization_specification, invalid_password
            Some("28000" | "28P01") => {
                format!("Postgres refused the credentials: {}", db.message())
            }
            Some(code) => format!("{} (SQLSTATE {code})", db.message()),
            None => db.message().to_owned(),
        },
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "nothing is listening there (connection refused): is Postgres running, \
             and on that port?"
                .to_owned()
        }
        other => {
            let mut message = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(cause) = source {
                let text = cause.to_string();
                if !message.contains(&text) {
                    message.push_str(": ");
                    message.push_str(&text);
                }
                source = cause.source();
            }
            message
        }
    }
}
