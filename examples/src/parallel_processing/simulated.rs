//! A stand-in for the `tokio` the tutorial's tasks call: `seed.rs` imports
//! this module under the name `tokio`, so `tokio::time::sleep(...)` in the
//! tutorial's unchanged bodies comes here, and `--no-sleep` can skip the
//! simulated work.
//!
//! It also provides the `info!` the tutorial's tasks log with: the same
//! line, marked `slept=false` under `--no-sleep`, because the tutorial's
//! "processed ... in 1760ms" then names a time that was drawn, not spent.
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

/// `tracing::info!`, marking each line `slept=false` when the sleeps are
/// off, so that the tutorial's processing times are not read as measured.
macro_rules! info {
    ($($arg:tt)*) => {
        if $crate::parallel_processing::simulated::sleeps() {
            ::tracing::info!($($arg)*)
        } else {
            ::tracing::info!(slept = false, $($arg)*)
        }
    };
}
pub(crate) use info;
