//! Rate limits: at most `limit` requests per `period` for one key, counted over a sliding
//! window. The algorithm is the contract's (§4.3) sliding-window log, so a Redis implementation
//! (a sorted set per key and one Lua script) gives the same numbers as the in-process one:
//!
//! * entries older than `now - period` (score ≤ now − period) leave the log;
//! * a request is admitted, and logged at `now`, while fewer than `limit` entries remain;
//!   `remaining` is what is left after counting it;
//! * a refused request is not logged; `retry_after` is the time, rounded up to whole seconds,
//!   until enough entries have left the window for one more request to fit;
//! * `reset_at` is the epoch second (rounded up) at which every logged entry has left the window,
//!   i.e. the whole quota is available again: `now + period` after an admitted request.
//!
//! The server holds an `Arc<dyn RateLimiter>` and calls [`RateLimiter::check`] once per request.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RateLimitError {
    #[error("rate-limit backend failed: {0}")]
    Backend(String),
}

/// What [`RateLimiter::check`] decided about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    /// Admitted and counted; `remaining` more requests fit in the window right now.
    Allowed { remaining: u32, reset_at: u64 },
    /// Refused and not counted; one more request fits after `retry_after` seconds (at least 1).
    Refused { retry_after: u64, reset_at: u64 },
}

impl RateDecision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allowed { .. })
    }

    /// Epoch seconds at which the key's whole quota is available again.
    pub fn reset_at(&self) -> u64 {
        match self {
            Self::Allowed { reset_at, .. } | Self::Refused { reset_at, .. } => *reset_at,
        }
    }
}

#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Counts one request for `key` against `limit` requests per `period`, or refuses it.
    async fn check(&self, key: &str, limit: u32, period: Duration) -> Result<RateDecision, RateLimitError>;
}

/// The time since the Unix epoch; injectable so tests move time instead of sleeping.
pub type Clock = Arc<dyn Fn() -> Duration + Send + Sync>;

fn system_clock() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// Fewest calls between two sweeps of idle keys.
const MIN_SWEEP_INTERVAL: usize = 256;

/// The log of one key.
#[derive(Debug)]
struct Window {
    hits: VecDeque<Duration>,
    period: Duration,
}

impl Window {
    /// Drops the entries that have left the window at `now`.
    fn prune(&mut self, now: Duration) {
        let Some(cutoff) = now.checked_sub(self.period) else {
            return;
        };
        while self.hits.front().is_some_and(|hit| *hit <= cutoff) {
            self.hits.pop_front();
        }
    }
}

#[derive(Debug)]
struct Table {
    windows: HashMap<String, Window>,
    calls_since_sweep: usize,
    /// Calls until the next sweep: as many as there were keys after the last one (at least
    /// `MIN_SWEEP_INTERVAL`), so sweeping costs O(1) per call amortised and idle keys never
    /// make up more than about half of the table.
    sweep_after: usize,
}

impl Default for Table {
    fn default() -> Self {
        Self {
            windows: HashMap::new(),
            calls_since_sweep: 0,
            sweep_after: MIN_SWEEP_INTERVAL,
        }
    }
}

impl Table {
    /// Forgets every key whose log is empty at `now`.
    fn sweep(&mut self, now: Duration) {
        self.windows.retain(|_, window| {
            window.prune(now);
            !window.hits.is_empty()
        });
        self.calls_since_sweep = 0;
        self.sweep_after = self.windows.len().max(MIN_SWEEP_INTERVAL);
    }
}

/// Whole seconds, rounded up.
fn ceil_secs(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// Rate limits of this process: one node's view, for the embedded single-node setup. Memory is
/// bounded by the keys active within their period: a key's log holds at most `limit` entries, and
/// keys whose log has emptied are swept away every so many calls (no timer task).
#[derive(Clone)]
pub struct InProcessRateLimiter {
    table: Arc<Mutex<Table>>,
    clock: Clock,
}

impl Default for InProcessRateLimiter {
    fn default() -> Self {
        Self::with_clock(Arc::new(system_clock))
    }
}

impl std::fmt::Debug for InProcessRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessRateLimiter")
            .field("tracked_keys", &self.tracked_keys())
            .finish_non_exhaustive()
    }
}

impl InProcessRateLimiter {
    /// A limiter reading the time from `clock` instead of the system clock.
    pub fn with_clock(clock: Clock) -> Self {
        Self {
            table: Arc::new(Mutex::new(Table::default())),
            clock,
        }
    }

    /// How many keys are held in memory (including idle ones not yet swept).
    pub fn tracked_keys(&self) -> usize {
        self.table.lock().map_or(0, |table| table.windows.len())
    }

    fn decide(&self, key: &str, limit: u32, period: Duration) -> Result<RateDecision, RateLimitError> {
        let now = (self.clock)();
        let mut table = self
            .table
            .lock()
            .map_err(|_| RateLimitError::Backend("rate-limit table poisoned".to_owned()))?;
        table.calls_since_sweep += 1;
        if table.calls_since_sweep >= table.sweep_after {
            table.sweep(now);
        }
        let limit_len = usize::try_from(limit).unwrap_or(usize::MAX);
        if limit_len == 0 {
            // Nothing is ever admitted; no log to keep.
            return Ok(RateDecision::Refused {
                retry_after: ceil_secs(period).max(1),
                reset_at: ceil_secs(now),
            });
        }
        let window = table.windows.entry(key.to_owned()).or_insert_with(|| Window {
            hits: VecDeque::new(),
            period,
        });
        window.period = period;
        window.prune(now);
        let count = window.hits.len();
        if count < limit_len {
            window.hits.push_back(now);
            let remaining = limit_len - count - 1;
            return Ok(RateDecision::Allowed {
                remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
                reset_at: ceil_secs(now + period),
            });
        }
        // `count - limit + 1` entries must leave the window before one more request fits (just
        // the oldest, unless the limit was lowered since they were logged).
        let frees_slot = window.hits.get(count - limit_len).copied().unwrap_or(now);
        let newest = window.hits.back().copied().unwrap_or(now);
        Ok(RateDecision::Refused {
            retry_after: ceil_secs((frees_slot + period).saturating_sub(now)).max(1),
            reset_at: ceil_secs(newest + period),
        })
    }
}

#[async_trait]
impl RateLimiter for InProcessRateLimiter {
    async fn check(&self, key: &str, limit: u32, period: Duration) -> Result<RateDecision, RateLimitError> {
        self.decide(key, limit, period)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    const T0: u64 = 1_700_000_000_000;
    const MINUTE: Duration = Duration::from_secs(60);

    /// A limiter whose clock reads `millis` (since the epoch).
    fn limiter() -> (InProcessRateLimiter, Arc<AtomicU64>) {
        let millis = Arc::new(AtomicU64::new(T0));
        let read = millis.clone();
        let clock: Clock = Arc::new(move || Duration::from_millis(read.load(Ordering::SeqCst)));
        (InProcessRateLimiter::with_clock(clock), millis)
    }

    fn at(millis: &AtomicU64, after_t0_ms: u64) {
        millis.store(T0 + after_t0_ms, Ordering::SeqCst);
    }

    const T0_SECS: u64 = T0 / 1000;

    #[tokio::test]
    async fn refuses_past_the_limit_with_the_time_until_a_slot_frees() {
        let (limiter, clock) = limiter();
        let limiter: Arc<dyn RateLimiter> = Arc::new(limiter);
        let mut seen = Vec::new();
        for (i, offset) in [0, 10_000, 20_000].into_iter().enumerate() {
            at(&clock, offset);
            seen.push((i, limiter.check("k", 3, MINUTE).await.unwrap()));
        }
        assert_eq!(
            seen,
            vec![
                (
                    0,
                    RateDecision::Allowed {
                        remaining: 2,
                        reset_at: T0_SECS + 60
                    }
                ),
                (
                    1,
                    RateDecision::Allowed {
                        remaining: 1,
                        reset_at: T0_SECS + 70
                    }
                ),
                (
                    2,
                    RateDecision::Allowed {
                        remaining: 0,
                        reset_at: T0_SECS + 80
                    }
                ),
            ]
        );
        // The oldest entry (t0) leaves the window at t0+60: 29.5 s from t0+30.5, rounded up.
        at(&clock, 30_500);
        assert_eq!(
            limiter.check("k", 3, MINUTE).await.unwrap(),
            RateDecision::Refused {
                retry_after: 30,
                reset_at: T0_SECS + 80
            }
        );
        // Refused requests are not counted: retrying does not push the slot further away.
        at(&clock, 59_001);
        assert_eq!(
            limiter.check("k", 3, MINUTE).await.unwrap(),
            RateDecision::Refused {
                retry_after: 1,
                reset_at: T0_SECS + 80
            }
        );
    }

    #[tokio::test]
    async fn the_window_slides() {
        let (limiter, clock) = limiter();
        for offset in [0, 10_000, 20_000] {
            at(&clock, offset);
            assert!(limiter.check("k", 3, MINUTE).await.unwrap().is_allowed());
        }
        // Exactly one period after the first request, it has left the window (score ≤ now − period).
        at(&clock, 60_000);
        assert_eq!(
            limiter.check("k", 3, MINUTE).await.unwrap(),
            RateDecision::Allowed {
                remaining: 0,
                reset_at: T0_SECS + 120
            }
        );
        // Now the oldest is the one from t0+10, which frees its slot at t0+70.
        assert_eq!(
            limiter.check("k", 3, MINUTE).await.unwrap(),
            RateDecision::Refused {
                retry_after: 10,
                reset_at: T0_SECS + 120
            }
        );
        // Long after, the whole quota is back.
        at(&clock, 500_000);
        assert_eq!(
            limiter.check("k", 3, MINUTE).await.unwrap(),
            RateDecision::Allowed {
                remaining: 2,
                reset_at: T0_SECS + 560
            }
        );
    }

    #[tokio::test]
    async fn keys_are_independent() {
        let (limiter, _clock) = limiter();
        assert!(limiter.check("a", 1, MINUTE).await.unwrap().is_allowed());
        assert!(!limiter.check("a", 1, MINUTE).await.unwrap().is_allowed());
        assert_eq!(
            limiter.check("b", 1, MINUTE).await.unwrap(),
            RateDecision::Allowed {
                remaining: 0,
                reset_at: T0_SECS + 60
            }
        );
        assert!(!limiter.check("a", 1, MINUTE).await.unwrap().is_allowed());
    }

    #[tokio::test]
    async fn a_lowered_limit_waits_for_enough_entries_to_leave() {
        let (limiter, clock) = limiter();
        for offset in [0, 10_000, 20_000] {
            at(&clock, offset);
            assert!(limiter.check("k", 3, MINUTE).await.unwrap().is_allowed());
        }
        // With a limit of 2, the entries from t0 and t0+10 must both leave: at t0+70.
        at(&clock, 30_000);
        assert_eq!(
            limiter.check("k", 2, MINUTE).await.unwrap(),
            RateDecision::Refused {
                retry_after: 40,
                reset_at: T0_SECS + 80
            }
        );
        assert_eq!(
            limiter.check("k", 0, MINUTE).await.unwrap(),
            RateDecision::Refused {
                retry_after: 60,
                reset_at: T0_SECS + 30
            }
        );
    }

    #[tokio::test]
    async fn idle_keys_are_swept_away() {
        let (limiter, clock) = limiter();
        for i in 0..1_000 {
            limiter.check(&format!("user-{i}"), 5, MINUTE).await.unwrap();
        }
        assert_eq!(limiter.tracked_keys(), 1_000);
        // Still inside their window: a sweep keeps them.
        at(&clock, 59_000);
        for _ in 0..1_000 {
            limiter.check("busy", 1_000_000, MINUTE).await.unwrap();
        }
        assert_eq!(limiter.tracked_keys(), 1_001);
        // Past their window, the next sweep (after as many calls as there were keys) drops them.
        at(&clock, 61_000);
        for _ in 0..1_001 {
            limiter.check("busy", 1_000_000, MINUTE).await.unwrap();
        }
        assert_eq!(limiter.tracked_keys(), 1);
        assert!(limiter.check("user-1", 5, MINUTE).await.unwrap().is_allowed());
        assert_eq!(limiter.tracked_keys(), 2);
    }
}
