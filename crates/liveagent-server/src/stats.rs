//! Server-wide counters, used by the load benchmark and `GET /debug/stats`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;

/// Lateness histogram bucket upper bounds in milliseconds (last bucket is open-ended).
const BUCKETS_MS: [u64; 8] = [1, 2, 5, 10, 20, 50, 100, 200];

/// Live counters (atomics, shared by every session).
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub sessions_total: AtomicU64,
    pub sessions_active: AtomicU64,
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub audio_chunks_out: AtomicU64,
    pub lateness_sum_us: AtomicU64,
    pub lateness_max_us: AtomicU64,
    pub lateness_hist: [AtomicU64; BUCKETS_MS.len() + 1],
    pub responses: AtomicU64,
    pub turns_detected: AtomicU64,
    pub client_errors: AtomicU64,
    /// Connections dropped because the client let too much output pile up.
    pub backlog_drops: AtomicU64,
    /// Session snapshots with items built (on demand: `sessions()`, `/debug/sessions`).
    pub snapshots_built: AtomicU64,
    /// TCP connections open now.
    pub tcp_open: AtomicU64,
    /// TCP connections accepted since start.
    pub tcp_accepted: AtomicU64,
    /// Requests refused by the exposure checks (key, Host, Origin, per-address cap).
    pub refused: AtomicU64,
    /// Sessions closed for being idle.
    pub idle_closed: AtomicU64,
    /// Answer rates as paced: each delta timed when the session hands it to its connection.
    pub answer_rate_paced: RateHist,
    /// Answer rates as written: each delta timed when the connection's writer task has
    /// handed it to the WebSocket (after the queue between the session and the writer).
    pub answer_rate_written: RateHist,
}

/// Answers shorter than this are not timed (the clients' criterion: `liveagent-bench scale`
/// and `transport-scale` time answers of at least 400 ms).
const MIN_TIMED_ANSWER_US: u64 = 400_000;

/// Rate histogram layout: bucket 0 is below [`RATE_LO_PM`] ‰ of real time, then steps of
/// [`RATE_STEP_PM`] ‰, the last bucket at or above `RATE_LO_PM + RATE_STEPS * RATE_STEP_PM`.
pub(crate) const RATE_LO_PM: u64 = 800;
/// Width of one rate bucket, in ‰ of real time.
pub(crate) const RATE_STEP_PM: u64 = 5;
/// Buckets between the open-ended first and last ones (0.800× to 1.100×).
pub(crate) const RATE_STEPS: usize = 60;

/// How fast answers went out: audio duration / (last delta − first delta + the
/// last delta's duration), the same formula the benchmarks' clients apply to arrivals.
#[derive(Debug)]
pub(crate) struct RateHist {
    answers: AtomicU64,
    /// Slowest rate seen, in ppm (`u64::MAX` before the first).
    min_ppm: AtomicU64,
    buckets: [AtomicU64; RATE_STEPS + 2],
}

impl Default for RateHist {
    fn default() -> Self {
        RateHist {
            answers: AtomicU64::new(0),
            min_ppm: AtomicU64::new(u64::MAX),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl RateHist {
    fn record(&self, audio_us: u64, span_us: u64) {
        let ppm = audio_us.saturating_mul(1_000_000) / span_us.max(1);
        self.answers.fetch_add(1, Ordering::Relaxed);
        self.min_ppm.fetch_min(ppm, Ordering::Relaxed);
        let pm = ppm / 1000;
        let idx = if pm < RATE_LO_PM {
            0
        } else {
            (((pm - RATE_LO_PM) / RATE_STEP_PM) as usize + 1).min(RATE_STEPS + 1)
        };
        self.buckets[idx].fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> AnswerRates {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let min = l(&self.min_ppm);
        AnswerRates {
            answers: l(&self.answers),
            min_rate: if min == u64::MAX {
                0.0
            } else {
                min as f64 / 1e6
            },
            buckets: self.buckets.iter().map(l).collect(),
        }
    }
}

/// Times one answer's audio deltas at one point of the server's sending path; plain data,
/// kept by the connection (no allocation, one clock reading per delta).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct AnswerClock {
    first: Option<Instant>,
    last: Option<Instant>,
    last_dur_us: u64,
    audio_us: u64,
}

impl AnswerClock {
    /// A delta of `dur_us` of audio went out at `at`.
    pub fn delta(&mut self, at: Instant, dur_us: u64) {
        self.first.get_or_insert(at);
        self.last = Some(at);
        self.last_dur_us = dur_us;
        self.audio_us += dur_us;
    }

    /// The answer ended, played to its end or cut short: if at least 400 ms of its audio went
    /// out, its rate is recorded in `hist` (as the benchmarks' clients count every answer of
    /// which they received 400 ms); the clock starts again either way.
    pub fn end(&mut self, hist: &RateHist) {
        if let (Some(first), Some(last)) = (self.first, self.last) {
            if self.audio_us >= MIN_TIMED_ANSWER_US {
                let span = last.duration_since(first).as_micros() as u64 + self.last_dur_us;
                hist.record(self.audio_us, span);
            }
        }
        *self = AnswerClock::default();
    }
}

impl Stats {
    /// Records that a paced audio chunk went out `late_us` after its schedule.
    pub fn chunk_sent(&self, late_us: u64) {
        self.audio_chunks_out.fetch_add(1, Ordering::Relaxed);
        self.lateness_sum_us.fetch_add(late_us, Ordering::Relaxed);
        self.lateness_max_us.fetch_max(late_us, Ordering::Relaxed);
        let ms = late_us / 1000;
        let idx = BUCKETS_MS
            .iter()
            .position(|b| ms < *b)
            .unwrap_or(BUCKETS_MS.len());
        self.lateness_hist[idx].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let chunks = l(&self.audio_chunks_out);
        let hist: Vec<u64> = self.lateness_hist.iter().map(l).collect();
        let quantile = |q: f64| -> u64 {
            let target = (chunks as f64 * q).ceil() as u64;
            let mut acc = 0;
            for (i, n) in hist.iter().enumerate() {
                acc += n;
                if acc >= target.max(1) {
                    return BUCKETS_MS.get(i).copied().unwrap_or(u64::MAX);
                }
            }
            0
        };
        StatsSnapshot {
            sessions_total: l(&self.sessions_total),
            sessions_active: l(&self.sessions_active),
            frames_in: l(&self.frames_in),
            frames_out: l(&self.frames_out),
            bytes_in: l(&self.bytes_in),
            bytes_out: l(&self.bytes_out),
            audio_chunks_out: chunks,
            lateness_mean_ms: if chunks == 0 {
                0.0
            } else {
                l(&self.lateness_sum_us) as f64 / chunks as f64 / 1000.0
            },
            lateness_max_ms: l(&self.lateness_max_us) as f64 / 1000.0,
            lateness_p50_below_ms: if chunks == 0 { 0 } else { quantile(0.5) },
            lateness_p99_below_ms: if chunks == 0 { 0 } else { quantile(0.99) },
            lateness_histogram: BUCKETS_MS
                .iter()
                .map(|b| format!("<{b}ms"))
                .chain(std::iter::once(">=200ms".to_owned()))
                .zip(hist)
                .collect(),
            responses: l(&self.responses),
            turns_detected: l(&self.turns_detected),
            client_errors: l(&self.client_errors),
            backlog_drops: l(&self.backlog_drops),
            snapshots_built: l(&self.snapshots_built),
            tcp_open: l(&self.tcp_open),
            tcp_accepted: l(&self.tcp_accepted),
            refused: l(&self.refused),
            idle_closed: l(&self.idle_closed),
            answer_rate_paced: self.answer_rate_paced.snapshot(),
            answer_rate_written: self.answer_rate_written.snapshot(),
            sessions_kept_closed: 0,
            resumable_states: 0,
            resumable_bytes: 0,
            heap: None,
            scenario_turns: Default::default(),
        }
    }
}

/// A copy of the server's counters.
#[derive(Clone, Debug, Serialize)]
pub struct StatsSnapshot {
    /// WebSocket sessions opened since start.
    pub sessions_total: u64,
    /// Sessions open now.
    pub sessions_active: u64,
    /// Frames received.
    pub frames_in: u64,
    /// Frames sent.
    pub frames_out: u64,
    /// Bytes received (frame payloads).
    pub bytes_in: u64,
    /// Bytes sent (frame payloads).
    pub bytes_out: u64,
    /// Paced response audio chunks sent.
    pub audio_chunks_out: u64,
    /// Mean lateness of a paced chunk against its schedule.
    pub lateness_mean_ms: f64,
    /// Worst lateness.
    pub lateness_max_ms: f64,
    /// Half the chunks were later by less than this (bucket bound, ms).
    pub lateness_p50_below_ms: u64,
    /// 99 % of the chunks were later by less than this (bucket bound, ms; `u64::MAX` = over 200).
    pub lateness_p99_below_ms: u64,
    /// Lateness histogram.
    pub lateness_histogram: Vec<(String, u64)>,
    /// Responses started.
    pub responses: u64,
    /// Speech turns detected by the VAD.
    pub turns_detected: u64,
    /// Client frames rejected (malformed or invalid).
    pub client_errors: u64,
    /// Connections dropped because the client let too much output pile up.
    pub backlog_drops: u64,
    /// Session snapshots with items built so far (only on demand: [`crate::LocalServer::sessions`]
    /// and `GET /debug/sessions`).
    pub snapshots_built: u64,
    /// TCP connections open now.
    pub tcp_open: u64,
    /// TCP connections accepted since start (a client that reuses keep-alive connections
    /// opens few).
    pub tcp_accepted: u64,
    /// Requests refused by the exposure checks (API key, `Host`, `Origin`, per-address cap).
    pub refused: u64,
    /// Sessions closed for being idle.
    pub idle_closed: u64,
    /// Answers (played to their end or cut short, with ≥ 400 ms of audio sent) timed when the
    /// session handed each audio delta to its connection: how well the pacing kept its
    /// schedule.
    pub answer_rate_paced: AnswerRates,
    /// The same answers timed when each delta was handed to the WebSocket (by the session
    /// itself, or by the connection's writer task when it had to wait): adds the queue
    /// between them (the socket write itself follows in the HTTP dispatcher, on the same
    /// thread).
    pub answer_rate_written: AnswerRates,
    /// Closed sessions whose snapshots are kept.
    pub sessions_kept_closed: u64,
    /// Gemini resumable states held.
    pub resumable_states: u64,
    /// Bytes held by the resumable states.
    pub resumable_bytes: u64,
    /// The allocator's figures for the whole process (glibc only; `None` elsewhere).
    pub heap: Option<crate::HeapStats>,
    /// User turns answered so far per scenario (the key of
    /// [`crate::ServerConfig::scenarios`]; `""` for the server's default brain).
    pub scenario_turns: std::collections::BTreeMap<String, u32>,
}

/// A histogram of answers' rates (audio duration / emission span; 1.0 = real time).
#[derive(Clone, Debug, Default, Serialize)]
pub struct AnswerRates {
    /// Answers timed.
    pub answers: u64,
    /// The slowest answer's rate (0 before the first).
    pub min_rate: f64,
    /// Answer counts: `[0]` below 0.800×, `[i]` for `i` in 1..=60 from
    /// `0.800 + 0.005 (i − 1)` up to `+ 0.005`, `[61]` at or above 1.100×.
    pub buckets: Vec<u64>,
}

impl AnswerRates {
    /// The lower bound of bucket `i`'s rates (0 for the first).
    pub fn bucket_floor(i: usize) -> f64 {
        if i == 0 {
            0.0
        } else {
            (RATE_LO_PM + RATE_STEP_PM * (i as u64 - 1)) as f64 / 1000.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_answer_rate_is_audio_over_its_span() {
        let hist = RateHist::default();
        let mut clock = AnswerClock::default();
        let t0 = Instant::now();
        // 25 deltas of 40 ms (1 s of audio) sent 42 ms apart: the span is 24 × 42 + 40 ms.
        for i in 0..25 {
            clock.delta(t0 + Duration::from_millis(42 * i), 40_000);
        }
        clock.end(&hist);
        let s = hist.snapshot();
        assert_eq!(s.answers, 1);
        let want = 1000.0 / (24.0 * 42.0 + 40.0);
        assert!((s.min_rate - want).abs() < 1e-6, "{}", s.min_rate);
        // 0.954: the bucket from 0.950 to 0.955.
        let i = s.buckets.iter().position(|b| *b == 1).unwrap();
        assert_eq!(AnswerRates::bucket_floor(i), 0.95);
        // Shorter than 400 ms: not counted; the clock starts again.
        clock.delta(t0, 390_000);
        clock.end(&hist);
        // Far faster than real time (two 250 ms deltas at once: 2×) lands in the last bucket.
        clock.delta(t0, 250_000);
        clock.delta(t0, 250_000);
        clock.end(&hist);
        let s = hist.snapshot();
        assert_eq!(s.answers, 2);
        assert_eq!(s.buckets[RATE_STEPS + 1], 1);
        assert!((s.min_rate - want).abs() < 1e-6);
    }
}
