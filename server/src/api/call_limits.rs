//! The concurrency limit of unary calls. A stream is open for as long as
//! its client likes (an executor's `Connect` for days), so a limit that
//! counted streams would let a thousand idle streams stall every unary call
//! and health check behind them. Streams and health checks therefore pass
//! without a permit; they are bounded by their own limits (the register
//! timeout, per-namespace quotas, the file-descriptor limit).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::Semaphore;
use tower::{Layer, Service};

/// Whether a call to `path` (`/package.Service/Method`) is exempt from the
/// unary limit: every streaming method of the API (`Connect` and the
/// `Watch*` methods, present and future), health and reflection.
pub fn is_exempt_from_unary_limit(path: &str) -> bool {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (Some(service), Some(method)) = (parts.next(), parts.next()) else {
        return false;
    };
    service.starts_with("grpc.health.")
        || service.starts_with("grpc.reflection.")
        || (service.starts_with("tributary.")
            && (method == "Connect" || method.starts_with("Watch")))
}

/// Holds at most `limit` unary calls in their handlers at once; more wait
/// for a permit. Exempt calls (see [`is_exempt_from_unary_limit`]) never
/// wait.
#[derive(Clone)]
pub struct UnaryConcurrencyLimitLayer {
    permits: Arc<Semaphore>,
}

impl UnaryConcurrencyLimitLayer {
    pub fn new(limit: usize) -> UnaryConcurrencyLimitLayer {
        UnaryConcurrencyLimitLayer {
            permits: Arc::new(Semaphore::new(limit.max(1))),
        }
    }
}

impl<S> Layer<S> for UnaryConcurrencyLimitLayer {
    type Service = UnaryConcurrencyLimit<S>;

    fn layer(&self, inner: S) -> UnaryConcurrencyLimit<S> {
        UnaryConcurrencyLimit {
            inner,
            permits: self.permits.clone(),
        }
    }
}

/// The service of [`UnaryConcurrencyLimitLayer`].
#[derive(Clone)]
pub struct UnaryConcurrencyLimit<S> {
    inner: S,
    permits: Arc<Semaphore>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> Service<http::Request<B>> for UnaryConcurrencyLimit<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The instance polled ready serves this call; the clone left behind
        // is polled for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if is_exempt_from_unary_limit(request.uri().path()) {
            return Box::pin(inner.call(request));
        }
        let permits = self.permits.clone();
        Box::pin(async move {
            // The semaphore is never closed, so acquiring cannot fail; if it
            // ever did, the call goes on rather than failing.
            let _permit = permits.acquire_owned().await.ok();
            inner.call(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_health_and_reflection_are_exempt_and_unary_calls_are_not() {
        for exempt in [
            "/tributary.v1.ExecutorService/Connect",
            "/tributary.v1.RunService/WatchRun",
            "/tributary.v1.RunService/WatchEvents",
            "/tributary.v1.ExecutorService/WatchExecutors",
            "/grpc.health.v1.Health/Check",
            "/grpc.health.v1.Health/Watch",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        ] {
            assert!(is_exempt_from_unary_limit(exempt), "{exempt}");
        }
        for limited in [
            "/tributary.v1.WorkflowService/ListWorkflows",
            "/tributary.v1.RunService/StartRun",
            "/tributary.v1.ExecutorService/ListExecutors",
            "/other.Service/Connect",
            "/",
            "",
        ] {
            assert!(!is_exempt_from_unary_limit(limited), "{limited}");
        }
    }
}
