//! Errors: [`TaskError`] is what a task returns; [`Error`] is what the
//! client and the worker return.

use tributary_core::DefinitionError;

use crate::context::ContextError;

/// The failure of a task attempt: a message for people, and whether a retry
/// can help. Sent to the server as `Failed { message, non_retryable }`; a
/// retryable failure is retried while the task's `retry_attempts` allow.
///
/// `?` converts a [`ContextError`] (non-retryable: the same input gives the
/// same error), a `String` or a `&str` (retryable).
///
/// ```
/// use tributary::{Context, TaskError};
///
/// async fn charge(context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
///     let amount: u64 = context.get("amount")?; // a missing key is fatal
///     if amount == 0 {
///         return Err(TaskError::fatal("nothing to charge"));
///     }
///     Err("the payment service is down".into()) // retryable
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskError {
    message: String,
    retryable: bool,
}

impl TaskError {
    /// A failure that a retry may fix (the task is retried while its
    /// `retry_attempts` allow).
    ///
    /// ```
    /// assert!(tributary::TaskError::retryable("timeout").is_retryable());
    /// ```
    pub fn retryable(message: impl Into<String>) -> TaskError {
        TaskError {
            message: message.into(),
            retryable: true,
        }
    }

    /// A failure that no retry can fix: the task fails at once.
    ///
    /// ```
    /// assert!(!tributary::TaskError::fatal("bad input").is_retryable());
    /// ```
    pub fn fatal(message: impl Into<String>) -> TaskError {
        TaskError {
            message: message.into(),
            retryable: false,
        }
    }

    /// The message.
    ///
    /// ```
    /// assert_eq!(tributary::TaskError::fatal("x").message(), "x");
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether a retry makes sense.
    ///
    /// ```
    /// let error: tributary::TaskError = "flaky".into();
    /// assert!(error.is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

impl std::fmt::Display for TaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TaskError {}

impl From<ContextError> for TaskError {
    fn from(error: ContextError) -> TaskError {
        TaskError::fatal(error.to_string())
    }
}

impl From<String> for TaskError {
    fn from(message: String) -> TaskError {
        TaskError::retryable(message)
    }
}

impl From<&str> for TaskError {
    fn from(message: &str) -> TaskError {
        TaskError::retryable(message)
    }
}

impl From<serde_json::Error> for TaskError {
    fn from(error: serde_json::Error) -> TaskError {
        TaskError::fatal(error.to_string())
    }
}

/// An error of the [`Client`](crate::Client) or the [`Worker`](crate::Worker).
///
/// ```
/// # async fn example() {
/// match tributary::Client::connect("http://127.0.0.1:1").await {
///     Err(tributary::Error::Transport(_)) => {}
///     other => panic!("{other:?}"),
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server URL is not valid.
    #[error("invalid server URL {url:?}: {message}")]
    InvalidUrl {
        /// The URL.
        url: String,
        /// Why it is invalid.
        message: String,
    },
    /// The namespace is not valid ASCII metadata.
    #[error("invalid namespace {0:?}")]
    InvalidNamespace(String),
    /// The URL's scheme does not match the server: `https://` against a
    /// plaintext server or `http://` against a TLS one (the message says
    /// which).
    #[error("{0}")]
    SchemeMismatch(String),
    /// The API key is not valid metadata (not ASCII text).
    #[error("the API key is not ASCII text")]
    InvalidApiKey,
    /// The connection failed.
    #[error("cannot connect: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The server answered with an error status (boxed: a `Status` is
    /// large).
    #[error("{}: {}", .0.code(), .0.message())]
    Status(Box<tonic::Status>),
    /// A workflow definition was rejected by local validation (the same
    /// messages as the server's).
    #[error("invalid workflow definition: {0}")]
    Definition(#[from] DefinitionError),
    /// A JSON value could not be encoded or decoded.
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The server sent something this SDK does not understand.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    /// The worker has no handler to register.
    #[error("a worker needs at least one handler")]
    NoHandlers,
    /// The thread that carries the worker's connection could not start.
    #[error("cannot start the worker's connection thread: {0}")]
    WorkerThread(std::io::Error),
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Error {
        Error::Status(Box::new(status))
    }
}

impl Error {
    /// The gRPC status code, when the server answered with an error.
    ///
    /// ```no_run
    /// # async fn f(client: tributary::Client) {
    /// let error = client.get_run("no-such-run").await.unwrap_err();
    /// assert_eq!(error.code(), Some(tonic::Code::NotFound));
    /// # }
    /// ```
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Error::Status(status) => Some(status.code()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_choose_retryability() {
        let from_str: TaskError = "a".into();
        let from_string: TaskError = String::from("b").into();
        let from_context: TaskError = ContextError::KeyNotFound { key: "k".into() }.into();
        assert!(from_str.is_retryable() && from_string.is_retryable());
        assert!(!from_context.is_retryable());
        assert_eq!(from_context.to_string(), "context key \"k\" not found");
    }
}
