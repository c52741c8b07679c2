//! A stand-in for the `tokio` the tutorial's tasks call: `seed.rs` imports
//! this module under the name `tokio`, so `tokio::time::sleep(...)` in the
//! tutorial's unchanged bodies comes here, and `--no-sleep` can skip the
//! simulated work.
//!
//! The switch is process-wide because the tasks have no other way to see
//! it: they are plain `#[task]` functions of their context.

use std::sync::atomic::{AtomicBool, Ordering};

static SLEEPS: AtomicBool = AtomicBool::new(true);

/// Whether `time::sleep` really sleeps (the default) or returns at once.
pub fn set_sleeps(sleeps: bool) {
    SLEEPS.store(sleeps, Ordering::Relaxed);
}

/// Whether `time::sleep` really sleeps.
pub fn sleeps() -> bool {
    SLEEPS.load(Ordering::Relaxed)
}

/// The one part of `tokio::time` the tutorial uses.
pub mod time {
    use std::time::Duration;

    /// `tokio::time::sleep`, unless sleeps are off.
    pub async fn sleep(duration: Duration) {
        if super::sleeps() {
            ::tokio::time::sleep(duration).await;
        }
    }
}
