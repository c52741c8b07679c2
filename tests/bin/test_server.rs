//! The `tributary` command line, built inside the test crate so that the
//! crash tests can run the server as a separate process they can SIGKILL
//! (`CARGO_BIN_EXE_*` is only available for the crate's own binaries).

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    tributary_server::cli::run().await
}
