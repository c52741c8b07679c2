//! The `tributary` binary: parses the command line and hands over to
//! [`tributary_server::cli`]. Exit code 0 on success, 1 on any error.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    tributary_server::cli::run().await
}
