//! Retry delays: before retry k (k = 1, 2, ...) wait `d` (fixed), `d*k`
//! (linear) or `d*2^(k-1)` (exponential), capped at the maximum, then, with
//! jitter, multiplied by a uniform factor in [0.5, 1].

use tributary_core::{Backoff, RetryPolicy};

/// The delay before retry number `retry` (1 for the first retry) in
/// milliseconds. `jitter_factor` is the random draw in [0.5, 1]; it is
/// ignored when the policy has no jitter.
pub fn retry_delay_ms(policy: &RetryPolicy, retry: u32, jitter_factor: f64) -> u64 {
    let retry = retry.max(1);
    let base = policy.delay_ms;
    let grown = match policy.backoff {
        Backoff::Fixed => base,
        Backoff::Linear => base.saturating_mul(u64::from(retry)),
        Backoff::Exponential => {
            let doublings = retry - 1;
            if doublings >= 64 {
                u64::MAX
            } else {
                base.saturating_mul(1u64 << doublings)
            }
        }
    };
    let capped = grown.min(policy.max_delay_ms);
    if policy.jitter {
        let factor = jitter_factor.clamp(0.5, 1.0);
        (capped as f64 * factor).round() as u64
    } else {
        capped
    }
}

/// A uniform draw in [0.5, 1] for [`retry_delay_ms`].
pub fn random_jitter_factor() -> f64 {
    0.5 + fastrand::f64() * 0.5
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(backoff: Backoff, jitter: bool) -> RetryPolicy {
        RetryPolicy {
            attempts: 10,
            delay_ms: 1000,
            backoff,
            max_delay_ms: 30_000,
            jitter,
        }
    }

    #[test]
    fn fixed_linear_exponential_without_jitter() {
        let fixed = policy(Backoff::Fixed, false);
        let linear = policy(Backoff::Linear, false);
        let exponential = policy(Backoff::Exponential, false);
        let delays = |p: &RetryPolicy| {
            (1..=7)
                .map(|k| retry_delay_ms(p, k, 1.0))
                .collect::<Vec<_>>()
        };
        assert_eq!(delays(&fixed), [1000; 7]);
        assert_eq!(delays(&linear), [1000, 2000, 3000, 4000, 5000, 6000, 7000]);
        assert_eq!(
            delays(&exponential),
            [1000, 2000, 4000, 8000, 16000, 30000, 30000]
        );
    }

    #[test]
    fn cap_applies_before_jitter() {
        let exponential = policy(Backoff::Exponential, true);
        assert_eq!(retry_delay_ms(&exponential, 10, 0.5), 15_000);
        assert_eq!(retry_delay_ms(&exponential, 10, 1.0), 30_000);
        assert_eq!(retry_delay_ms(&exponential, 2, 0.75), 1_500);
    }

    #[test]
    fn jitter_is_ignored_when_off_and_clamped_when_on() {
        assert_eq!(retry_delay_ms(&policy(Backoff::Fixed, false), 1, 0.5), 1000);
        assert_eq!(retry_delay_ms(&policy(Backoff::Fixed, true), 1, 0.1), 500);
        assert_eq!(retry_delay_ms(&policy(Backoff::Fixed, true), 1, 7.0), 1000);
    }

    #[test]
    fn huge_retry_numbers_saturate_instead_of_overflowing() {
        let exponential = policy(Backoff::Exponential, false);
        assert_eq!(retry_delay_ms(&exponential, u32::MAX, 1.0), 30_000);
        let linear = policy(Backoff::Linear, false);
        assert_eq!(retry_delay_ms(&linear, u32::MAX, 1.0), 30_000);
    }

    #[test]
    fn random_factor_stays_in_range() {
        for _ in 0..1000 {
            let factor = random_jitter_factor();
            assert!((0.5..=1.0).contains(&factor), "{factor}");
        }
    }
}
