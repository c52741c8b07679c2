//! The scheduler's clock, injectable: the wall clock in production, a
//! manual clock that tests set and advance, so no test waits for real time.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// A future the scheduler awaits.
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// What time it is for the scheduler, and how to wait for a time.
pub trait ScheduleClock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
    /// Resolves once `now_ms() >= deadline_ms`.
    fn sleep_until(&self, deadline_ms: i64) -> Sleep<'_>;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct WallClock;

/// Longest single sleep: a wall clock that is set forward (or a machine
/// that was suspended) is noticed within this, without any query.
const MAX_WALL_SLEEP: Duration = Duration::from_secs(60);

impl ScheduleClock for WallClock {
    fn now_ms(&self) -> i64 {
        crate::clock::now_unix_ms()
    }

    fn sleep_until(&self, deadline_ms: i64) -> Sleep<'_> {
        Box::pin(async move {
            loop {
                let remaining = deadline_ms.saturating_sub(self.now_ms());
                if remaining <= 0 {
                    return;
                }
                let remaining = Duration::from_millis(remaining as u64);
                tokio::time::sleep(remaining.min(MAX_WALL_SLEEP)).await;
            }
        })
    }
}

/// A clock that moves only when told; sleepers wake when it passes their
/// deadline.
#[derive(Clone)]
pub struct ManualClock {
    now: Arc<watch::Sender<i64>>,
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("ManualClock")
            .field("now_ms", &*self.now.borrow())
            .finish()
    }
}

impl ManualClock {
    pub fn new(now_ms: i64) -> ManualClock {
        ManualClock {
            now: Arc::new(watch::Sender::new(now_ms)),
        }
    }

    /// Sets the time; setting it back is allowed (nothing fires for it).
    pub fn set(&self, now_ms: i64) {
        self.now.send_replace(now_ms);
    }

    pub fn advance(&self, by_ms: i64) {
        self.now.send_modify(|now| *now = now.saturating_add(by_ms));
    }
}

impl ScheduleClock for ManualClock {
    fn now_ms(&self) -> i64 {
        *self.now.borrow()
    }

    fn sleep_until(&self, deadline_ms: i64) -> Sleep<'_> {
        let mut changes = self.now.subscribe();
        Box::pin(async move {
            // The sender lives as long as the clock, so this only ends at
            // the deadline.
            let _ = changes.wait_for(|now| *now >= deadline_ms).await;
        })
    }
}

/// A clock handed to the server by tests that run it in-process.
#[derive(Clone)]
pub struct ClockOverride(pub Arc<dyn ScheduleClock>);

impl fmt::Debug for ClockOverride {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("ClockOverride")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_wakes_sleepers_when_it_passes_their_deadline() {
        let clock = ManualClock::new(1_000);
        let sleeper = {
            let clock = clock.clone();
            tokio::spawn(async move { clock.sleep_until(5_000).await })
        };
        clock.advance(1_000);
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.set(5_000);
        sleeper.await.expect("woke");
        assert_eq!(clock.now_ms(), 5_000);
        // A deadline already passed returns at once.
        clock.sleep_until(10).await;
    }
}
