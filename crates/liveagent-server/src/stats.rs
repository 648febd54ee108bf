//! Server-wide counters, used by the load benchmark and `GET /debug/stats`.

use std::sync::atomic::{AtomicU64, Ordering};

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
