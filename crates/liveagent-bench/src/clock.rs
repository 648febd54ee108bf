//! The benches' microphone clock: a fixed-period tick (`MissedTickBehavior::Burst`
//! semantics) that does not make tokio wake its own I/O driver on every tick.
//!
//! A `tokio::time::Interval` re-registers its one timer after each tick. tokio's time driver
//! unparks the I/O driver (a `write` to its eventfd) whenever a re-registered timer becomes
//! the earliest deadline, even when that happens on the runtime's own thread while it runs;
//! with a 1 ms interval that is nearly every tick, and the eventfd then makes the next
//! `epoll_wait` return at once (an extra turn of the event loop). At N=20 that was ~930
//! `write`s a second, charged to the client under test although it is the harness's cost
//! (the Python harness's asyncio timers pay no such thing).
//!
//! [`MicClock`] keeps [`AHEAD`] timers instead, one period apart: when the earliest fires,
//! the next ones are already registered, so re-arming the fired one `AHEAD` periods ahead
//! does not make it the earliest deadline, and tokio has nothing to unpark. (Two would do on
//! an idle machine; but tokio's clock has 1 ms ticks and `epoll_wait` 1 ms timeouts, so a
//! wakeup often lands in the tick after the one it waited for and both timers fire
//! together: with two, 17-40 % of the ticks still unparked at N=20 on a loaded machine.)
//! The ticks are the same: tick `m`
//! is due at `t0 + m × period`, is returned as that scheduled instant (the origin of every
//! latency measured from it), and ticks that are already due when the caller comes back
//! are returned at once, one by one (a late caller catches up in a burst).

use std::pin::Pin;
use std::time::{Duration, Instant};

use tokio::time::Sleep;

/// How many ticks ahead the clock keeps a timer registered.
pub const AHEAD: u32 = 4;

/// A periodic clock from `t0`, see the [module](self) docs.
pub struct MicClock {
    t0: Instant,
    period: Duration,
    /// The next tick to return.
    next: u32,
    /// `timers[m % AHEAD]` is armed for tick `m`, for the next `AHEAD` ticks.
    timers: [Pin<Box<Sleep>>; AHEAD as usize],
}

impl MicClock {
    /// A clock whose tick `m` is due at `t0 + m × period`. Call it inside the runtime: every
    /// timer is registered with its time driver at once (a `Sleep` that is only created
    /// registers on its first poll, which would make it the earliest deadline then).
    pub fn new(t0: Instant, period: Duration) -> Self {
        let timers = std::array::from_fn(|m| {
            let m = m as u32;
            let at = (t0 + period * m).into();
            let mut timer = Box::pin(tokio::time::sleep_until(at));
            timer.as_mut().reset(at);
            timer
        });
        Self {
            t0,
            period,
            next: 0,
            timers,
        }
    }

    /// Waits for the next tick and returns its scheduled instant.
    pub async fn tick(&mut self) -> Instant {
        let m = self.next;
        let slot = (m % AHEAD) as usize;
        self.timers[slot].as_mut().await;
        // Re-arm this timer AHEAD ticks on; the others are armed for ticks m + 1 ...
        let later = self.t0 + self.period * (m + AHEAD);
        self.timers[slot].as_mut().reset(later.into());
        self.next = m + 1;
        self.t0 + self.period * m
    }
}
