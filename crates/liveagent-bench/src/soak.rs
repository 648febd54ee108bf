//! Soak: N conversations for a long time against a `liveagent-server` process whose scripted
//! model injects faults at random (seeded) on every turn: dropped connections mid-answer,
//! silence, audio floods (15 s of audio sent as fast as possible), late transcript deltas
//! for an unknown response, oversized transcripts (past the 64 KiB item cap), and tool calls
//! (faults on the scenario's first 300 turns, counted across all conversations).
//!
//! Prints the client's RSS every `--sample-secs`, then: tool calls requested vs answered on
//! the bus (lost must be 0), panics, and how many conversations are alive at the end.
//! Nothing is asserted; the figures go to docs/reliability.md.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use liveagent::{LiveEvent, SessionOptions, SessionState, Tool, ToolError};
use serde_json::{json, Value};

use crate::common::{self, out, ServerProcess};
use crate::latency::wait_ready;

/// A small deterministic generator (xorshift), so a run can be repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Writes the fault scenario (JSON) and returns its path.
fn fault_scenario(turns: usize, seed: u64) -> anyhow::Result<PathBuf> {
    let mut rng = Rng(seed | 1);
    let long_text = "word ".repeat(14 * 1024); // 70 KB of transcript: past the 64 KiB cap
    let mut list: Vec<Value> = Vec::with_capacity(turns);
    for i in 0..turns {
        let turn = match rng.next() % 20 {
            0..=5 => {
                json!({"call": "soak_tool", "args": {"n": i}, "then_say": "Tool said {output}"})
            }
            6 | 7 => {
                json!({"steps": [{"say": "This answer is cut.", "audio_ms": 3000, "drop_after_ms": 300}]})
            }
            8 | 9 => json!({"steps": [{"wait_ms": 2000}, {"say": "After a silence."}]}),
            10 => json!({"steps": [{"say": "A flood of audio.", "audio_ms": 15000}]}),
            // One turn in 200: the scenario file stays small.
            11 if rng.next().is_multiple_of(10) => {
                json!({"steps": [{"say": long_text, "audio_ms": 500}]})
            }
            12 => {
                json!({"steps": [{"call": "soak_tool", "args": {"n": i}, "drop_mid_arguments": true},
                                   {"say": "Tool said {output}"}]})
            }
            13 => json!({"steps": [{"send": {"type": "response.output_audio_transcript.delta",
                "event_id": "e", "response_id": "resp_late", "item_id": "item_late",
                "output_index": 0, "content_index": 0, "delta": "late words"}},
                {"say": "Late deltas came first."}]}),
            _ => json!({"say": "A normal answer."}),
        };
        list.push(turn);
    }
    let scenario = json!({"name": "soak", "turn": list});
    let path = std::env::temp_dir().join(format!("liveagent-soak-{}.json", std::process::id()));
    std::fs::write(&path, scenario.to_string())?;
    Ok(path)
}

/// Runs the soak and prints its figures.
pub async fn run(
    server_bin: PathBuf,
    conversations: usize,
    secs: u64,
    sample_secs: u64,
    seed: u64,
) -> anyhow::Result<()> {
    let panics = Arc::new(AtomicU64::new(0));
    let counter = panics.clone();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        counter.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));
    // Turns count across every conversation of the scenario; past the last one the server
    // answers like the echo brain (no faults). At most 300: a debug server took minutes to
    // start with a scenario of thousands of turns (not investigated).
    let scenario = fault_scenario((conversations * (secs as usize / 3 + 10)).min(300), seed)?;
    let server = ServerProcess::start(
        &server_bin,
        &[
            "--brain".into(),
            "script".into(),
            "--scenario".into(),
            scenario.display().to_string(),
            "--fast".into(),
        ],
    )?;
    let requested = Arc::new(Mutex::new(HashSet::<String>::new()));
    let answered = Arc::new(Mutex::new(HashSet::<String>::new()));
    let turns = Arc::new(AtomicU64::new(0));
    let mut convs = Vec::with_capacity(conversations);
    for _ in 0..conversations {
        let agent = liveagent::LiveAgent::builder("soak")
            .prompt("You are a soak test.")
            .config(
                liveagent::openai::RealtimeConfig::new("gpt-realtime")
                    .base_url(&server.openai_url)
                    .api_key("local"),
            )
            .session_options(SessionOptions::default())
            .tool(Tool::new(
                "soak_tool",
                "Returns its number.",
                |a: Value| async move { Ok::<_, ToolError>(a) },
            ))
            .build()?;
        let conv = agent.run()?;
        let (req, ans) = (requested.clone(), answered.clone());
        let mut events = conv.stream().capacity(4096).all();
        actix::spawn(async move {
            while let Some(e) = events.next().await {
                match e {
                    LiveEvent::ToolCallRequested(r) => {
                        let mut req = req.lock().unwrap();
                        for c in r.calls {
                            req.insert(c.call_id.to_string());
                        }
                    }
                    LiveEvent::ToolResult(r) => {
                        ans.lock().unwrap().insert(r.call_id.to_string());
                    }
                    _ => {}
                }
            }
        });
        convs.push(conv);
    }
    wait_ready(&convs, Duration::from_secs(120)).await?;
    out(format!(
        "SOAK conversations={conversations} secs={secs} seed={seed} (client RSS below; server is a separate process)"
    ));
    let started = Instant::now();
    let end = started + Duration::from_secs(secs);
    let mut next_sample = started;
    let mut next_turn = started;
    let mut i = 0usize;
    while Instant::now() < end {
        if Instant::now() >= next_sample {
            out(format!(
                "SOAK t={:>4}s rss_mb={:.1} turns={} calls_requested={} results={}",
                started.elapsed().as_secs(),
                common::rss_bytes(None) as f64 / 1e6,
                turns.load(Ordering::Relaxed),
                requested.lock().unwrap().len(),
                answered.lock().unwrap().len()
            ));
            next_sample += Duration::from_secs(sample_secs);
        }
        // One user turn per conversation every 3 s, spread evenly.
        if Instant::now() >= next_turn {
            convs[i % conversations]
                .context()
                .send_text(format!("turn {i}"));
            turns.fetch_add(1, Ordering::Relaxed);
            i += 1;
            next_turn += Duration::from_millis(3000 / conversations.max(1) as u64);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Let running calls finish and held results go out.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let mut alive = 0;
    let mut reconnects = 0;
    for c in &convs {
        if let Some(s) = c.status().await {
            if s.state != SessionState::Closed {
                alive += 1;
            }
            reconnects += s.reconnects;
        }
    }
    let req = requested.lock().unwrap().clone();
    let ans = answered.lock().unwrap().clone();
    let lost = req.difference(&ans).count();
    out(format!(
        "SOAK t={:>4}s rss_mb={:.1} (end)",
        started.elapsed().as_secs(),
        common::rss_bytes(None) as f64 / 1e6
    ));
    out(format!(
        "RESULT soak conversations={conversations} secs={secs} turns={} tool_calls={} tool_results={} lost={lost} panics={} alive={alive}/{conversations} reconnects={reconnects}",
        turns.load(Ordering::Relaxed),
        req.len(),
        ans.len(),
        panics.load(Ordering::SeqCst)
    ));
    for c in convs {
        c.stop().await;
    }
    drop(server);
    let _ = std::fs::remove_file(scenario);
    Ok(())
}
