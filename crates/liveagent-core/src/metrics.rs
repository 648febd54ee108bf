//! [`LatencySamples`]: what the benchmarks read to report the latency the library adds.

use std::time::Duration;

/// The most recent latency measurements (microseconds), bounded, with percentiles.
///
/// ```
/// use std::time::Duration;
/// use liveagent_core::LatencySamples;
/// let mut l = LatencySamples::new(1000);
/// for us in 1..=100 { l.record(Duration::from_micros(us)); }
/// assert_eq!(l.percentile(50.0), Some(Duration::from_micros(50)));
/// assert_eq!(l.percentile(99.0), Some(Duration::from_micros(99)));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LatencySamples {
    samples: Vec<u32>,
    next: usize,
    capacity: usize,
    recorded: u64,
}

impl LatencySamples {
    /// Keeps at most `capacity` measurements (the most recent ones).
    pub fn new(capacity: usize) -> Self {
        LatencySamples {
            samples: Vec::new(),
            next: 0,
            capacity,
            recorded: 0,
        }
    }

    /// Records one measurement.
    pub fn record(&mut self, latency: Duration) {
        if self.capacity == 0 {
            return;
        }
        let us = latency.as_micros().min(u32::MAX as u128) as u32;
        if self.samples.len() < self.capacity {
            self.samples.push(us);
        } else {
            self.samples[self.next] = us;
            self.next = (self.next + 1) % self.capacity;
        }
        self.recorded += 1;
    }

    /// Measurements recorded in total (including those no longer kept).
    pub fn recorded(&self) -> u64 {
        self.recorded
    }

    /// The kept measurements, in microseconds, unordered.
    pub fn micros(&self) -> &[u32] {
        &self.samples
    }

    /// The `p`-th percentile (0..=100) of the kept measurements (nearest rank).
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        if self.samples.is_empty() {
            return None;
        }
        let mut sorted = self.samples.clone();
        sorted.sort_unstable();
        let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
        Some(Duration::from_micros(
            sorted[rank.min(sorted.len()) - 1] as u64,
        ))
    }
}
