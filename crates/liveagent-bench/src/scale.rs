//! Scale: N concurrent full-duplex sessions against a `liveagent-server` process, every
//! session sending 24 kHz speech-and-silence in real time (20 ms chunks) and receiving the
//! echo brain's spoken answers (paced in real time by the server).
//!
//! "Real-time" for a run means all of:
//! - every microphone chunk reached the socket writer within 20 ms (one chunk) of its
//!   schedule, p99 over every chunk of every session (`SessionStatus::mic_to_socket` with
//!   the chunk's scheduled time as its origin);
//! - every answer's audio arrived at >= 0.95x real time (audio duration / arrival span);
//! - every session got answers and none closed or reconnected.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use liveagent::{
    AudioChunk, Conversation, RecordedAudio, SessionOptions, SessionState, SynthesizedAudio,
};

use crate::common::{self, out, ServerProcess};
use crate::latency::wait_ready;

#[derive(Default)]
struct Recv {
    item: Option<Arc<str>>,
    first: Option<Instant>,
    last: Option<Instant>,
    last_dur: Duration,
    audio: Duration,
    items: u64,
    min_ratio: f64,
    ratios: Vec<f32>,
    total_audio: Duration,
}

impl Recv {
    fn close_item(&mut self) {
        if let (Some(first), Some(last)) = (self.first, self.last) {
            if self.audio >= Duration::from_millis(400) {
                let span = last.duration_since(first) + self.last_dur;
                let ratio = self.audio.as_secs_f64() / span.as_secs_f64();
                self.min_ratio = if self.items == 0 {
                    ratio
                } else {
                    self.min_ratio.min(ratio)
                };
                self.items += 1;
                self.ratios.push(ratio as f32);
            }
        }
        self.first = None;
        self.last = None;
        self.audio = Duration::ZERO;
    }

    fn on_audio(&mut self, a: &SynthesizedAudio, now: Instant) {
        if self.item.as_deref() != Some(&*a.item_id) {
            self.close_item();
            self.item = Some(a.item_id.clone());
        }
        let d = Duration::from_micros(a.audio.duration_us());
        self.first.get_or_insert(now);
        self.last = Some(now);
        self.last_dur = d;
        self.audio += d;
        self.total_audio += d;
    }
}

/// The figures of one scale run.
#[derive(Debug, Clone)]
pub struct ScaleFigures {
    pub sessions: usize,
    pub secs: f64,
    pub client_cpu_s_per_session_min: f64,
    /// The kernel's part of `client_cpu_s_per_session_min` (system time: the socket calls,
    /// wake-ups and the loopback TCP they run; compare with `liveagent-bench floor`).
    pub client_sys_s_per_session_min: f64,
    pub server_cpu_s_per_session_min: f64,
    pub client_cpu_util: f64,
    pub server_cpu_util: f64,
    pub client_rss_per_session: f64,
    /// The anonymous part of `client_rss_per_session` (`RssAnon`: heap, stacks; no code
    /// pages): what each session costs beyond the one-time paging in of the program.
    pub client_anon_per_session: f64,
    /// File-backed resident memory the client gained over the run (`VmRSS - RssAnon`: the
    /// binary's code paged in on first use), in total: a one-time cost, not per session.
    pub client_file_growth: f64,
    pub server_rss_per_session: f64,
    pub send_lag_p50_ms: f64,
    pub send_lag_p99_ms: f64,
    pub send_lag_max_ms: f64,
    pub min_answer_rate: f64,
    pub p1_answer_rate: f64,
    pub answers: u64,
    pub sessions_without_answers: usize,
    pub sessions_failed: usize,
    pub realtime: bool,
    /// The server's own timing of the same answers (since its start, like the client's).
    pub server_rates: Option<common::ServerRates>,
}

impl ScaleFigures {
    pub fn print(&self) {
        out(format!(
            "RESULT scale N={} ({:.0} s measured): client_cpu_s/session-min={:.3} client_sys_s/session-min={:.3} server_cpu_s/session-min={:.3} client_cpu={:.0}% server_cpu={:.0}% client_rss/session_KiB={:.0} client_anon/session_KiB={:.0} client_file_growth_KiB={:.0} server_rss/session_KiB={:.0} send_lag_p50_ms={:.2} p99_ms={:.2} max_ms={:.1} min_answer_rate={:.3}x p1_answer_rate={:.3}x answers={} silent_sessions={} failed_sessions={} realtime={} {} loadavg={}",
            self.sessions,
            self.secs,
            self.client_cpu_s_per_session_min,
            self.client_sys_s_per_session_min,
            self.server_cpu_s_per_session_min,
            self.client_cpu_util * 100.0,
            self.server_cpu_util * 100.0,
            self.client_rss_per_session / 1024.0,
            self.client_anon_per_session / 1024.0,
            self.client_file_growth / 1024.0,
            self.server_rss_per_session / 1024.0,
            self.send_lag_p50_ms,
            self.send_lag_p99_ms,
            self.send_lag_max_ms,
            self.min_answer_rate,
            self.p1_answer_rate,
            self.answers,
            self.sessions_without_answers,
            self.sessions_failed,
            if self.realtime { "yes" } else { "NO" },
            self.server_rates
                .as_ref()
                .map_or("server_rates=unavailable".to_owned(), |r| r.fields()),
            common::loadavg(),
        ));
    }
}

/// One run with `sessions` sessions, measured over `secs` after a warm-up. With `arbiters`
/// above 0 the sessions are spread round-robin over that many worker arbiters; `tcp_nodelay`
/// is [`SessionOptions::tcp_nodelay`].
pub async fn run(
    server_bin: PathBuf,
    sessions: usize,
    secs: u64,
    arbiters: usize,
    tcp_nodelay: bool,
) -> anyhow::Result<ScaleFigures> {
    let workers: Vec<actix::Arbiter> = (0..arbiters).map(|_| actix::Arbiter::new()).collect();
    let pattern = common::speech_pattern(3000);
    let server = ServerProcess::start(&server_bin, &["--workers".into(), "1".into()])?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let server_rss0 = common::rss_bytes(Some(server.pid()));
    let client_rss0 = common::rss_bytes(None);
    let client_anon0 = common::rss_anon_bytes(None);
    let agent = common::agent(
        &server.openai_url,
        SessionOptions {
            latency_samples: 500,
            tcp_nodelay,
            ..SessionOptions::default()
        },
    )?;
    let mut convs: Vec<Conversation> = Vec::with_capacity(sessions);
    let mut recvs = Vec::with_capacity(sessions);
    for batch in 0..sessions.div_ceil(50) {
        let start = convs.len();
        for _ in 0..50.min(sessions - batch * 50) {
            let c = match workers.get(convs.len() % workers.len().max(1)) {
                Some(w) => agent.run_on(&w.handle())?,
                None => agent.run()?,
            };
            let recv = Rc::new(RefCell::new(Recv::default()));
            let r = recv.clone();
            let mut audio = c.stream().capacity(256).only::<SynthesizedAudio>();
            actix::spawn(async move {
                while let Some(a) = audio.next().await {
                    r.borrow_mut().on_audio(&a, Instant::now());
                }
            });
            recvs.push(recv);
            convs.push(c);
        }
        wait_ready(&convs[start..], Duration::from_secs(60)).await?;
    }

    // The microphone clocks: one chunk per session every 20 ms. Sessions are spread over 20
    // slots 1 ms apart (independent microphones are not in phase), and each starts at its own
    // place in the speech pattern.
    let t0 = Instant::now();
    let stop_at = t0 + Duration::from_secs(secs + 4);
    let contexts: Vec<_> = convs.iter().map(|c| c.context().clone()).collect();
    let pat = pattern.clone();
    let driver = actix::spawn(async move {
        // Not a `tokio::time::Interval`: it made tokio write its eventfd on every tick (see
        // `clock`), a harness cost that was charged to the client.
        let mut tick = crate::clock::MicClock::new(t0, Duration::from_millis(1));
        let mut m: usize = 0;
        loop {
            let scheduled = tick.tick().await;
            if scheduled >= stop_at {
                break;
            }
            let (k, slot) = (m / 20, m % 20);
            for (i, ctx) in contexts.iter().enumerate().skip(slot).step_by(20) {
                let samples = pat[(k + i * 7) % pat.len()].clone();
                ctx.publish(RecordedAudio {
                    audio: AudioChunk::new(samples, 24_000).with_origin(scheduled),
                });
            }
            m += 1;
        }
    });
    // Warm up 4 s (first answers, allocator settling), then measure.
    tokio::time::sleep(Duration::from_secs(4)).await;
    // On stderr, so an outside profiler (`perf stat -p`) can start with the window.
    eprintln!("scale: measuring {sessions} sessions for {secs} s");
    let c_cpu0 = common::cpu_time(None);
    let (_, c_sys0) = common::cpu_split(None);
    let s_cpu0 = common::cpu_time(Some(server.pid()));
    let m0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let wall = m0.elapsed().as_secs_f64();
    let c_cpu = (common::cpu_time(None) - c_cpu0).as_secs_f64();
    let c_sys = common::cpu_split(None).1 - c_sys0;
    let s_cpu = (common::cpu_time(Some(server.pid())) - s_cpu0).as_secs_f64();
    let client_rss = common::rss_bytes(None);
    let client_anon = common::rss_anon_bytes(None);
    let server_rss = common::rss_bytes(Some(server.pid()));
    let _ = driver.await;
    let server_rates = server.answer_rates().await;

    let mut lags = Vec::new();
    let mut failed = 0;
    for c in &convs {
        match c.status().await {
            Some(s) => {
                if s.state != SessionState::Ready || s.reconnects > 0 || s.error.is_some() {
                    failed += 1;
                }
                lags.extend_from_slice(s.mic_to_socket.micros());
            }
            None => failed += 1,
        }
    }
    let mut answers = 0;
    let mut min_ratio = f64::INFINITY;
    let mut silent = 0;
    let mut ratios: Vec<f32> = Vec::new();
    for r in &recvs {
        let mut r = r.borrow_mut();
        r.close_item();
        if r.items == 0 {
            silent += 1;
        } else {
            min_ratio = min_ratio.min(r.min_ratio);
        }
        answers += r.items;
        ratios.extend_from_slice(&r.ratios);
    }
    ratios.sort_by(|a, b| a.total_cmp(b));
    let p1_ratio = ratios.get(ratios.len() / 100).map_or(0.0, |r| *r as f64);
    if answers == 0 {
        min_ratio = 0.0;
    }
    let (p50, p99, max) = common::percentiles(&mut lags);
    let minutes = wall / 60.0;
    let n = sessions as f64;
    let figures = ScaleFigures {
        sessions,
        secs: wall,
        client_cpu_s_per_session_min: c_cpu / (n * minutes),
        client_sys_s_per_session_min: c_sys / (n * minutes),
        server_cpu_s_per_session_min: s_cpu / (n * minutes),
        client_cpu_util: c_cpu / wall,
        server_cpu_util: s_cpu / wall,
        client_rss_per_session: client_rss.saturating_sub(client_rss0) as f64 / n,
        client_anon_per_session: client_anon.saturating_sub(client_anon0) as f64 / n,
        client_file_growth: (client_rss.saturating_sub(client_anon) as f64)
            - (client_rss0.saturating_sub(client_anon0) as f64),
        server_rss_per_session: server_rss.saturating_sub(server_rss0) as f64 / n,
        send_lag_p50_ms: p50 as f64 / 1000.0,
        send_lag_p99_ms: p99 as f64 / 1000.0,
        send_lag_max_ms: max as f64 / 1000.0,
        min_answer_rate: min_ratio,
        p1_answer_rate: p1_ratio,
        answers,
        sessions_without_answers: silent,
        sessions_failed: failed,
        realtime: p99 <= 20_000 && min_ratio >= 0.95 && silent == 0 && failed == 0,
        server_rates,
    };
    for c in convs {
        c.stop().await;
    }
    for w in &workers {
        w.stop();
    }
    drop(server);
    Ok(figures)
}
