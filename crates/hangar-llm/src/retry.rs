//! How often and how long to wait before calling a failing model target again.
//!
//! The schedule is the seed's (contract §11, §12.4): at most 3 attempts, full-jitter exponential
//! backoff `uniform(0, min(max_delay, base_delay · 2^n))` with a 1 s base and a 10 s cap, where
//! `n` counts the failed attempts before this wait (0 for the wait after the first failure).
//!
//! Unlike the seed, a provider's `retry-after` is honoured: the wait is at least the provider's
//! value, but never more than [`RetryPolicy::max_retry_after`] (60 s by default). A provider that
//! asks for more is waited on for the cap and then tried again; if it still refuses, retries run out
//! and the gateway moves on to the next model of the fallback chain. The cap keeps one interactive
//! run from hanging for minutes on one misbehaving (or hostile) header.
//!
//! Randomness is passed in (`&mut impl Rng`) so tests can use a seeded generator, and the
//! [`Gateway`](crate::Gateway) sleeps through `tokio::time`, so tests can pause the clock.

use std::time::Duration;

use rand::Rng;

/// Retry schedule of one model target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Calls per target, the first one included (`0` is treated as `1`).
    pub max_attempts: u32,
    /// The jitter window after the first failure; it doubles with each further failure.
    pub base_delay: Duration,
    /// The largest jitter window.
    pub max_delay: Duration,
    /// The longest `retry-after` honoured; larger values are clamped to it.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// No retries at all: every target is called once.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Calls per target, at least one.
    pub fn attempts(&self) -> u32 {
        self.max_attempts.max(1)
    }

    /// The upper bound of the jitter window after `failures_before + 1` failed attempts:
    /// `min(max_delay, base_delay · 2^failures_before)`, saturating instead of overflowing.
    pub fn window(&self, failures_before: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures_before);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// The wait before the next attempt. `failures_before` is the number of failed attempts before
    /// the one that just failed (0 after the first failure); `retry_after` is the provider's
    /// `retry-after`, if it sent one.
    ///
    /// Full jitter: uniform in `[0, window(failures_before)]`. With a `retry-after` the result is
    /// at least `min(retry_after, max_retry_after)`.
    pub fn delay(&self, failures_before: u32, retry_after: Option<Duration>, rng: &mut impl Rng) -> Duration {
        let window = self.window(failures_before);
        let window_nanos = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        let jittered = Duration::from_nanos(rng.random_range(0..=window_nanos));
        match retry_after {
            Some(asked) => jittered.max(asked.min(self.max_retry_after)),
            None => jittered,
        }
    }
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn defaults_are_the_seed_schedule() {
        assert_eq!(
            RetryPolicy::default(),
            RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::from_secs(1),
                max_delay: Duration::from_secs(10),
                max_retry_after: Duration::from_secs(60),
            }
        );
        assert_eq!(
            RetryPolicy {
                max_attempts: 0,
                ..RetryPolicy::default()
            }
            .attempts(),
            1
        );
        assert_eq!(RetryPolicy::none().attempts(), 1);
    }

    #[test]
    fn window_doubles_and_caps() {
        let policy = RetryPolicy::default();
        let windows: Vec<u64> = (0..6).map(|n| policy.window(n).as_secs()).collect();
        assert_eq!(windows, vec![1, 2, 4, 8, 10, 10]);
        // No overflow for absurd attempt numbers.
        assert_eq!(policy.window(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn delay_stays_within_the_window_and_spreads() {
        let policy = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(7);
        for n in 0..5 {
            let window = policy.window(n);
            let delays: Vec<Duration> = (0..2000).map(|_| policy.delay(n, None, &mut rng)).collect();
            assert!(
                delays.iter().all(|d| *d <= window),
                "attempt {n}: a delay exceeds {window:?}"
            );
            // Full jitter: the samples cover the window, not a narrow band near its top.
            let min = delays.iter().min().copied().unwrap_or_default();
            let max = delays.iter().max().copied().unwrap_or_default();
            assert!(
                min < window / 20,
                "attempt {n}: smallest delay {min:?} is too large"
            );
            assert!(
                max > window * 19 / 20,
                "attempt {n}: largest delay {max:?} is too small"
            );
            let mean = delays.iter().sum::<Duration>() / 2000;
            assert!(
                mean > window * 4 / 10 && mean < window * 6 / 10,
                "attempt {n}: mean {mean:?} is not near half of {window:?}"
            );
        }
    }

    #[test]
    fn delay_is_deterministic_for_a_seeded_rng() {
        let policy = RetryPolicy::default();
        let a: Vec<Duration> = (0..3)
            .map(|n| policy.delay(n, None, &mut StdRng::seed_from_u64(42)))
            .collect();
        let b: Vec<Duration> = (0..3)
            .map(|n| policy.delay(n, None, &mut StdRng::seed_from_u64(42)))
            .collect();
        assert_eq!(a, b);
    }

    #[test]
    fn retry_after_is_a_lower_bound_up_to_the_cap() {
        let policy = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..200 {
            let d = policy.delay(0, Some(Duration::from_secs(5)), &mut rng);
            assert_eq!(
                d,
                Duration::from_secs(5),
                "the 1 s window is below the 5 s retry-after"
            );
            let d = policy.delay(4, Some(Duration::from_millis(100)), &mut rng);
            assert!(d >= Duration::from_millis(100) && d <= Duration::from_secs(10));
            let d = policy.delay(0, Some(Duration::from_secs(3600)), &mut rng);
            assert_eq!(d, Duration::from_secs(60), "a huge retry-after is clamped");
        }
    }

    #[test]
    fn zero_window_gives_zero_delay() {
        let policy = RetryPolicy {
            base_delay: Duration::ZERO,
            ..RetryPolicy::default()
        };
        let mut rng = StdRng::seed_from_u64(3);
        assert_eq!(policy.delay(2, None, &mut rng), Duration::ZERO);
    }
}
