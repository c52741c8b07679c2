//! The `tributary` command line (server and client commands), built in this
//! package so that its tests can run it beside the example binaries as a
//! newcomer would: `CARGO_BIN_EXE_*` exists only for a package's own
//! binaries. The same `cli::run` as the `tributary` binary.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    tributary_server::cli::run().await
}
