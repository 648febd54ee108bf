//! Memory per session: N OpenAI Realtime sessions connected to one `liveagent-server` child
//! process and talking in real time, with the server's resident memory (RSS) read as they go.
//!
//! ```text
//! cargo bench -p liveagent-server --bench sessions                        # 200 sessions, 60 s
//! SESSIONS=500 TALK_SECS=120 cargo bench -p liveagent-server --bench sessions
//! ```
//!
//! The server runs as users run it: the release binary, echo brain, real-time pacing, one
//! worker thread (as `liveagent-bench scale` starts it). Every session streams the scale
//! benchmark's audio: the spoken sentence "What is the weather like today?" (espeak-ng,
//! 24 kHz PCM16), then 3 s of silence, repeating, in 20 ms `input_audio_buffer.append` frames
//! on a real-time schedule, each session at its own place in the pattern. The server's VAD
//! ends each utterance and the echo brain speaks it back, paced in real time; the client
//! reads everything it is sent.
//!
//! It prints, without asserting anything:
//! - the server's RSS when idle, once the N sessions are connected (before any audio), and
//!   every 10 s of talking, each as a delta from the idle server divided by N;
//! - the allocator's bytes in use (glibc `mallinfo2`, from `GET /debug/stats`) the same way,
//!   which tells live data from memory the allocator keeps;
//! - responses and turns the server counted, and the bytes the clients received;
//! - the RSS once every session has closed.

#[path = "../tests/raw/mod.rs"]
mod raw;
#[path = "support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use support::{env_num, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const OPENAI: &str = "/v1/realtime?model=gpt-realtime";

/// The masked `input_audio_buffer.append` frames of the speech-and-silence pattern, 20 ms each.
fn pattern_frames() -> Vec<Arc<[u8]>> {
    let mut pcm = liveagent_testkit::speech_pcm("What is the weather like today?", 24_000);
    pcm.extend(std::iter::repeat_n(0i16, 24 * 3000));
    pcm.chunks(480)
        .map(|c| {
            let mut bytes = Vec::with_capacity(960);
            for i in 0..480 {
                bytes.extend_from_slice(&c.get(i).copied().unwrap_or(0).to_le_bytes());
            }
            let audio = base64::engine::general_purpose::STANDARD.encode(bytes);
            let text = json!({"type": "input_audio_buffer.append", "audio": audio}).to_string();
            Arc::from(raw::Raw::text_frame(&text))
        })
        .collect()
}

struct Figures {
    idle_kib: u64,
    idle_heap: u64,
}

impl Figures {
    fn line(&self, what: &str, server: &Server, s: &Value, n: u64) {
        let rss = server.memory().rss;
        let heap = s["heap"]["in_use_bytes"].as_u64().unwrap_or(0);
        let free = s["heap"]["free_bytes"].as_u64().unwrap_or(0);
        println!(
            "{what:<28} RSS {rss:>8} KiB = {:>6.1} KiB/session over idle | heap in use {:>8} KiB = {:>6.1} KiB/session, free in arenas {:>7} KiB | responses {} turns {} sessions open {}",
            rss.saturating_sub(self.idle_kib) as f64 / n as f64,
            heap / 1024,
            heap.saturating_sub(self.idle_heap) as f64 / 1024.0 / n as f64,
            free / 1024,
            s["responses"],
            s["turns_detected"],
            s["sessions_active"],
        );
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n = env_num("SESSIONS", 200);
    let talk = env_num("TALK_SECS", 60);
    let frames = pattern_frames();
    // `SERVER_BIN` runs another build of the server (e.g. an older one, for a before/after).
    let server = Server::start(&["--workers", "1"]);
    let addr = server.addr;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        println!(
            "sessions: {n} OpenAI sessions, {talk} s of talking; machine load average before: {}",
            support::loadavg()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        let s = server.stats().await;
        let fig = Figures {
            idle_kib: server.memory().rss,
            idle_heap: s["heap"]["in_use_bytes"].as_u64().unwrap_or(0),
        };
        fig.line("idle server", &server, &s, n);
        let mut streams = Vec::new();
        for _ in 0..n {
            let mut ws = raw::open(addr, OPENAI, &[], None).await.expect_upgraded();
            ws.until("session.created").await;
            streams.push(ws.into_stream());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        fig.line("connected, silent", &server, &server.stats().await, n);

        let received = Arc::new(AtomicU64::new(0));
        let t0 = tokio::time::Instant::now();
        let stop = t0 + Duration::from_secs(talk);
        let mut tasks = Vec::new();
        for (i, stream) in streams.into_iter().enumerate() {
            let (mut rd, mut wr) = stream.into_split();
            let received = received.clone();
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(k) = rd.read(&mut buf).await {
                    if k == 0 {
                        break;
                    }
                    received.fetch_add(k as u64, Ordering::Relaxed);
                }
            }));
            let frames = frames.clone();
            tasks.push(tokio::spawn(async move {
                // Sessions start 1 ms apart in 20 slots and at different places in the pattern.
                let start = t0 + Duration::from_millis((i % 20) as u64);
                let mut tick = tokio::time::interval_at(start, Duration::from_millis(20));
                let mut k = i * 7;
                loop {
                    if tick.tick().await >= stop {
                        break;
                    }
                    if wr.write_all(&frames[k % frames.len()]).await.is_err() {
                        return;
                    }
                    k += 1;
                }
                let _ = wr.write_all(&raw::Raw::close_frame(1000)).await;
            }));
        }
        let mut next = Duration::from_secs(10);
        while next <= Duration::from_secs(talk) {
            tokio::time::sleep_until(t0 + next).await;
            fig.line(
                &format!("talking {:>3} s", next.as_secs()),
                &server,
                &server.stats().await,
                n,
            );
            next += Duration::from_secs(10);
        }
        let started = Instant::now();
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
        }
        loop {
            let s = server.stats().await;
            if s["sessions_active"] == 0 || started.elapsed() > Duration::from_secs(30) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        fig.line("all closed", &server, &server.stats().await, n);
        println!(
            "clients received {} MiB in {:.0} s",
            received.load(Ordering::Relaxed) >> 20,
            t0.elapsed().as_secs_f64()
        );
    });
}
