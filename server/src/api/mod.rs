//! The gRPC edge: tonic services that convert wire messages into domain
//! types, call the domain, and convert back. Handlers stay thin; errors are
//! mapped to `tonic::Status` in one place ([`error`]).

pub mod call_limits;
pub mod convert;
pub mod error;
pub mod executor;
pub mod executor_input;
pub mod executor_watch;
pub mod instances;
pub mod namespace;
pub mod run;
pub mod schedule;
pub mod text;
pub mod wire_status;
pub mod workflow;

pub use error::ApiError;
