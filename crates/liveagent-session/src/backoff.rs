//! Reconnect backoff: exponential with jitter and a cap.

use std::time::Duration;

/// When to retry a dropped connection.
///
/// The n-th attempt (from 1) waits `initial * multiplier^(n-1)`, capped at `max_delay`, then
/// scaled by a random factor in `1 ± jitter`. The first attempt after a connection that had
/// worked waits `first_delay` (default 0: reconnect at once).
///
/// ```
/// use std::time::Duration;
/// use liveagent_session::ReconnectPolicy;
/// let p = ReconnectPolicy { jitter: 0.0, ..ReconnectPolicy::default() };
/// assert_eq!(p.delay(1), Duration::ZERO);
/// assert_eq!(p.delay(2), Duration::from_millis(250));
/// assert_eq!(p.delay(3), Duration::from_millis(500));
/// assert_eq!(p.delay(30), p.max_delay);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ReconnectPolicy {
    /// Delay before the first attempt after a drop (default 0).
    pub first_delay: Duration,
    /// Base delay of the exponential backoff (default 250 ms).
    pub initial_delay: Duration,
    /// Growth factor per attempt (default 2).
    pub multiplier: f64,
    /// Upper bound of a delay (default 10 s).
    pub max_delay: Duration,
    /// Random spread, 0.0..1.0 (default 0.2 = ±20%).
    pub jitter: f64,
    /// Give up after this many failed attempts in a row (default 12; `None`: never).
    pub max_attempts: Option<u32>,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            first_delay: Duration::ZERO,
            initial_delay: Duration::from_millis(250),
            multiplier: 2.0,
            max_delay: Duration::from_secs(10),
            jitter: 0.2,
            max_attempts: Some(12),
        }
    }
}

impl ReconnectPolicy {
    /// Never reconnect: the first drop ends the session.
    pub fn never() -> Self {
        ReconnectPolicy {
            max_attempts: Some(0),
            ..ReconnectPolicy::default()
        }
    }

    /// The delay before attempt `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        if attempt <= 1 {
            return self.first_delay;
        }
        let exp = self
            .multiplier
            .powi(attempt.saturating_sub(1).min(60) as i32 - 1);
        let base = (self.initial_delay.as_secs_f64() * exp).min(self.max_delay.as_secs_f64());
        let factor = if self.jitter > 0.0 {
            1.0 + self.jitter * (rand::random::<f64>() * 2.0 - 1.0)
        } else {
            1.0
        };
        Duration::from_secs_f64((base * factor).max(0.0)).min(self.max_delay)
    }

    /// True when `attempt` (1-based) is past the limit.
    pub fn exhausted(&self, attempt: u32) -> bool {
        matches!(self.max_attempts, Some(max) if attempt > max)
    }
}
