//! End-to-end tests of the examples against a real server on a fresh
//! SQLite file: in-process through the functions the binaries call, and by
//! running the binaries themselves (alone, or several against one server).

mod binaries;
mod error_handling;
mod hello;
mod newcomer;
mod parallel_processing;
mod split_workers;

use std::time::Duration;

/// A safety net for waits: a broken build fails instead of hanging. Never an
/// assertion about speed.
pub const LIMIT: Duration = Duration::from_secs(120);

/// Awaits `future`, failing the test if it has not completed within
/// [`LIMIT`].
pub async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(LIMIT, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what} did not happen within {LIMIT:?}"),
    }
}
