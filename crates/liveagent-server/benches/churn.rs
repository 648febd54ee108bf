//! Churn benchmark: waves of sessions opening, talking, abusing the server and closing, with
//! the server's resident memory (RSS) read after each wave. A bounded server comes back to its
//! baseline after every wave; one that keeps something per session or per frame does not.
//!
//! ```text
//! cargo bench -p liveagent-server --bench churn                  # 10 minutes of waves
//! CHURN_SECS=120 cargo bench -p liveagent-server --bench churn   # a shorter run
//! ```
//!
//! Each wave runs, concurrently, against one `liveagent-server` child process (`--fast`):
//! - 8 OpenAI talkers: a spoken turn with server VAD (1 s tone), an echoed answer, a text turn,
//!   a truncation, then close;
//! - 4 OpenAI flooders with turn detection off: 20 appends of 1 MiB of audio (past the 10 min
//!   cap they get `input_audio_buffer_full`), then commit and close;
//! - 4 huge-item sessions: three 4 MiB text items each, a response, then close;
//! - 2 ping flooders that never read (small receive buffer): pings until the server drops
//!   them at the 32 MiB backlog limit;
//! - 6 Gemini sessions with resumption: 8 text turns each, then close (each keeps one small
//!   resumable state, which lives on for the 2 h handle lifetime);
//! - 4 bad clients: malformed frames, bad session.update, bad Gemini frames.
//!
//! The server runs with `--closed-sessions-bytes 262144 --resumption-ttl-s 5`: the closed
//! session history and the resumable states are kept on purpose (bounded by those limits), so
//! the benchmark keeps them small to see what else stays; with a 5 s lifetime, the states
//! left after a wave are that wave's, as after the first one.
//!
//! After the wave the benchmark waits until the server reports no open session and no open
//! TCP connection, lets it settle for 1 s, and reads VmRSS from /proc. The baseline is the RSS
//! after the first (warm-up) wave: allocator arenas and worker buffers grow once, on first use.
//! It prints figures; it asserts nothing.

#[path = "../tests/raw/mod.rs"]
mod raw;
#[path = "support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::json;
use support::{env_num, kib, Server};

const OPENAI: &str = "/v1/realtime?model=gpt-realtime";
const GEMINI: &str =
    "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";

fn b64(samples: &[i16]) -> String {
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn tone(ms: usize, amp: f32) -> Vec<i16> {
    (0..ms * 24)
        .map(|i| ((i as f32 * 440.0 * std::f32::consts::TAU / 24_000.0).sin() * amp) as i16)
        .collect()
}

async fn talker(addr: SocketAddr) {
    let mut ws = raw::open(addr, OPENAI, &[], None).await.expect_upgraded();
    ws.until("session.created").await;
    let mut audio = vec![0i16; 24 * 300];
    audio.extend(tone(1000, 8000.0));
    audio.extend(vec![0i16; 24 * 700]);
    for chunk in audio.chunks(960) {
        let _ = ws
            .send_json(&json!({"type": "input_audio_buffer.append", "audio": b64(chunk)}))
            .await;
    }
    let ev = ws.until("response.done").await;
    let item = ev
        .iter()
        .find(|e| e["type"] == "response.output_item.done")
        .map(|e| e["item"]["id"].clone());
    let _ = ws
        .send_json(
            &json!({"type": "conversation.item.create", "item": {"type": "message",
            "role": "user", "content": [{"type": "input_text", "text": "and now in words"}]}}),
        )
        .await;
    let _ = ws.send_json(&json!({"type": "response.create"})).await;
    ws.until("response.done").await;
    if let Some(id) = item {
        let _ = ws
            .send_json(&json!({"type": "conversation.item.truncate", "item_id": id,
                "content_index": 0, "audio_end_ms": 100}))
            .await;
        ws.until("conversation.item.truncated").await;
    }
    let _ = ws.send_close(1000).await;
    ws.until_close().await;
}

async fn flooder(addr: SocketAddr) {
    let mut ws = raw::open(addr, OPENAI, &[], None).await.expect_upgraded();
    ws.until("session.created").await;
    let _ = ws
        .send_json(
            &json!({"type": "session.update", "session": {"type": "realtime",
            "audio": {"input": {"turn_detection": null}}}}),
        )
        .await;
    ws.until("session.updated").await;
    let mib = b64(&vec![1000i16; 512 * 1024]);
    for _ in 0..20 {
        let _ = ws
            .send_json(&json!({"type": "input_audio_buffer.append", "audio": mib}))
            .await;
    }
    let _ = ws
        .send_json(&json!({"type": "input_audio_buffer.commit"}))
        .await;
    ws.until("conversation.item.done").await;
    let _ = ws.send_close(1000).await;
    ws.until_close().await;
}

async fn huge_items(addr: SocketAddr) {
    let mut ws = raw::open(addr, OPENAI, &[], None).await.expect_upgraded();
    ws.until("session.created").await;
    let big = "w".repeat(4 << 20);
    for _ in 0..3 {
        let _ = ws
            .send_json(
                &json!({"type": "conversation.item.create", "item": {"type": "message",
                "role": "user", "content": [{"type": "input_text", "text": big}]}}),
            )
            .await;
        ws.until("conversation.item.done").await;
    }
    let _ = ws
        .send_json(&json!({"type": "response.create", "response": {"output_modalities": ["text"]}}))
        .await;
    ws.until("response.done").await;
    let _ = ws.send_close(1000).await;
    ws.until_close().await;
}

async fn ping_flooder(addr: SocketAddr) {
    let mut ws = raw::open(addr, OPENAI, &[], Some(4096))
        .await
        .expect_upgraded();
    let batch: Vec<u8> = (0..2000)
        .flat_map(|_| raw::Raw::ping_frame(&[1u8; 125]))
        .collect();
    // Up to 100 MB of pings; the server drops the connection well before.
    for _ in 0..400 {
        match tokio::time::timeout(Duration::from_secs(3), ws.send_bytes(&batch)).await {
            Ok(Ok(())) => {}
            _ => break,
        }
    }
}

async fn gemini(addr: SocketAddr) {
    let mut ws = raw::open(addr, GEMINI, &[], None).await.expect_upgraded();
    let _ = ws
        .send_json(&json!({"setup": {"model": "models/x",
            "generationConfig": {"responseModalities": ["TEXT"]}, "sessionResumption": {}}}))
        .await;
    // setupComplete, then the first resumption update.
    ws.json().await;
    ws.json().await;
    for turn in 0..8 {
        let _ = ws
            .send_json(
                &json!({"realtimeInput": {"text": format!("turn {turn} {}", "t".repeat(2000))}}),
            )
            .await;
        // The answer, turnComplete, then a new handle.
        loop {
            let v = ws.json().await;
            if v.get("sessionResumptionUpdate").is_some() {
                break;
            }
        }
    }
    let _ = ws.send_close(1000).await;
    ws.until_close().await;
}

async fn bad_client(addr: SocketAddr, i: usize) {
    if i.is_multiple_of(2) {
        let mut ws = raw::open(addr, OPENAI, &[], None).await.expect_upgraded();
        ws.until("session.created").await;
        for f in [
            "{not json",
            r#"{"type": "session.update", "session": {"type": "realtime", "instructions": 42}}"#,
            r#"{"type": "conversation.item.truncate", "item_id": "x", "content_index": "zero", "audio_end_ms": 1}"#,
            r#"{"type": "bogus"}"#,
        ] {
            let _ = ws.send_text(f).await;
            ws.until("error").await;
        }
        let _ = ws.send_close(1000).await;
        ws.until_close().await;
    } else {
        let mut ws = raw::open(addr, GEMINI, &[], None).await.expect_upgraded();
        let _ = ws.send_text("{\"setup\": 5}").await;
        ws.until_close().await;
    }
}

async fn wave(addr: SocketAddr) {
    let mut tasks = Vec::new();
    for _ in 0..8 {
        tasks.push(tokio::spawn(talker(addr)));
    }
    for _ in 0..4 {
        tasks.push(tokio::spawn(flooder(addr)));
        tasks.push(tokio::spawn(huge_items(addr)));
    }
    for _ in 0..2 {
        tasks.push(tokio::spawn(ping_flooder(addr)));
    }
    for _ in 0..6 {
        tasks.push(tokio::spawn(gemini(addr)));
    }
    for i in 0..4 {
        tasks.push(tokio::spawn(bad_client(addr, i)));
    }
    for t in tasks {
        if let Err(e) = t.await {
            println!("  a client task failed: {e}");
        }
    }
}

async fn settle(server: &Server) {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let s = server.stats().await;
        // The stats request itself is one open connection.
        if s["sessions_active"] == 0 && s["tcp_open"].as_u64().unwrap_or(9) <= 1 {
            break;
        }
        if Instant::now() > end {
            println!("  (sessions still open after 60 s: {s})");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let secs = env_num("CHURN_SECS", 600);
    let extra = std::env::var("CHURN_SERVER_ARGS").unwrap_or_default();
    let mut args = vec!["--workers", "2", "--fast"];
    // Retained by design, and bounded: kept small here so that they cannot hide a leak.
    args.extend([
        "--closed-sessions-bytes",
        "262144",
        "--resumption-ttl-s",
        "5",
    ]);
    // Extra server arguments, e.g. `--trim-interval-ms 0` to see what trimming does.
    args.extend(extra.split_whitespace());
    let server = Server::start(&args);
    let addr = server.addr;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        println!("machine load average before: {}", support::loadavg());
        tokio::time::sleep(Duration::from_millis(300)).await;
        let idle = server.memory();
        println!(
            "server RSS idle at start: {} KiB (anonymous {} KiB, file-backed {} KiB)",
            idle.rss, idle.anon, idle.file
        );
        let start = Instant::now();
        let mut baseline = 0u64;
        let mut worst = 0.0f64;
        let mut within = 0;
        let mut n = 0;
        while n == 0 || start.elapsed() < Duration::from_secs(secs) {
            let t = Instant::now();
            let sampler = server.sample_peak();
            wave(addr).await;
            let wave_s = t.elapsed().as_secs_f64();
            let peak = sampler.stop();
            settle(&server).await;
            let after = server.memory();
            let at = server.breakdown();
            if n == 0 {
                baseline = after.rss;
            }
            let ratio = after.rss as f64 / baseline as f64;
            if n > 0 {
                worst = worst.max(ratio);
                if ratio <= 1.1 {
                    within += 1;
                }
            }
            let s = server.stats().await;
            println!(
                "wave {n:>3}: {wave_s:5.1} s, RSS peak {peak:>7} KiB, after {:>7} KiB = {:5.1} % of baseline \
                 (main heap {} KiB, other arenas {} KiB, other anonymous {} KiB, file-backed {} KiB); \
                 heap in use {} KiB, free in arenas {} KiB; \
                 sessions total {}, backlog drops {}, kept closed {}, resumable {} ({} B), refused {}",
                after.rss,
                ratio * 100.0,
                at.main_heap,
                at.arenas,
                at.other_anon,
                at.file,
                kib(&s["heap"]["in_use_bytes"]),
                kib(&s["heap"]["free_bytes"]),
                s["sessions_total"],
                s["backlog_drops"],
                s["sessions_kept_closed"],
                s["resumable_states"],
                s["resumable_bytes"],
                s["refused"],
            );
            n += 1;
        }
        println!(
            "churn: {n} waves in {:.0} s; idle {} KiB, baseline (after wave 0) {baseline} KiB, \
             worst wave-end RSS {:.1} % of baseline, {within} of {} waves within 10 %",
            start.elapsed().as_secs_f64(),
            idle.rss,
            worst * 100.0,
            n - 1,
        );
    });
}
