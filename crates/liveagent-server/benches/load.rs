//! Load test: many concurrent OpenAI Realtime sessions against one `liveagent-server`
//! process, each streaming 24 kHz audio in real time and getting echo replies.
//!
//! ```text
//! cargo bench -p liveagent-server --bench load                      # 500 sessions, 15 s
//! LOAD_SESSIONS=100 LOAD_SECONDS=10 cargo bench -p liveagent-server --bench load
//! LOAD_PROTOCOL=gemini cargo bench -p liveagent-server --bench load   # Gemini Live, 16 kHz in
//! ```
//!
//! The server runs as a child process (the `liveagent-server` binary, 2 workers) so that its
//! CPU time can be read from /proc apart from the clients'. Figures printed:
//! - server-side lateness of each paced response chunk against its schedule;
//! - client-side jitter: arrival time of each response chunk against
//!   `first chunk arrival + k * chunk`;
//! - client send lag (how late the clients themselves sent audio: if large, the client
//!   side was the bottleneck and the figures are not about the server);
//! - CPU time of the server and of the client process.
//!
//! It prints figures; it asserts nothing about timing.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use awc::ws::{Frame, Message};
use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};

const CHUNK_MS: u64 = 40;
const RATE: usize = 24_000;

#[derive(Default)]
struct Results {
    connected: usize,
    failed: usize,
    stuck: usize,
    send_lag_ms: Vec<f64>,
    jitter_ms: Vec<f64>,
    audio_in_s: f64,
    audio_out_s: f64,
    responses: usize,
    errors: usize,
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// Ends the server child (SIGKILL through `kill`, no libc dependency).
fn unsafe_kill(pid: u32) {
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// 1.5 s of tone then 2.5 s of silence, repeating; `phase_ms` shifts the pattern.
fn pattern(total_ms: u64, phase_ms: u64, rate: usize) -> Vec<i16> {
    let n = rate * total_ms as usize / 1000;
    (0..n)
        .map(|i| {
            let t_ms = (i * 1000 / rate) as u64 + phase_ms;
            if t_ms % 4000 < 1500 {
                ((i as f32 * 440.0 * std::f32::consts::TAU / rate as f32).sin() * 8000.0) as i16
            } else {
                0
            }
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Proto {
    OpenAi,
    Gemini,
}

async fn session(
    proto: Proto,
    url: String,
    seconds: u64,
    phase_ms: u64,
    results: Arc<Mutex<Results>>,
) {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let conn = client.ws(&url).max_frame_size(16 << 20).connect().await;
    let framed = match conn {
        Ok((_, f)) => f,
        Err(e) => {
            eprintln!("connect failed: {e}");
            results.lock().unwrap().failed += 1;
            return;
        }
    };
    let (mut sink, mut stream) = framed.split();
    // OpenAI takes 24 kHz; Gemini clients send 16 kHz (the server resamples).
    let in_rate = if proto == Proto::Gemini { 16_000 } else { RATE };
    let audio = pattern(seconds * 1000, phase_ms, in_rate);
    let chunk = in_rate * CHUNK_MS as usize / 1000;
    let chunks: Vec<String> = audio
        .chunks(chunk)
        .map(|c| {
            let bytes: Vec<u8> = c.iter().flat_map(|s| s.to_le_bytes()).collect();
            let data = base64::engine::general_purpose::STANDARD.encode(bytes);
            match proto {
                Proto::OpenAi => json!({"type": "input_audio_buffer.append", "audio": data}),
                Proto::Gemini => json!({"realtimeInput": {"audio":
                    {"mimeType": "audio/pcm;rate=16000", "data": data}}}),
            }
            .to_string()
        })
        .collect();
    if proto == Proto::Gemini {
        let setup = json!({"setup": {"model": "models/gemini-live-2.5-flash-preview"}});
        if sink
            .send(Message::Text(setup.to_string().into()))
            .await
            .is_err()
        {
            results.lock().unwrap().failed += 1;
            return;
        }
    }
    let mut send_lag = Vec::with_capacity(chunks.len());
    let mut jitter = Vec::new();
    let mut audio_out_samples = 0usize;
    let mut responses = 0usize;
    let mut errors = 0usize;
    let mut resp_start: Option<(Instant, usize)> = None;
    let start = Instant::now();
    let mut next = 0usize;
    let end_at = start + Duration::from_millis(seconds * 1000 + 2500);
    loop {
        let due = start + Duration::from_millis(next as u64 * CHUNK_MS);
        tokio::select! {
            item = stream.next() => match item {
                Some(Ok(Frame::Text(b))) | Some(Ok(Frame::Binary(b))) => {
                    let Ok(v) = serde_json::from_slice::<Value>(&b) else { continue };
                    let (delta, done, error) = match proto {
                        Proto::OpenAi => match v["type"].as_str().unwrap_or("") {
                            "response.output_audio.delta" => (v["delta"].as_str().map(str::to_owned), false, false),
                            "response.done" => (None, true, false),
                            "error" => (None, false, true),
                            _ => (None, false, false),
                        },
                        Proto::Gemini => {
                            let sc = &v["serverContent"];
                            let d = sc["modelTurn"]["parts"][0]["inlineData"]["data"].as_str().map(str::to_owned);
                            (d, sc["turnComplete"] == true, false)
                        }
                    };
                    if let Some(delta) = delta {
                        let now = Instant::now();
                        let n = delta.len() / 4 * 3 / 2;
                        match resp_start {
                            None => resp_start = Some((now, n)),
                            Some((t0, sent)) => {
                                let expected = t0 + Duration::from_micros(sent as u64 * 1_000_000 / RATE as u64);
                                let late = now.saturating_duration_since(expected).as_secs_f64() * 1000.0;
                                jitter.push(late);
                                resp_start = Some((t0, sent + n));
                            }
                        }
                        audio_out_samples += n;
                    }
                    if done { responses += 1; resp_start = None; }
                    if error { errors += 1; }
                }
                Some(Ok(_)) => {}
                _ => break,
            },
            _ = tokio::time::sleep_until(due.into()), if next < chunks.len() => {
                let lag = Instant::now().saturating_duration_since(due).as_secs_f64() * 1000.0;
                send_lag.push(lag);
                if sink.send(Message::Text(chunks[next].clone().into())).await.is_err() { break; }
                next += 1;
            },
            _ = tokio::time::sleep_until(end_at.into()) => break,
        }
    }
    let _ = sink.send(Message::Close(None)).await;
    let mut r = results.lock().unwrap();
    r.connected += 1;
    r.send_lag_ms.extend(send_lag);
    r.jitter_ms.extend(jitter);
    r.audio_in_s += audio.len() as f64 / in_rate as f64;
    r.audio_out_s += audio_out_samples as f64 / RATE as f64;
    r.responses += responses;
    r.errors += errors;
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sessions = env_num("LOAD_SESSIONS", 500) as usize;
    let seconds = env_num("LOAD_SECONDS", 15);
    let workers = env_num("LOAD_WORKERS", 2);
    let mut child = Command::new(env!("CARGO_BIN_EXE_liveagent-server"))
        .args(["--port", "0", "--workers", &workers.to_string()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start liveagent-server");
    let pid = child.id();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let addr = line.trim().rsplit(' ').next().unwrap().to_owned();
    // Keep draining the child's stdout so that it can never block on a full pipe.
    std::thread::spawn(move || {
        let mut sink = String::new();
        while out.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
            sink.clear();
        }
    });
    let proto = match std::env::var("LOAD_PROTOCOL").as_deref() {
        Ok("gemini") => Proto::Gemini,
        _ => Proto::OpenAi,
    };
    let url = match proto {
        Proto::OpenAi => format!("ws://{addr}/v1/realtime?model=gpt-realtime"),
        Proto::Gemini => format!(
            "ws://{addr}/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
        ),
    };
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("machine load average before: {}", loadavg.trim());
    println!(
        "protocol: {}",
        if proto == Proto::Gemini {
            "gemini (16 kHz in, 24 kHz out)"
        } else {
            "openai (24 kHz both ways)"
        }
    );
    println!("load: {sessions} sessions x {seconds} s of audio in {CHUNK_MS} ms chunks -> {addr} ({workers} workers)");

    // Watchdog: the run stops by itself even if something hangs.
    let limit = Duration::from_secs(seconds + 90 + sessions as u64 / 50);
    let addr_w = addr.clone();
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("load: watchdog: no result after {limit:?}; stopping");
        if let Ok(o) = Command::new("curl")
            .args(["-s", "-m", "5", &format!("http://{addr_w}/debug/stats")])
            .output()
        {
            eprintln!("server stats: {}", String::from_utf8_lossy(&o.stdout));
        }
        unsafe_kill(pid);
        std::process::exit(2);
    });
    let results = Arc::new(Mutex::new(Results::default()));
    let cpu0 = cpu_seconds(pid);
    let self0 = cpu_seconds(std::process::id());
    let wall0 = Instant::now();
    let sys = actix_rt::System::new();
    sys.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..sessions {
            let phase = (i as u64 * 397) % 4000;
            let (url, results) = (url.clone(), results.clone());
            tasks.push(actix_rt::spawn(async move {
                // A session that has not finished 30 s after its schedule counts as stuck.
                let limit = Duration::from_secs(seconds + 30);
                let run = session(proto, url, seconds, phase, results.clone());
                if tokio::time::timeout(limit, run).await.is_err() {
                    results.lock().unwrap().stuck += 1;
                }
            }));
            actix_rt::time::sleep(Duration::from_millis(4)).await;
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    let wall = wall0.elapsed().as_secs_f64();
    let server_cpu = cpu_seconds(pid) - cpu0;
    let client_cpu = cpu_seconds(std::process::id()) - self0;
    let stats = Command::new("curl")
        .args(["-s", &format!("http://{addr}/debug/stats")])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();

    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("machine load average after: {}", loadavg.trim());
    let mut r = results.lock().unwrap();
    println!(
        "sessions: {} completed, {} failed to connect",
        r.connected, r.failed
    );
    println!(
        "audio: {:.0} s sent by clients, {:.0} s of echo received, {} responses/turns, {} error events",
        r.audio_in_s, r.audio_out_s, r.responses, r.errors
    );
    let (mut lag, mut jit) = (
        std::mem::take(&mut r.send_lag_ms),
        std::mem::take(&mut r.jitter_ms),
    );
    println!(
        "client send lag (ms): p50 {:.1}  p99 {:.1}  max {:.1}",
        quantile(&mut lag, 0.5),
        quantile(&mut lag, 0.99),
        quantile(&mut lag, 1.0)
    );
    println!(
        "response chunk arrival vs real-time schedule (ms late): p50 {:.1}  p99 {:.1}  max {:.1}  ({} chunks)",
        quantile(&mut jit, 0.5),
        quantile(&mut jit, 0.99),
        quantile(&mut jit, 1.0),
        jit.len()
    );
    println!(
        "CPU: server {:.1} s ({:.0}% of one core over {:.1} s wall), clients {:.1} s",
        server_cpu,
        server_cpu / wall * 100.0,
        wall,
        client_cpu
    );
    if let Ok(v) = serde_json::from_str::<Value>(&stats) {
        println!(
            "server stats: chunks {} | lateness mean {:.2} ms, p50 < {} ms, p99 < {} ms, max {:.1} ms | frames in {} out {}",
            v["audio_chunks_out"], v["lateness_mean_ms"].as_f64().unwrap_or(0.0),
            v["lateness_p50_below_ms"], v["lateness_p99_below_ms"],
            v["lateness_max_ms"].as_f64().unwrap_or(0.0), v["frames_in"], v["frames_out"]
        );
        println!("server lateness histogram: {}", v["lateness_histogram"]);
    }
}
