//! The statuses of messages the server cannot read. tonic answers a message
//! that is not valid protobuf (or has invalid UTF-8 in a string field) with
//! INTERNAL and an oversize one with OUT_OF_RANGE; to a client both are its
//! own input's fault, so the server answers INVALID_ARGUMENT and
//! RESOURCE_EXHAUSTED instead. Unary calls are rewritten by
//! [`ReadErrorStatusLayer`] on their way out; streams read their messages
//! in the handler, which uses [`unreadable_message`].

use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::{Code, Status};
use tower::{Layer, Service};

/// What tonic's decoder says of a message that is not protobuf of its type
/// (prost's `DecodeError` display).
const UNDECODABLE_PREFIX: &str = "failed to decode Protobuf message";
/// What tonic's decoder says of a message above the decoding limit.
const TOO_LARGE_PREFIX: &str = "Error, decoded message length too large";

/// The status a client should get for a message the server could not read,
/// or `None` when `status` is not about reading a message.
pub fn unreadable_message(status: &Status) -> Option<Status> {
    match status.code() {
        Code::Internal if status.message().starts_with(UNDECODABLE_PREFIX) => {
            Some(Status::invalid_argument(format!(
                "the message is not valid protobuf of its type (or has a string that is not UTF-8): {}",
                status.message()
            )))
        }
        Code::OutOfRange if status.message().starts_with(TOO_LARGE_PREFIX) => Some(
            Status::resource_exhausted(match too_large_sizes(status.message()) {
                Some((size, limit)) => format!(
                    "the message is {size} bytes, over the server's message limit of {limit} bytes by {}",
                    size.saturating_sub(limit)
                ),
                None => status.message().to_owned(),
            }),
        ),
        _ => None,
    }
}

/// The size and the limit out of tonic's "found N bytes, the limit is: M
/// bytes".
pub fn too_large_sizes(message: &str) -> Option<(u64, u64)> {
    let number_after = |marker: &str| -> Option<u64> {
        let rest = &message[message.find(marker)? + marker.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    Some((number_after("found ")?, number_after("the limit is: ")?))
}

/// Rewrites the status of calls that ended before their handler, because
/// their request could not be read (see the module's comment).
#[derive(Clone, Copy, Default)]
pub struct ReadErrorStatusLayer;

impl<S> Layer<S> for ReadErrorStatusLayer {
    type Service = ReadErrorStatus<S>;

    fn layer(&self, inner: S) -> ReadErrorStatus<S> {
        ReadErrorStatus { inner }
    }
}

/// The service of [`ReadErrorStatusLayer`].
#[derive(Clone)]
pub struct ReadErrorStatus<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> Service<http::Request<B>> for ReadErrorStatus<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut response = response.await?;
            // A request that cannot be read ends "trailers-only": the status
            // is in the response headers.
            if let Some(replacement) = Status::from_header_map(response.headers())
                .and_then(|status| unreadable_message(&status))
            {
                let headers = response.headers_mut();
                headers.remove("grpc-status");
                headers.remove("grpc-message");
                headers.remove("grpc-status-details-bin");
                let _ = replacement.add_header(headers);
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_errors_become_the_clients_fault() {
        let undecodable = Status::internal(
            "failed to decode Protobuf message: GetRunRequest.run_id: invalid string value: data is not UTF-8 encoded",
        );
        let mapped = unreadable_message(&undecodable).expect("mapped");
        assert_eq!(mapped.code(), Code::InvalidArgument);
        assert!(mapped.message().contains("not UTF-8"));

        let too_large = Status::out_of_range(
            "Error, decoded message length too large: found 20000000 bytes, the limit is: 16842752 bytes",
        );
        let mapped = unreadable_message(&too_large).expect("mapped");
        assert_eq!(mapped.code(), Code::ResourceExhausted);
        assert_eq!(
            mapped.message(),
            "the message is 20000000 bytes, over the server's message limit of 16842752 bytes by 3157248"
        );

        assert!(unreadable_message(&Status::internal("database down")).is_none());
        assert!(unreadable_message(&Status::out_of_range("cursor beyond end")).is_none());
    }
}
