//! `liveagent-bench cascade`: N cascade conversations (speech-to-text → Chat Completions →
//! text-to-speech) against the local server's fake OpenAI-shaped stages, in its own
//! process, each speaking `turns` questions in real time.
//!
//! Per turn it prints the stage timings: end of speech (the turn detector's
//! `SpeechStopped`) → final transcript → first LLM token → first TTS audio (bytes decoded
//! from the speech response) → first audio out (the application's subscriber has the
//! `SynthesizedAudio`). And the pipeline's own added latency per hop, measured by thin
//! wrappers around the real stages that stamp when each stage's result arrives and when
//! the next stage is asked:
//!
//! - mic → STT: the microphone chunk that ended the turn was published → the STT request;
//! - STT → LLM: the final transcript decoded → the chat request;
//! - LLM → TTS: the LLM delta that completed the first sentence decoded → its TTS request;
//! - TTS → app: a TTS audio chunk decoded → the application's subscriber holds it.
//!
//! Plus CPU and resident memory per conversation of this (client) process. The server's
//! fakes answer at once (no model), so what is left is the pipeline itself. Nothing is
//! asserted.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{LocalBoxStream, StreamExt};
use liveagent::cascade::openai::{OpenAiStt, OpenAiTts};
use liveagent::cascade::{
    CascadeConfig, ChatLlm, Llm, Stt, SttCapabilities, SttEvent, Tts, TtsCapabilities, TtsEvent,
};
use liveagent::{AudioChunk, LiveAgent, LiveError, LiveEvent, RecordedAudio, ResponseStatus};
use liveagent_agent::wire::{ChatMessage, ChatTool};
use liveagent_agent::ChatStreamEvent;

use crate::common::{self, ms, out, percentiles, ServerProcess};

/// What the stage wrappers and the subscriber of one conversation stamp.
#[derive(Debug, Default)]
struct Probe {
    /// When the feeder last published a microphone chunk.
    last_mic: Option<Instant>,
    stt_final_at: Option<Instant>,
    llm_item_at: Option<Instant>,
    first_tts_pending: bool,
    tts_audio_at: VecDeque<Instant>,
    /// This turn: SpeechStopped, final transcript, first LLM token, first TTS audio, first
    /// audio out.
    turn: [Option<Instant>; 5],
    hops: [Vec<u32>; 4],
    stages: Vec<[u32; 5]>,
    /// When the feeder sent the last chunk of the spoken question (end of voice).
    voice_end: Option<Instant>,
    /// End of voice → SpeechStopped, and → first audio out.
    from_voice: Vec<[u32; 2]>,
    done: u32,
    failed: u32,
}

type Shared = Arc<Mutex<Probe>>;

fn since(t: Option<Instant>, now: Instant) -> Option<u32> {
    t.map(|t| now.saturating_duration_since(t).as_micros() as u32)
}

#[derive(Debug)]
struct ProbedStt(OpenAiStt, Shared);

impl Stt for ProbedStt {
    fn provider(&self) -> &'static str {
        self.0.provider()
    }
    fn model(&self) -> &str {
        self.0.model()
    }
    fn capabilities(&self) -> SttCapabilities {
        self.0.capabilities()
    }
    fn transcribe(
        &self,
        audio: Arc<[i16]>,
    ) -> LocalBoxStream<'static, Result<SttEvent, LiveError>> {
        let now = Instant::now();
        {
            let mut p = self.1.lock().unwrap();
            if let Some(us) = since(p.last_mic, now) {
                p.hops[0].push(us);
            }
        }
        let probe = self.1.clone();
        self.0
            .transcribe(audio)
            .map(move |item| {
                if matches!(item, Ok(SttEvent::Final { .. })) {
                    probe.lock().unwrap().stt_final_at = Some(Instant::now());
                }
                item
            })
            .boxed_local()
    }
}

#[derive(Debug)]
struct ProbedLlm(ChatLlm, Shared);

impl Llm for ProbedLlm {
    fn provider(&self) -> &'static str {
        self.0.provider()
    }
    fn model(&self) -> &str {
        self.0.model()
    }
    fn complete(
        &self,
        messages: Vec<ChatMessage>,
        tools: Vec<ChatTool>,
    ) -> LocalBoxStream<'static, Result<ChatStreamEvent, LiveError>> {
        let now = Instant::now();
        {
            let mut p = self.1.lock().unwrap();
            if let Some(us) = since(p.stt_final_at.take(), now) {
                p.hops[1].push(us);
            }
            p.first_tts_pending = true;
        }
        let probe = self.1.clone();
        self.0
            .complete(messages, tools)
            .map(move |item| {
                probe.lock().unwrap().llm_item_at = Some(Instant::now());
                item
            })
            .boxed_local()
    }
}

#[derive(Debug)]
struct ProbedTts(OpenAiTts, Shared);

impl Tts for ProbedTts {
    fn provider(&self) -> &'static str {
        self.0.provider()
    }
    fn model(&self) -> &str {
        self.0.model()
    }
    fn capabilities(&self) -> TtsCapabilities {
        self.0.capabilities()
    }
    fn synthesize(&self, text: String) -> LocalBoxStream<'static, Result<TtsEvent, LiveError>> {
        let now = Instant::now();
        {
            let mut p = self.1.lock().unwrap();
            if p.first_tts_pending {
                p.first_tts_pending = false;
                if let Some(us) = since(p.llm_item_at, now) {
                    p.hops[2].push(us);
                }
            }
        }
        let probe = self.1.clone();
        self.0
            .synthesize(text)
            .map(move |item| {
                if matches!(&item, Ok(TtsEvent::Audio(a)) if !a.is_empty()) {
                    let now = Instant::now();
                    let mut p = probe.lock().unwrap();
                    p.tts_audio_at.push_back(now);
                    p.turn[3].get_or_insert(now);
                }
                item
            })
            .boxed_local()
    }
}

/// Handles one event of a conversation for its probe.
fn on_event(p: &mut Probe, e: &LiveEvent, now: Instant) {
    match e {
        LiveEvent::SpeechStopped(_) => {
            p.turn = [Some(now), None, None, None, None];
        }
        LiveEvent::InputTranscriptChunk(t) if t.is_final => {
            p.turn[1].get_or_insert(now);
        }
        LiveEvent::ModelMessageChunk(_) => {
            p.turn[2].get_or_insert(now);
        }
        LiveEvent::SynthesizedAudio(_) => {
            if let Some(t) = p.tts_audio_at.pop_front() {
                p.hops[3].push(now.saturating_duration_since(t).as_micros() as u32);
            }
            p.turn[4].get_or_insert(now);
        }
        LiveEvent::ResponseDone(d) => {
            if d.status == ResponseStatus::Completed {
                p.done += 1;
                let us = |x: Instant, y: Instant| y.saturating_duration_since(x).as_micros() as u32;
                if let [Some(a), Some(b), Some(c), Some(d), Some(e)] = p.turn {
                    p.stages
                        .push([us(a, b), us(b, c), us(c, d), us(d, e), us(a, e)]);
                    if let Some(v) = p.voice_end.take() {
                        p.from_voice.push([us(v, a), us(v, e)]);
                    }
                }
            } else {
                p.failed += 1;
            }
            p.turn = [None; 5];
        }
        _ => {}
    }
}

/// Runs `sessions` conversations of `turns` spoken questions each and prints the figures.
pub async fn run(server_bin: PathBuf, sessions: usize, turns: usize) -> anyhow::Result<()> {
    let server = ServerProcess::start(&server_bin, &["--workers".into(), "1".into()])?;
    let base = server.openai_url.replacen("ws://", "http://", 1);
    // The question, then 1 s of silence (the turn ends after 0.7 s of it).
    let pattern = common::speech_pattern(1000);
    let voiced = liveagent_testkit::speech_pcm(common::SPEECH_TEXT, 24_000)
        .len()
        .div_ceil(480);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss0 = common::rss_bytes(None);
    let cpu0 = common::cpu_time(None);
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    let mut probes = Vec::new();
    for i in 0..sessions {
        let probe: Shared = Arc::default();
        probes.push(probe.clone());
        let config = CascadeConfig::new(
            ProbedStt(
                OpenAiStt::new("gpt-4o-mini-transcribe")
                    .base_url(&base)
                    .api_key("local"),
                probe.clone(),
            ),
            ProbedLlm(
                ChatLlm::new("gpt-4o-mini").base_url(&base).api_key("local"),
                probe.clone(),
            ),
            ProbedTts(
                OpenAiTts::new("gpt-4o-mini-tts", "marin")
                    .base_url(&base)
                    .api_key("local"),
                probe.clone(),
            ),
        );
        let agent = LiveAgent::builder("bench")
            .prompt("You are a benchmark.")
            .config(config)
            .build()?;
        let conversation = agent.run()?;
        let mut events = conversation.stream().capacity(1024).all();
        let p = probe.clone();
        actix::spawn(async move {
            while let Some(e) = events.next().await {
                on_event(&mut p.lock().unwrap(), &e, Instant::now());
            }
        });
        let pattern = pattern.clone();
        tasks.push(actix::spawn(async move {
            // Microphones are not in phase: each starts 37 ms after the previous one.
            tokio::time::sleep(Duration::from_millis(37 * i as u64 % 1000)).await;
            let ctx = conversation.context().clone();
            for _ in 0..turns {
                let done_before = {
                    let p = probe.lock().unwrap();
                    p.done + p.failed
                };
                let mut tick = tokio::time::interval(Duration::from_millis(20));
                for (k, chunk) in pattern.iter().enumerate() {
                    let at = tick.tick().await.into_std();
                    probe.lock().unwrap().last_mic = Some(Instant::now());
                    ctx.publish(RecordedAudio {
                        audio: AudioChunk::new(chunk.clone(), 24_000).with_origin(at),
                    });
                    if k + 1 == voiced {
                        probe.lock().unwrap().voice_end = Some(Instant::now());
                    }
                }
                // Wait for the answer (spoken in real time by the server's TTS).
                let deadline = Instant::now() + Duration::from_secs(20);
                while Instant::now() < deadline {
                    let answered = {
                        let p = probe.lock().unwrap();
                        p.done + p.failed > done_before
                    };
                    if answered {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let rss = common::rss_bytes(None);
            conversation.stop().await;
            rss
        }));
    }
    let mut peak_rss = 0;
    for t in tasks {
        peak_rss = peak_rss.max(t.await.unwrap_or(0));
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = (common::cpu_time(None) - cpu0).as_secs_f64();
    drop(server);

    let mut hops: [Vec<u32>; 4] = Default::default();
    let mut stages: Vec<[u32; 5]> = Vec::new();
    let mut from_voice: Vec<[u32; 2]> = Vec::new();
    let (mut done, mut failed) = (0, 0);
    for p in &probes {
        let p = p.lock().unwrap();
        for (all, mine) in hops.iter_mut().zip(p.hops.iter()) {
            all.extend_from_slice(mine);
        }
        stages.extend_from_slice(&p.stages);
        from_voice.extend_from_slice(&p.from_voice);
        done += p.done;
        failed += p.failed;
    }
    let loadavg = common::loadavg();
    out(format!(
        "RESULT cascade N={sessions} turns/conversation={turns}: answered={done} failed={failed} wall_s={wall:.1} loadavg={loadavg}"
    ));
    print_columns(
        &[
            "end_of_speech->final_transcript",
            "final_transcript->first_llm_token",
            "first_llm_token->first_tts_audio",
            "first_tts_audio->first_audio_out",
            "end_of_speech->first_audio_out",
        ],
        &stages,
    );
    print_columns(
        &[
            "end_of_voice->end_of_speech(turn detector)",
            "end_of_voice->first_audio_out",
        ],
        &from_voice,
    );
    for (i, name) in ["mic->stt", "stt->llm", "llm->tts", "tts->app"]
        .iter()
        .enumerate()
    {
        let (p50, p99, max) = percentiles(&mut hops[i]);
        out(format!(
            "RESULT cascade added latency hop {name}: p50_ms={} p99_ms={} max_ms={} samples={} (goal p99 < 1 ms: {})",
            ms(p50),
            ms(p99),
            ms(max),
            hops[i].len(),
            if p99 < 1000 { "met" } else { "MISSED" }
        ));
    }
    out(format!(
        "RESULT cascade per conversation: client_cpu_ms/turn={:.1} client_cpu={:.1}% of a core client_rss_KiB={:.0}",
        cpu * 1000.0 / (done.max(1) as f64),
        cpu / wall / sessions as f64 * 100.0,
        peak_rss.saturating_sub(rss0) as f64 / 1024.0 / sessions as f64
    ));
    Ok(())
}

/// Prints one `RESULT cascade stage` line (p50, p99, max over the turns) per column of
/// `rows`, named by `names`.
fn print_columns<const N: usize>(names: &[&str; N], rows: &[[u32; N]]) {
    for (i, name) in names.iter().enumerate() {
        let mut v: Vec<u32> = rows.iter().map(|s| s[i]).collect();
        let (p50, p99, max) = percentiles(&mut v);
        out(format!(
            "RESULT cascade stage {name}: p50_ms={} p99_ms={} max_ms={} turns={}",
            ms(p50),
            ms(p99),
            ms(max),
            v.len()
        ));
    }
}
