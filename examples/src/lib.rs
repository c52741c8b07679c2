//! Runnable Tributary examples written with the Rust SDK (`tributary`):
//! tasks with `#[task]`, grouped with `workflow!`, served by a `Worker`,
//! started and followed with a `Client`.
//!
//! Each binary (`src/bin/`) parses its flags and calls its module here, so
//! the end-to-end tests in `tests/examples/` run the very code the binaries
//! run. [`runner`] is what they share: an embedded server or `--server URL`,
//! the worker, one run, and the printing of what happened; [`serving`] lets
//! a process serve only some tasks, or only serve them and start no run.

pub mod error_handling;
pub mod hello;
pub mod parallel_processing;
pub mod runner;
pub mod serving;
