//! Soak: N conversations for a long time against a `liveagent-server` process whose scripted
//! model injects faults through the whole run. The scenario is a cycle of `--cycle` turns
//! drawn from a seeded generator (`after_last = "cycle"`: turn n plays turn
//! `(n - 1) % cycle + 1`, turns counted across all conversations), so a run is repeatable and
//! faults keep coming in its last minute as in its first. The faults (see [`Fault`]): tool
//! calls, connections dropped mid-answer and mid-arguments, half-open connections (the peer
//! goes silent, answering no ping, for 20 s), pauses, audio floods, late transcript deltas
//! for an unknown response, audio that keeps coming after `speech_started`, and oversized
//! transcripts (past the 64 KiB item cap).
//!
//! Every `--sample-secs` it prints the client's RSS next to the bytes live allocations hold
//! (a counting global allocator, [`crate::alloc`]) and glibc's in-use and free figures, plus
//! the faults the server injected since the previous sample. At the end: faults per kind
//! (and in the run's last fifth), tool calls requested vs answered on the bus (lost must be
//! 0), panics, and conversations alive (not closed, and a completed answer in the last
//! 60 s). Nothing is asserted; the figures go to docs/reliability.md.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use liveagent::{LiveEvent, ResponseStatus, SessionOptions, SessionState, Tool, ToolError};
use serde_json::{json, Value};

use crate::alloc;
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

/// What one scripted turn does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// A tool call whose output is spoken back (not a fault: the thing that must not be lost).
    ToolCall,
    /// The connection dropped after 300 ms of a 3 s answer.
    DropMidAnswer,
    /// The connection dropped after the first arguments delta of a tool call.
    DropMidArguments,
    /// The peer goes silent for 20 s (no frames, no reads, no pongs), then drops: a half-open
    /// connection, which the client must notice by its idle deadline (15 s by default).
    HalfOpen,
    /// 2 s of silence mid-turn (the connection stays alive and answers pings).
    Pause,
    /// 15 s of audio sent as fast as possible (the server runs `--fast`).
    Flood,
    /// A transcript delta for a response and item the client never saw.
    LateTranscript,
    /// `input_audio_buffer.speech_started` in the middle of an answer, then more audio.
    LateAudio,
    /// A 70 KB transcript, past the 64 KiB per-item cap.
    Oversized,
    /// A normal answer.
    Normal,
}

/// Every kind with its weight (out of [`WEIGHT_TOTAL`]) and its name in the output.
const FAULTS: [(Fault, u64, &str); 10] = [
    (Fault::ToolCall, 20, "tool_call"),
    (Fault::DropMidAnswer, 6, "drop_mid_answer"),
    (Fault::DropMidArguments, 4, "drop_mid_arguments"),
    (Fault::HalfOpen, 1, "half_open_20s"),
    (Fault::Pause, 5, "pause_2s"),
    (Fault::Flood, 4, "audio_flood_15s"),
    (Fault::LateTranscript, 4, "late_transcript_delta"),
    (Fault::LateAudio, 4, "audio_after_speech_started"),
    (Fault::Oversized, 4, "oversized_transcript_70kb"),
    (Fault::Normal, 28, "normal"),
];
const WEIGHT_TOTAL: u64 = 80;

impl Fault {
    fn turn(self, i: usize, long_text: &str) -> Value {
        match self {
            Fault::ToolCall => {
                json!({"call": "soak_tool", "args": {"n": i}, "then_say": "Tool said {output}"})
            }
            Fault::DropMidAnswer => {
                json!({"steps": [{"say": "This answer is cut.", "audio_ms": 3000, "drop_after_ms": 300}]})
            }
            Fault::DropMidArguments => {
                json!({"steps": [{"call": "soak_tool", "args": {"n": i}, "drop_mid_arguments": true},
                                 {"say": "Tool said {output}"}]})
            }
            Fault::HalfOpen => {
                json!({"steps": [{"say": "Then the line goes quiet."}, {"stall_ms": 20000}]})
            }
            Fault::Pause => json!({"steps": [{"wait_ms": 2000}, {"say": "After a silence."}]}),
            Fault::Flood => json!({"steps": [{"say": "A flood of audio.", "audio_ms": 15000}]}),
            Fault::LateTranscript => json!({"steps": [
                {"send": {"type": "response.output_audio_transcript.delta", "event_id": "e",
                    "response_id": "resp_late", "item_id": "item_late", "output_index": 0,
                    "content_index": 0, "delta": "late words"}},
                {"say": "Late deltas came first."}]}),
            Fault::LateAudio => json!({"steps": [
                {"say": "This answer is talked over.", "audio_ms": 1000},
                {"send": {"type": "input_audio_buffer.speech_started", "event_id": "e_ss",
                    "audio_start_ms": 0, "item_id": "item_soak_user"}},
                {"say": "Words made before the model heard the user.", "audio_ms": 600}]}),
            Fault::Oversized => json!({"steps": [{"say": long_text, "audio_ms": 500}]}),
            Fault::Normal => json!({"say": "A normal answer."}),
        }
    }
}

/// The cycle of turns drawn from `seed`.
fn fault_cycle(len: usize, seed: u64) -> Vec<Fault> {
    let mut rng = Rng(seed | 1);
    (0..len)
        .map(|_| {
            let mut r = rng.next() % WEIGHT_TOTAL;
            for (f, w, _) in FAULTS {
                if r < w {
                    return f;
                }
                r -= w;
            }
            Fault::Normal
        })
        .collect()
}

/// Writes the cycling scenario (JSON) and returns its path.
fn write_scenario(cycle: &[Fault]) -> anyhow::Result<PathBuf> {
    let long_text = "word ".repeat(14 * 1024); // 70 KB of transcript: past the 64 KiB cap
    let turns: Vec<Value> = cycle
        .iter()
        .enumerate()
        .map(|(i, f)| f.turn(i, &long_text))
        .collect();
    let scenario = json!({"name": "soak", "after_last": "cycle", "turn": turns});
    let path = std::env::temp_dir().join(format!("liveagent-soak-{}.json", std::process::id()));
    std::fs::write(&path, scenario.to_string())?;
    Ok(path)
}

/// Faults of each kind among the first `turns` turns of the cycle.
fn injected(cycle: &[Fault], turns: u64) -> Vec<u64> {
    let len = cycle.len() as u64;
    let (full, rest) = (turns / len, (turns % len) as usize);
    FAULTS
        .iter()
        .map(|(kind, _, _)| {
            let per_cycle = cycle.iter().filter(|f| *f == kind).count() as u64;
            let prefix = cycle[..rest].iter().filter(|f| *f == kind).count() as u64;
            full * per_cycle + prefix
        })
        .collect()
}

/// User turns the server has answered (its scenario turn counter), from `/debug/stats`.
async fn server_turns(stats_url: &str) -> anyhow::Result<u64> {
    let mut resp = awc::Client::new()
        .get(stats_url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("GET {stats_url}: {e}"))?;
    let v: Value = resp
        .json()
        .limit(1 << 20)
        .await
        .map_err(|e| anyhow::anyhow!("GET {stats_url}: {e}"))?;
    Ok(v["scenario_turns"]
        .as_object()
        .map_or(0, |m| m.values().filter_map(Value::as_u64).sum()))
}

/// What the event streams saw, across all conversations.
#[derive(Default)]
struct Seen {
    /// Calls requested and not answered yet.
    pending: HashSet<String>,
    /// Results for calls not (yet) seen requested.
    early: HashSet<String>,
    requested: u64,
    /// Requested calls answered.
    matched: u64,
    /// Results for a call id answered before.
    duplicates: u64,
    /// Hashes of answered ids (for duplicates; 8 bytes each).
    answered: HashSet<u64>,
    reconnecting: u64,
    half_open_detected: u64,
    text_dropped_item: u64,
    text_dropped_history: u64,
    interrupted: u64,
    errors: u64,
}

fn id_hash(id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

/// Options of one soak run.
pub struct SoakArgs {
    pub conversations: usize,
    pub secs: u64,
    pub sample_secs: u64,
    pub seed: u64,
    pub cycle: usize,
    /// Call `malloc_trim(0)` before each sample (glibc), to tell retention from growth.
    pub trim: bool,
    /// `Conversation::history` byte bound (KiB); `None`: the library's default.
    pub history_kib: Option<usize>,
    /// The OpenAI restore history's byte bound (KiB); `None`: the library's default.
    pub restore_history_kib: Option<usize>,
}

/// Runs the soak and prints its figures.
pub async fn run(server_bin: PathBuf, a: SoakArgs) -> anyhow::Result<()> {
    let SoakArgs {
        conversations,
        secs,
        sample_secs,
        seed,
        cycle: cycle_len,
        trim,
        history_kib,
        restore_history_kib,
    } = a;
    let panics = Arc::new(AtomicU64::new(0));
    let counter = panics.clone();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        counter.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));
    let cycle = fault_cycle(cycle_len.max(1), seed);
    let scenario = write_scenario(&cycle)?;
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
    let stats_url = server
        .openai_url
        .replace("ws://", "http://")
        .replace("/v1", "/debug/stats");
    let seen = Arc::new(Mutex::new(Seen::default()));
    // Clock of the completed-answer times.
    let t0 = Instant::now();
    let mut last_done: Vec<Arc<AtomicU64>> = Vec::with_capacity(conversations);
    let mut convs = Vec::with_capacity(conversations);
    for _ in 0..conversations {
        let mut config = liveagent::openai::RealtimeConfig::new("gpt-realtime")
            .base_url(&server.openai_url)
            .api_key("local");
        if let Some(kib) = restore_history_kib {
            config = config.history_max_bytes(kib * 1024);
        }
        let mut builder = liveagent::LiveAgent::builder("soak");
        if let Some(kib) = history_kib {
            // Bound by bytes only.
            builder = builder.history_limit(usize::MAX, kib * 1024);
        }
        let agent = builder
            .prompt("You are a soak test.")
            .config(config)
            .session_options(SessionOptions::default())
            .tool(Tool::new(
                "soak_tool",
                "Returns its number.",
                |a: Value| async move { Ok::<_, ToolError>(a) },
            ))
            .build()?;
        let conv = agent.run()?;
        let seen = seen.clone();
        let done = Arc::new(AtomicU64::new(0));
        last_done.push(done.clone());
        let mut events = conv.stream().capacity(4096).all();
        actix::spawn(async move {
            while let Some(e) = events.next().await {
                let mut s = seen.lock().unwrap();
                match e {
                    LiveEvent::ToolCallRequested(r) => {
                        for c in r.calls {
                            let id = c.call_id.to_string();
                            s.requested += 1;
                            if s.early.remove(&id) {
                                s.matched += 1;
                            } else {
                                s.pending.insert(id);
                            }
                        }
                    }
                    LiveEvent::ToolResult(r) => {
                        let id = r.call_id.to_string();
                        if !s.answered.insert(id_hash(&id)) {
                            s.duplicates += 1;
                        } else if s.pending.remove(&id) {
                            s.matched += 1;
                        } else {
                            s.early.insert(id);
                        }
                    }
                    LiveEvent::ResponseDone(d) if d.status == ResponseStatus::Completed => {
                        done.store(t0.elapsed().as_millis() as u64, Ordering::Relaxed);
                    }
                    LiveEvent::SessionReconnecting(r) => {
                        s.reconnecting += 1;
                        if r.reason.contains("half-open") {
                            s.half_open_detected += 1;
                        }
                    }
                    LiveEvent::TextDropped(t) => {
                        if t.item_id.is_some() {
                            s.text_dropped_item += 1;
                        } else {
                            s.text_dropped_history += 1;
                        }
                    }
                    LiveEvent::Interrupted(_) => s.interrupted += 1,
                    LiveEvent::ErrorEvent(_) => s.errors += 1,
                    _ => {}
                }
            }
        });
        convs.push(conv);
    }
    wait_ready(&convs, Duration::from_secs(120)).await?;
    alloc::enable();
    out(format!(
        "SOAK conversations={conversations} secs={secs} seed={seed} cycle={} trim={trim} history_kib={} restore_history_kib={} (client process; the server is a separate one)",
        cycle.len(),
        history_kib.map_or("default".into(), |k| k.to_string()),
        restore_history_kib.map_or("default".into(), |k| k.to_string()),
    ));
    out(
        "SOAK columns: t, rss (client VmRSS), live (bytes held by live allocations made since the start of the run, counting allocator), glibc in_use/free (mallinfo2), server turns, faults injected since the previous sample",
    );
    let started = Instant::now();
    let end = started + Duration::from_secs(secs);
    let mut next_sample = started;
    let mut next_turn = started;
    let mut i = 0usize;
    let mut last_turns = 0u64;
    // (seconds, cumulative server turns) at each sample.
    let mut marks: Vec<(u64, u64)> = Vec::new();
    while Instant::now() < end {
        if Instant::now() >= next_sample {
            let t = started.elapsed().as_secs();
            let turns = server_turns(&stats_url).await.unwrap_or(last_turns);
            let faults: u64 = injected(&cycle, turns)
                .iter()
                .zip(injected(&cycle, last_turns))
                .zip(FAULTS)
                .filter(|(_, f)| !matches!(f.0, Fault::Normal | Fault::ToolCall))
                .map(|((now, before), _)| now - before)
                .sum();
            last_turns = turns;
            marks.push((t, turns));
            sample(t, turns, faults, trim, &seen);
            next_sample += Duration::from_secs(sample_secs);
        }
        // One user turn per conversation every 3 s, spread evenly.
        if Instant::now() >= next_turn {
            convs[i % conversations]
                .context()
                .send_text(format!("turn {i}"));
            i += 1;
            next_turn += Duration::from_millis(3000 / conversations.max(1) as u64);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let run_secs = started.elapsed().as_secs();
    let recent_from = (t0.elapsed().as_millis() as u64).saturating_sub(60_000);
    let turns_at_end = server_turns(&stats_url).await.unwrap_or(last_turns);
    // Let running calls finish, half-open connections be noticed and held results go out.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let t = started.elapsed().as_secs();
    let turns = server_turns(&stats_url).await.unwrap_or(turns_at_end);
    sample(t, turns, 0, trim, &seen);
    let mut not_closed = 0;
    let mut answered_recently = 0;
    let mut reconnects = 0;
    for (c, done) in convs.iter().zip(&last_done) {
        if let Some(s) = c.status().await {
            if s.state != SessionState::Closed {
                not_closed += 1;
            }
            reconnects += s.reconnects;
        }
        if done.load(Ordering::Relaxed) >= recent_from {
            answered_recently += 1;
        }
    }
    // Faults per kind: all, and in the run's last fifth (proof that they kept coming).
    let last_fifth_from = marks
        .iter()
        .rev()
        .find(|(s, _)| *s <= run_secs * 4 / 5)
        .map_or(0, |m| m.1);
    let all = injected(&cycle, turns);
    let before_last = injected(&cycle, last_fifth_from);
    for (k, (_, _, name)) in FAULTS.iter().enumerate() {
        out(format!(
            "SOAK fault {name:<28} injected={:>6} in_last_fifth={:>5}",
            all[k],
            all[k] - before_last[k]
        ));
    }
    {
        let s = seen.lock().unwrap();
        let lost = s.pending.len();
        out(format!(
            "SOAK client saw: reconnecting={} (half-open noticed={}) interrupted={} text_dropped item={} restore_history={} error_events={}",
            s.reconnecting,
            s.half_open_detected,
            s.interrupted,
            s.text_dropped_item,
            s.text_dropped_history,
            s.errors
        ));
        out(format!(
            "RESULT soak conversations={conversations} secs={secs} turns={turns} tool_calls={} tool_results={} lost={lost} duplicates={} unrequested_results={} panics={} alive={not_closed}/{conversations} answered_last_60s={answered_recently}/{conversations} reconnects={reconnects}",
            s.requested,
            s.matched,
            s.duplicates,
            s.early.len(),
            panics.load(Ordering::SeqCst)
        ));
    }
    for c in convs {
        c.stop().await;
    }
    drop(server);
    let _ = std::fs::remove_file(scenario);
    Ok(())
}

fn sample(t: u64, turns: u64, faults: u64, trim: bool, seen: &Mutex<Seen>) {
    if trim {
        alloc::trim();
    }
    let g = alloc::glibc();
    let s = seen.lock().unwrap();
    out(format!(
        "SOAK t={t:>4}s rss_mb={:.1} live_mb={:.1} allocs={} glibc_in_use_mb={:.1} glibc_free_mb={:.1} turns={turns} faults+={faults} calls={} results={} reconnecting={}",
        common::rss_bytes(None) as f64 / 1e6,
        alloc::live_bytes() as f64 / 1e6,
        alloc::allocations(),
        g.in_use as f64 / 1e6,
        g.free as f64 / 1e6,
        s.requested,
        s.matched,
        s.reconnecting
    ));
}
