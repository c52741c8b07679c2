//! The API's error type and its one mapping to gRPC status codes.
//!
//! Internal causes (database errors, corrupt rows) are logged here and reach
//! clients only as a generic message, so SQL never leaks and every handler
//! reports failures the same way.

use tonic::{Code, Status};
use tributary_core::DefinitionError;

use super::text::truncate_at_char;
use crate::auth::KeyRingError;
use crate::dispatch::DispatchError;
use crate::engine::run::RetryError;
use crate::events::WatchError;
use crate::store::StoreError;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("{0}")]
    OutOfRange(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error(transparent)]
    Definition(#[from] DefinitionError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Dispatch(#[from] DispatchError),
    #[error(transparent)]
    Watch(#[from] WatchError),
}

/// The closed set of outcomes clients can act on. Add variants thoughtfully:
/// each one is a promise to every SDK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidArgument,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    ResourceExhausted,
    Unimplemented,
    OutOfRange,
    Unauthenticated,
    PermissionDenied,
    Unavailable,
    Internal,
}

impl ApiError {
    pub fn error_code(&self) -> ErrorCode {
        match self {
            ApiError::InvalidArgument(_)
            | ApiError::Definition(_)
            | ApiError::Dispatch(DispatchError::Context(_))
            | ApiError::Dispatch(DispatchError::ConcurrencyKey(_))
            | ApiError::Dispatch(DispatchError::Retry(RetryError::UnknownTask { .. })) => {
                ErrorCode::InvalidArgument
            }
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::AlreadyExists(_)
            | ApiError::Dispatch(DispatchError::IdempotencyKeyReused { .. }) => {
                ErrorCode::AlreadyExists
            }
            ApiError::FailedPrecondition(_)
            | ApiError::Dispatch(DispatchError::Retry(_))
            | ApiError::Dispatch(DispatchError::RetryNeverStarted { .. })
            | ApiError::Dispatch(DispatchError::RetryKeyFull { .. }) => {
                ErrorCode::FailedPrecondition
            }
            ApiError::ResourceExhausted(_)
            | ApiError::Dispatch(DispatchError::QuotaExceeded(_)) => ErrorCode::ResourceExhausted,
            ApiError::Unimplemented(_) => ErrorCode::Unimplemented,
            ApiError::OutOfRange(_) | ApiError::Watch(WatchError::CursorBeyondEnd { .. }) => {
                ErrorCode::OutOfRange
            }
            ApiError::Unauthenticated(_) => ErrorCode::Unauthenticated,
            ApiError::PermissionDenied(_) => ErrorCode::PermissionDenied,
            ApiError::Dispatch(DispatchError::Stopped)
            | ApiError::Watch(WatchError::ShuttingDown) => ErrorCode::Unavailable,
            ApiError::Store(error)
            | ApiError::Dispatch(DispatchError::Store(error))
            | ApiError::Watch(WatchError::Store(error)) => store_error_code(error),
        }
    }
}

fn store_error_code(error: &StoreError) -> ErrorCode {
    match error {
        StoreError::NotFound(_) => ErrorCode::NotFound,
        StoreError::Database(sqlx::Error::PoolTimedOut)
        | StoreError::Database(sqlx::Error::PoolClosed)
        | StoreError::Database(sqlx::Error::Io(_)) => ErrorCode::Unavailable,
        _ => ErrorCode::Internal,
    }
}

impl From<ErrorCode> for Code {
    fn from(code: ErrorCode) -> Code {
        match code {
            ErrorCode::InvalidArgument => Code::InvalidArgument,
            ErrorCode::NotFound => Code::NotFound,
            ErrorCode::AlreadyExists => Code::AlreadyExists,
            ErrorCode::FailedPrecondition => Code::FailedPrecondition,
            ErrorCode::ResourceExhausted => Code::ResourceExhausted,
            ErrorCode::Unimplemented => Code::Unimplemented,
            ErrorCode::OutOfRange => Code::OutOfRange,
            ErrorCode::Unauthenticated => Code::Unauthenticated,
            ErrorCode::PermissionDenied => Code::PermissionDenied,
            ErrorCode::Unavailable => Code::Unavailable,
            ErrorCode::Internal => Code::Internal,
        }
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Status {
        let code = error.error_code();
        match code {
            ErrorCode::Internal | ErrorCode::Unavailable => {
                tracing::error!(error = %error, "request failed");
                let message = if code == ErrorCode::Unavailable {
                    "the server is unavailable (database or shutdown); retry later"
                } else {
                    "an internal error occurred; see the server log"
                };
                Status::new(code.into(), message)
            }
            _ => Status::new(code.into(), bounded_message(error.to_string())),
        }
    }
}

impl From<KeyRingError> for ApiError {
    fn from(error: KeyRingError) -> ApiError {
        match error {
            KeyRingError::Unauthenticated(message) => ApiError::Unauthenticated(message),
            KeyRingError::PermissionDenied(message) => ApiError::PermissionDenied(message),
            KeyRingError::InvalidArgument(message) => ApiError::InvalidArgument(message),
            KeyRingError::NotFound(key_id) => {
                ApiError::NotFound(format!("API key {key_id:?} not found"))
            }
            KeyRingError::Random(message) => {
                ApiError::Store(StoreError::Corrupt(format!("no randomness: {message}")))
            }
            KeyRingError::Store(error) => ApiError::Store(error),
        }
    }
}

/// Longest status message sent. A message travels in an HTTP/2 header,
/// which clients refuse past a few kilobytes (the call then fails with a
/// protocol error instead of its status); every message that names input
/// already shows only a part of it, and this cut guards the rest.
pub const MAX_STATUS_MESSAGE_BYTES: usize = 2048;

/// `message`, cut at [`MAX_STATUS_MESSAGE_BYTES`] with its full size stated.
pub fn bounded_message(message: String) -> String {
    if message.len() <= MAX_STATUS_MESSAGE_BYTES {
        return message;
    }
    let size = message.len();
    let mut cut = truncate_at_char(message, MAX_STATUS_MESSAGE_BYTES - 64);
    cut.push_str(&format!("…(message of {size} bytes cut)"));
    cut
}

/// The result type of handlers before conversion.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_do_not_leak_their_cause() {
        let error = ApiError::Store(StoreError::Corrupt("secret table detail".into()));
        let status = Status::from(error);
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("secret"));
    }

    #[test]
    fn definition_errors_are_invalid_argument_with_their_message() {
        let status = Status::from(ApiError::from(DefinitionError::DuplicateTaskId("a".into())));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "duplicate task id \"a\"");
    }

    #[test]
    fn a_watch_ended_by_shutdown_is_unavailable_so_clients_resume() {
        let status = Status::from(ApiError::from(WatchError::ShuttingDown));
        assert_eq!(status.code(), Code::Unavailable);
    }

    #[test]
    fn long_messages_are_cut_with_their_size() {
        let status = Status::from(ApiError::InvalidArgument("é".repeat(100_000)));
        assert!(status.message().len() <= MAX_STATUS_MESSAGE_BYTES);
        assert!(
            status.message().ends_with("…(message of 200000 bytes cut)"),
            "{}",
            &status.message()[status.message().len() - 40..]
        );
    }

    #[test]
    fn missing_rows_are_not_found() {
        let status = Status::from(ApiError::from(StoreError::NotFound(
            "workflow \"x\"".into(),
        )));
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "workflow \"x\" not found");
    }
}
