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

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const OPENAI: &str = "/v1/realtime?model=gpt-realtime";

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn stats(addr: SocketAddr) -> Value {
    let (_, body) = raw::http(addr, "GET", "/debug/stats", &[]).await;
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

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
    fn line(&self, what: &str, pid: u32, s: &Value, n: u64) {
        let rss = rss_kib(pid);
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
    let bin = std::env::var("SERVER_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_liveagent-server").to_owned());
    let mut child = Command::new(bin)
        .args(["--port", "0", "--workers", "1"])
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start liveagent-server");
    let pid = child.id();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let addr: SocketAddr = line.trim().rsplit(' ').next().unwrap().parse().unwrap();
    std::thread::spawn(move || {
        let mut sink = String::new();
        while out.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
            sink.clear();
        }
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!(
            "sessions: {n} OpenAI sessions, {talk} s of talking; machine load average before: {}",
            loadavg.trim()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        let s = stats(addr).await;
        let fig = Figures {
            idle_kib: rss_kib(pid),
            idle_heap: s["heap"]["in_use_bytes"].as_u64().unwrap_or(0),
        };
        fig.line("idle server", pid, &s, n);
        let mut streams = Vec::new();
        for _ in 0..n {
            let mut ws = raw::open(addr, OPENAI, &[], None).await.expect_upgraded();
            ws.until("session.created").await;
            streams.push(ws.into_stream());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        fig.line("connected, silent", pid, &stats(addr).await, n);

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
                pid,
                &stats(addr).await,
                n,
            );
            next += Duration::from_secs(10);
        }
        let started = Instant::now();
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
        }
        loop {
            let s = stats(addr).await;
            if s["sessions_active"] == 0 || started.elapsed() > Duration::from_secs(30) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        fig.line("all closed", pid, &stats(addr).await, n);
        println!(
            "clients received {} MiB in {:.0} s",
            received.load(Ordering::Relaxed) >> 20,
            t0.elapsed().as_secs_f64()
        );
    });
    let _ = child.kill();
    let _ = child.wait();
}
