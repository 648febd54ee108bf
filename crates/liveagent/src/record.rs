//! Conversation recording: both sides to a stereo WAV (left: the user's microphone, right:
//! the agent's voice) and a JSONL transcript with timestamps, as an observer switched on
//! with one builder call ([`LiveAgentBuilder::record_conversation`](crate::LiveAgentBuilder::record_conversation)).
//!
//! The two channels share one timeline (ms since the conversation started, at the output
//! rate, 24 kHz): microphone audio goes where it arrived (resampled linearly from the input
//! rate), the agent's audio where it arrived or right after the audio before it, and an
//! item the user interrupted is cut where the player stopped it (`PlaybackStopped`), so the
//! file sounds like what was heard. The transcript is written as it happens, one JSON
//! object a line; the WAV is written when the session closes.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::LocalBoxFuture;
use liveagent_core::{
    Condition, ConversationContext, ErrorEvent, EventFilter, Id, LiveError, LiveEvent, Observer,
};
use serde_json::json;

/// Where and how to record conversations.
#[derive(Clone, Debug)]
pub struct RecordingOptions {
    dir: PathBuf,
    stem: Option<String>,
    sample_rate: u32,
}

impl RecordingOptions {
    /// Records into `dir` (created if missing); files are named
    /// `<agent>-<unix ms>.wav` and `.jsonl` unless [`file_stem`](Self::file_stem) is set.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        RecordingOptions {
            dir: dir.into(),
            stem: None,
            sample_rate: 24_000,
        }
    }

    /// A fixed file name (without extension); a later conversation overwrites it.
    pub fn file_stem(mut self, stem: impl Into<String>) -> Self {
        self.stem = Some(stem.into());
        self
    }

    /// The WAV's sample rate (default 24 kHz, the providers' output rate).
    pub fn sample_rate(mut self, rate: u32) -> Self {
        self.sample_rate = rate.max(8_000);
        self
    }

    /// The paths the next conversation of `agent` records to: (WAV, JSONL).
    pub fn paths(&self, agent: &str) -> (PathBuf, PathBuf) {
        let stem = self.stem.clone().unwrap_or_else(|| {
            let ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0);
            let safe: String = agent
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            format!("{safe}-{ms}")
        });
        (
            self.dir.join(format!("{stem}.wav")),
            self.dir.join(format!("{stem}.jsonl")),
        )
    }

    pub(crate) fn observer(&self, agent: &str) -> Result<Arc<dyn Observer>, LiveError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| {
            LiveError::config(format!(
                "cannot create recording folder {}: {e}",
                self.dir.display()
            ))
        })?;
        let (wav, jsonl) = self.paths(agent);
        let file = File::create(&jsonl)
            .map_err(|e| LiveError::config(format!("cannot create {}: {e}", jsonl.display())))?;
        Ok(Arc::new(ConversationRecorder {
            wav,
            rate: self.sample_rate,
            state: Mutex::new(State {
                start: Instant::now(),
                left: Vec::new(),
                right: Vec::new(),
                items: HashMap::new(),
                text: String::new(),
                transcript: BufWriter::new(file),
                written: false,
            }),
        }))
    }
}

struct State {
    start: Instant,
    left: Vec<i16>,
    right: Vec<i16>,
    /// Where each assistant item starts in `right`.
    items: HashMap<Id, usize>,
    /// The model's words of the response in progress.
    text: String,
    transcript: BufWriter<File>,
    written: bool,
}

/// The recording observer of one conversation.
struct ConversationRecorder {
    wav: PathBuf,
    rate: u32,
    state: Mutex<State>,
}

fn resample(samples: &[i16], from: u32, to: u32) -> Vec<i16> {
    if from == to || samples.is_empty() {
        return samples.to_vec();
    }
    let n = (samples.len() as u64 * to as u64 / from as u64) as usize;
    (0..n)
        .map(|i| {
            let pos = i as f64 * from as f64 / to as f64;
            let j = pos.floor() as usize;
            let frac = pos - j as f64;
            let a = samples[j.min(samples.len() - 1)] as f64;
            let b = samples[(j + 1).min(samples.len() - 1)] as f64;
            (a + (b - a) * frac).round() as i16
        })
        .collect()
}

fn place(track: &mut Vec<i16>, at: usize, samples: &[i16]) {
    if track.len() < at + samples.len() {
        track.resize(at + samples.len(), 0);
    }
    track[at..at + samples.len()].copy_from_slice(samples);
}

impl State {
    fn now_samples(&self, rate: u32) -> usize {
        (self.start.elapsed().as_secs_f64() * rate as f64) as usize
    }

    fn line(&mut self, value: serde_json::Value) {
        let mut value = value;
        value["t_ms"] = json!(self.start.elapsed().as_millis() as u64);
        let _ = writeln!(self.transcript, "{value}");
        let _ = self.transcript.flush();
    }
}

fn write_stereo(path: &Path, rate: u32, left: &[i16], right: &[i16]) -> Result<(), String> {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).map_err(|e| e.to_string())?;
    let n = left.len().max(right.len());
    for i in 0..n {
        w.write_sample(left.get(i).copied().unwrap_or(0))
            .map_err(|e| e.to_string())?;
        w.write_sample(right.get(i).copied().unwrap_or(0))
            .map_err(|e| e.to_string())?;
    }
    w.finalize().map_err(|e| e.to_string())
}

impl Observer for ConversationRecorder {
    fn name(&self) -> &str {
        "conversation-recorder"
    }

    fn condition(&self) -> Condition {
        Condition::kinds_in(
            EventFilter::NONE
                .or::<liveagent_core::RecordedAudio>()
                .or::<liveagent_core::SynthesizedAudio>()
                .or::<liveagent_core::PlaybackStopped>()
                .or::<liveagent_core::InputTranscriptChunk>()
                .or::<liveagent_core::UserText>()
                .or::<liveagent_core::ModelMessageChunk>()
                .or::<liveagent_core::ResponseDone>()
                .or::<liveagent_core::ToolCallRequested>()
                .or::<liveagent_core::ToolResult>()
                .or::<liveagent_core::HumanInputRequest>()
                .or::<liveagent_core::HumanMessage>()
                .or::<liveagent_core::SessionClosed>(),
        )
    }

    fn on_event(
        &self,
        event: LiveEvent,
        context: &ConversationContext,
    ) -> LocalBoxFuture<'static, ()> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let rate = self.rate;
        match event {
            LiveEvent::RecordedAudio(a) => {
                let samples = resample(&a.audio.samples, a.audio.sample_rate, rate);
                let end = s.now_samples(rate);
                // The chunk ended about now; keep the track continuous when it is behind.
                let at = s.left.len().max(end.saturating_sub(samples.len()));
                place(&mut s.left, at, &samples);
            }
            LiveEvent::SynthesizedAudio(a) => {
                let samples = resample(&a.audio.samples, a.audio.sample_rate, rate);
                let at = s.right.len().max(s.now_samples(rate));
                s.items.entry(a.item_id.clone()).or_insert(at);
                place(&mut s.right, at, &samples);
            }
            LiveEvent::PlaybackStopped(p) if p.interrupted => {
                if let Some(&start) = s.items.get(&p.item_id) {
                    let heard = start + (p.played_ms as usize * rate as usize / 1000);
                    if heard < s.right.len() {
                        s.right.truncate(heard);
                    }
                }
            }
            LiveEvent::InputTranscriptChunk(t) if t.is_final => {
                s.line(json!({"role": "user", "type": "transcript", "text": &*t.text}));
            }
            LiveEvent::UserText(t) => {
                s.line(json!({"role": "user", "type": "text", "text": &*t.text}));
            }
            LiveEvent::ModelMessageChunk(c) => s.text.push_str(&c.text),
            LiveEvent::ResponseDone(d) => {
                let text = std::mem::take(&mut s.text);
                if !text.trim().is_empty() {
                    s.line(json!({"role": "assistant", "type": "message", "text": text,
                        "response_id": &*d.response_id, "status": d.status}));
                }
            }
            LiveEvent::ToolCallRequested(r) => {
                for c in r.calls {
                    s.line(
                        json!({"role": "assistant", "type": "tool_call", "name": &*c.name,
                        "call_id": &*c.call_id, "arguments": c.arguments}),
                    );
                }
            }
            LiveEvent::ToolResult(r) => {
                let output = match &r.output {
                    Ok(v) => json!({"ok": v}),
                    Err(e) => json!({"error": e}),
                };
                s.line(
                    json!({"role": "tool", "type": "tool_result", "name": &*r.name,
                    "call_id": &*r.call_id, "output": output}),
                );
            }
            LiveEvent::HumanInputRequest(r) => {
                s.line(
                    json!({"role": "tool", "type": "human_input_request", "question": &*r.question,
                    "request_id": &*r.request_id}),
                );
            }
            LiveEvent::HumanMessage(m) => {
                s.line(
                    json!({"role": "user", "type": "human_message", "text": &*m.text,
                    "request_id": &*m.request_id}),
                );
            }
            LiveEvent::SessionClosed(_) if !s.written => {
                s.written = true;
                let left = std::mem::take(&mut s.left);
                let right = std::mem::take(&mut s.right);
                if let Err(e) = write_stereo(&self.wav, rate, &left, &right) {
                    tracing::error!(path = %self.wav.display(), error = %e, "cannot write the conversation recording");
                    context.publish(ErrorEvent::new(
                        "recorder",
                        LiveError::config(format!("cannot write {}: {e}", self.wav.display())),
                    ));
                } else {
                    tracing::info!(path = %self.wav.display(), "conversation recording written");
                }
            }
            _ => {}
        }
        Box::pin(std::future::ready(()))
    }
}
