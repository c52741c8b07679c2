//! Accepting connections at the file-descriptor limit, and raising that
//! limit at start.
//!
//! When the process has no descriptor left, `accept` fails at once with
//! EMFILE (ENFILE for the whole system) and the pending connection stays in
//! the backlog, so a loop that accepts again straight away spins on the
//! same error, a whole core's worth. [`AcceptBackoff`] waits instead, from
//! 10 ms doubling up to 1 s while the errors last, and logs once per burst.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Sleep;
use tokio_stream::Stream;

/// The first wait after an accept failed for want of resources.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// The longest wait: a descriptor freed is used within this.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Whether an accept error means the process or system is out of a
/// resource (descriptors, buffers, memory), so accepting again at once
/// would fail the same way.
pub fn is_resource_exhaustion(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// The connections of `incoming`, waiting with a growing delay after each
/// accept that failed for want of resources instead of retrying at once.
/// Such errors are not passed on (the caller could only log them); others
/// are.
pub struct AcceptBackoff<S> {
    incoming: S,
    delay: Option<Pin<Box<Sleep>>>,
    next_backoff: Duration,
    failures_in_burst: u64,
}

impl<S> AcceptBackoff<S> {
    pub fn new(incoming: S) -> AcceptBackoff<S> {
        AcceptBackoff {
            incoming,
            delay: None,
            next_backoff: FIRST_BACKOFF,
            failures_in_burst: 0,
        }
    }
}

impl<S, T> Stream for AcceptBackoff<S>
where
    S: Stream<Item = io::Result<T>> + Unpin,
{
    type Item = io::Result<T>;

    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(delay) = this.delay.as_mut() {
                if delay.as_mut().poll(context).is_pending() {
                    return Poll::Pending;
                }
                this.delay = None;
            }
            match Pin::new(&mut this.incoming).poll_next(context) {
                Poll::Ready(Some(Err(error))) if is_resource_exhaustion(&error) => {
                    if this.failures_in_burst == 0 {
                        tracing::warn!(
                            %error,
                            "cannot accept connections (out of file descriptors or memory); retrying with backoff"
                        );
                    }
                    this.failures_in_burst += 1;
                    this.delay = Some(Box::pin(tokio::time::sleep(this.next_backoff)));
                    this.next_backoff = (this.next_backoff * 2).min(MAX_BACKOFF);
                }
                Poll::Ready(Some(Ok(connection))) => {
                    if this.failures_in_burst > 0 {
                        tracing::info!(
                            failed_accepts = this.failures_in_burst,
                            "accepting connections again"
                        );
                        this.failures_in_burst = 0;
                        this.next_backoff = FIRST_BACKOFF;
                    }
                    return Poll::Ready(Some(Ok(connection)));
                }
                other => return other,
            }
        }
    }
}

/// Raises the soft limit on open files to the hard limit, so that the
/// server can hold as many connections as the system lets this process,
/// not the 1,024 a shell usually starts it with. Returns the limit in
/// force afterwards; failing to raise it is logged, not fatal.
pub fn raise_open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        tracing::warn!(error = %io::Error::last_os_error(), "cannot read the open files limit");
        return None;
    }
    if limit.rlim_cur >= limit.rlim_max {
        return Some(limit.rlim_cur);
    }
    let raised = libc::rlimit {
        rlim_cur: limit.rlim_max,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit reads the `rlimit` it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        tracing::warn!(
            error = %io::Error::last_os_error(),
            soft = limit.rlim_cur,
            hard = limit.rlim_max,
            "cannot raise the open files limit"
        );
        return Some(limit.rlim_cur);
    }
    tracing::info!(
        from = limit.rlim_cur,
        to = raised.rlim_cur,
        "raised the open files limit"
    );
    Some(raised.rlim_cur)
}

#[cfg(test)]
mod tests {
    use tokio_stream::StreamExt;

    use super::*;

    #[tokio::test]
    async fn resource_errors_are_waited_out_with_a_growing_delay_and_others_pass() {
        let emfile = || Err::<u32, _>(io::Error::from_raw_os_error(libc::EMFILE));
        let items = vec![
            emfile(),
            emfile(),
            emfile(),
            Ok(1),
            Err(io::Error::from_raw_os_error(libc::ECONNABORTED)),
            emfile(),
            Ok(2),
        ];
        let start = tokio::time::Instant::now();
        let mut accepted = AcceptBackoff::new(tokio_stream::iter(items));
        assert_eq!(accepted.next().await.expect("item").expect("ok"), 1);
        // It waited 10 + 20 + 40 ms at least.
        assert!(start.elapsed() >= Duration::from_millis(70));
        let error = accepted.next().await.expect("item").expect_err("passed on");
        assert_eq!(error.raw_os_error(), Some(libc::ECONNABORTED));
        // The burst ended with a connection, so the backoff starts over.
        assert_eq!(accepted.next().await.expect("item").expect("ok"), 2);
        let before_burst = start.elapsed();
        assert!(before_burst >= Duration::from_millis(80));
        assert!(accepted.next().await.is_none());
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_limit() {
        let limit = raise_open_files_limit().expect("a limit");
        let mut now = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut now) }, 0);
        assert_eq!(now.rlim_cur, now.rlim_max);
        assert_eq!(limit, now.rlim_cur);
    }
}
