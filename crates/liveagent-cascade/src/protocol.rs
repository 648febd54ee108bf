//! [`CascadeProtocol`]: the cascade as a sans-IO [`RealtimeProtocol`], so the session
//! runtime (buffering, middleware, `SessionOpened`/`SessionClosed`, stop) treats it like
//! any realtime provider. It has no session socket; its stages run as
//! [`ProtocolTask`](liveagent_core::ProtocolTask)s that the runtime drives and whose items
//! come back here.
//!
//! A turn:
//!
//! ```text
//! RecordedAudio ─▶ TurnDetector ─Started─▶ SpeechStarted (+ barge-in: Interrupted, cancel LLM/TTS)
//!                                ─Stopped─▶ SpeechStopped ─▶ Stt task ─▶ InputTranscriptChunk…(final)
//! final transcript ─▶ user message ─▶ ResponseStarted ─▶ Llm task ─▶ ModelMessageChunk…
//!                                 └─ SentenceBuffer ─▶ Tts task per piece, in order ─▶ SynthesizedAudio…
//! tool calls ─▶ ToolCallRequested ─▶ (executor) ToolResult… ─▶ next response
//! LLM and TTS done ─▶ OutputTranscriptChunk (final) ─▶ ResponseDone (usage per stage)
//! ```
//!
//! History is Chat Completions messages. After a barge-in the interrupted assistant
//! message is cut to the text that was synthesized, and then, when the player reports
//! how much it played ([`PlaybackStopped`]), to the text actually heard.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use futures_util::stream::{LocalBoxStream, StreamExt};
use liveagent_agent::wire::{ChatMessage, ChatTool, ChatToolCall, ChatUsage};
use liveagent_agent::ChatStreamEvent;
use liveagent_core::{
    AudioChunk, ConnectRequest, ControlCommand, ErrorEvent, Id, InputTranscriptChunk, Interrupted,
    LiveError, ModelMessageChunk, Outbox, OutputTranscriptChunk, PlaybackStopped, ProtocolSignal,
    RealtimeProtocol, ResponseDone, ResponseStarted, ResponseStatus, SessionCommand, SessionOpened,
    SessionSetup, SpeechStarted, SpeechStopped, Stage, StageUsage, SynthesizedAudio, TaskId,
    TaskItem, ToolCall, ToolCallRequested, ToolResult, Usage, UserText, WireFrame,
};
use serde_json::Value;

use crate::config::CascadeConfig;
use crate::sentence::SentenceBuffer;
use crate::stage::{SttEvent, TtsEvent};
use crate::turn::{TurnDetector, TurnEvent};

/// The text a tool message holds until the real result arrives, when the user spoke
/// before the tool finished (Chat Completions wants every call answered before the next
/// message).
const PLACEHOLDER: &str = r#"{"error":"no result yet: the user spoke before the tool finished"}"#;

/// The cascade's protocol state machine. Built by [`CascadeConfig`]; see the
/// [module docs](self).
pub struct CascadeProtocol {
    config: CascadeConfig,
    detector: Box<dyn TurnDetector>,
    instructions: String,
    tools: Vec<ChatTool>,
    history: Vec<ChatMessage>,
    next: u64,
    in_rate: u32,
    out_rate: u32,
    input_ms: u64,
    user_item: Option<Id>,
    stt_jobs: HashMap<TaskId, SttJob>,
    /// STT usage waiting for the response it leads to.
    stt_usage: StageUsage,
    response: Option<Response>,
    last_spoken: Option<Spoken>,
    /// Calls of the last tool round still without a result.
    waiting_calls: Vec<String>,
    /// Answer the tool results with a new response once they are all in.
    respond_after_tools: bool,
    tools_ready: bool,
    placeholders: Vec<String>,
}

struct SttJob {
    item_id: Id,
    text: Option<String>,
    failed: bool,
}

struct Response {
    id: Id,
    item: Id,
    llm_task: Option<TaskId>,
    tts_task: Option<TaskId>,
    sentences: SentenceBuffer,
    tts_queue: VecDeque<String>,
    text: String,
    tool_calls: Vec<ChatToolCall>,
    finish_reason: Option<String>,
    llm_failed: bool,
    tts_failed: bool,
    spoken: Spoken,
    usage: [StageUsage; 3],
}

#[derive(Clone, Debug)]
struct Spoken {
    item: Id,
    response: Id,
    segments: Vec<Segment>,
    total_ms: u64,
    first_audio: Option<Instant>,
    played_out: bool,
    history_index: Option<usize>,
}

#[derive(Clone, Debug)]
struct Segment {
    text: String,
    start_ms: u64,
    ms: u64,
    complete: bool,
}

impl Spoken {
    /// The text whose audio was synthesized (an upper bound of what was heard).
    fn synthesized_text(&self) -> String {
        let parts: Vec<&str> = self
            .segments
            .iter()
            .filter(|s| s.ms > 0)
            .map(|s| s.text.as_str())
            .collect();
        parts.join(" ")
    }

    /// The text heard after `played_ms` of this item's audio: whole pieces, then the
    /// played share of the piece in progress, cut back to a word boundary.
    fn heard_text(&self, played_ms: u64) -> String {
        let mut parts: Vec<String> = Vec::new();
        for s in self.segments.iter().filter(|s| s.ms > 0) {
            if s.start_ms + s.ms <= played_ms {
                parts.push(s.text.clone());
                continue;
            }
            if played_ms > s.start_ms {
                let chars: Vec<char> = s.text.chars().collect();
                let n = (chars.len() as u64 * (played_ms - s.start_ms) / s.ms.max(1)) as usize;
                let mut cut: String = chars[..n.min(chars.len())].iter().collect();
                if n < chars.len() && chars[n].is_alphanumeric() {
                    // Mid-word: keep only whole words.
                    cut = match cut.rfind(char::is_whitespace) {
                        Some(i) => cut[..i].to_owned(),
                        None => String::new(),
                    };
                }
                let cut = cut.trim_end().to_owned();
                if !cut.is_empty() {
                    parts.push(cut);
                }
            }
            break;
        }
        parts.join(" ")
    }

    fn may_be_playing(&self) -> bool {
        !self.played_out
            && self.first_audio.is_some_and(|t| {
                t.elapsed() < Duration::from_millis(self.total_ms) + Duration::from_millis(1500)
            })
    }
}

fn stage_usage(stage: Stage, provider: &str, model: &str) -> StageUsage {
    StageUsage {
        stage,
        provider: provider.into(),
        model: model.into(),
        requests: 0,
        input_tokens: 0,
        output_tokens: 0,
        audio_ms: 0,
        characters: 0,
    }
}

fn boxed<T: 'static>(s: LocalBoxStream<'static, T>) -> LocalBoxStream<'static, TaskItem> {
    s.map(|item| Box::new(item) as TaskItem).boxed_local()
}

impl CascadeProtocol {
    pub(crate) fn new(config: CascadeConfig, setup: SessionSetup) -> Self {
        let detector = config.new_detector();
        let stt_usage = stage_usage(Stage::Stt, config.stt.provider(), config.stt.model());
        CascadeProtocol {
            in_rate: config.stt.capabilities().sample_rate,
            out_rate: config.tts.capabilities().sample_rate,
            detector,
            instructions: setup.instructions,
            tools: setup.tools.into_iter().map(ChatTool::from).collect(),
            history: Vec::new(),
            next: 0,
            input_ms: 0,
            user_item: None,
            stt_jobs: HashMap::new(),
            stt_usage,
            response: None,
            last_spoken: None,
            waiting_calls: Vec::new(),
            respond_after_tools: false,
            tools_ready: false,
            placeholders: Vec::new(),
            config,
        }
    }

    /// The conversation so far, as Chat Completions messages (without the system prompt).
    pub fn history(&self) -> &[ChatMessage] {
        &self.history
    }

    fn next_id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    fn new_item(&mut self, prefix: &str) -> Id {
        let n = self.next_id();
        format!("{prefix}_{n}").into()
    }

    fn on_audio(&mut self, chunk: AudioChunk, out: &mut Outbox) {
        let samples: Vec<i16> = if chunk.sample_rate == self.in_rate || chunk.sample_rate == 0 {
            chunk.samples.to_vec()
        } else {
            resample_linear(&chunk.samples, chunk.sample_rate, self.in_rate)
        };
        self.input_ms += samples.len() as u64 * 1000 / self.in_rate.max(1) as u64;
        let events = self.detector.push(&samples, self.in_rate);
        for event in events {
            self.on_turn_event(event, out);
        }
    }

    fn on_turn_event(&mut self, event: TurnEvent, out: &mut Outbox) {
        match event {
            TurnEvent::Started { start_ms } => {
                let item = self.new_item("item");
                self.user_item = Some(item.clone());
                out.publish(SpeechStarted {
                    item_id: Some(item),
                    audio_start_ms: Some(start_ms),
                });
                if self.config.barge_in {
                    self.interrupt("turn_detected", out);
                }
            }
            TurnEvent::Stopped { end_ms, audio } => {
                let item = self
                    .user_item
                    .take()
                    .unwrap_or_else(|| self.new_item("item"));
                out.publish(SpeechStopped {
                    item_id: Some(item.clone()),
                    audio_end_ms: Some(end_ms),
                });
                self.start_stt(item, audio, out);
            }
        }
    }

    fn start_stt(&mut self, item_id: Id, audio: Vec<i16>, out: &mut Outbox) {
        if audio.is_empty() {
            return;
        }
        let id = self.next_id();
        self.stt_usage.requests += 1;
        self.stt_usage.audio_ms += audio.len() as u64 * 1000 / self.in_rate.max(1) as u64;
        let stream = self.config.stt.transcribe(audio.into());
        self.stt_jobs.insert(
            id,
            SttJob {
                item_id,
                text: None,
                failed: false,
            },
        );
        out.spawn(id, boxed(stream));
    }

    fn on_stt(&mut self, id: TaskId, item: Result<SttEvent, LiveError>, out: &mut Outbox) {
        let Some(job) = self.stt_jobs.get_mut(&id) else {
            return;
        };
        match item {
            Ok(SttEvent::Partial(delta)) => out.publish(InputTranscriptChunk {
                item_id: Some(job.item_id.clone()),
                text: delta.into(),
                is_final: false,
            }),
            Ok(SttEvent::Final {
                text,
                input_tokens,
                output_tokens,
            }) => {
                self.stt_usage.input_tokens += input_tokens;
                self.stt_usage.output_tokens += output_tokens;
                self.stt_usage.characters += text.chars().count() as u64;
                out.publish(InputTranscriptChunk {
                    item_id: Some(job.item_id.clone()),
                    text: text.as_str().into(),
                    is_final: true,
                });
                job.text = Some(text);
            }
            Err(e) if e.is_permanent() => {
                job.failed = true;
                out.signal(ProtocolSignal::Fatal(e));
            }
            Err(e) => {
                job.failed = true;
                tracing::warn!(error = %e, "speech-to-text failed; the turn is dropped");
                out.publish(ErrorEvent::new("cascade-stt", e));
            }
        }
    }

    fn on_stt_end(&mut self, id: TaskId, out: &mut Outbox) {
        let Some(job) = self.stt_jobs.remove(&id) else {
            return;
        };
        if job.failed {
            return;
        }
        match job.text {
            Some(text) if !text.trim().is_empty() => {
                self.history.push(ChatMessage::user(text));
                self.start_response(out);
            }
            Some(_) => tracing::debug!("empty transcript: no response"),
            None => out.publish(ErrorEvent::new(
                "cascade-stt",
                LiveError::protocol("speech-to-text ended without a transcript"),
            )),
        }
    }

    fn start_response(&mut self, out: &mut Outbox) {
        if self.response.is_some() {
            self.interrupt("new_turn", out);
        }
        // Chat Completions wants every call answered before the next message.
        for call in std::mem::take(&mut self.waiting_calls) {
            self.history.push(ChatMessage::Tool {
                tool_call_id: call.clone(),
                content: PLACEHOLDER.into(),
            });
            self.placeholders.push(call);
        }
        self.respond_after_tools = false;
        self.tools_ready = false;
        let id = self.new_item("resp");
        let item = self.new_item("item");
        let cfg = &self.config;
        let mut stt = std::mem::replace(
            &mut self.stt_usage,
            stage_usage(Stage::Stt, cfg.stt.provider(), cfg.stt.model()),
        );
        stt.stage = Stage::Stt;
        let response = Response {
            id: id.clone(),
            item: item.clone(),
            llm_task: None,
            tts_task: None,
            sentences: SentenceBuffer::new(cfg.min_chars),
            tts_queue: VecDeque::new(),
            text: String::new(),
            tool_calls: Vec::new(),
            finish_reason: None,
            llm_failed: false,
            tts_failed: false,
            spoken: Spoken {
                item,
                response: id.clone(),
                segments: Vec::new(),
                total_ms: 0,
                first_audio: None,
                played_out: false,
                history_index: None,
            },
            usage: [
                stt,
                stage_usage(Stage::Llm, cfg.llm.provider(), cfg.llm.model()),
                stage_usage(Stage::Tts, cfg.tts.provider(), cfg.tts.model()),
            ],
        };
        self.response = Some(response);
        out.publish(ResponseStarted { response_id: id });
        let mut messages = Vec::with_capacity(self.history.len() + 1);
        if !self.instructions.is_empty() {
            messages.push(ChatMessage::system(self.instructions.clone()));
        }
        messages.extend(self.history.iter().cloned());
        let task = self.next_id();
        let stream = self.config.llm.complete(messages, self.tools.clone());
        if let Some(r) = self.response.as_mut() {
            r.llm_task = Some(task);
            r.usage[1].requests += 1;
        }
        out.spawn(task, boxed(stream));
    }

    fn on_llm(&mut self, item: Result<ChatStreamEvent, LiveError>, out: &mut Outbox) {
        let Some(r) = self.response.as_mut() else {
            return;
        };
        let mut pieces = Vec::new();
        match item {
            Ok(ChatStreamEvent::Text(t)) => {
                out.publish(ModelMessageChunk::new(r.item.clone(), t.as_str()));
                r.text.push_str(&t);
                pieces = r.sentences.push(&t);
            }
            Ok(ChatStreamEvent::ToolCalls(calls)) => r.tool_calls.extend(calls),
            Ok(ChatStreamEvent::Finished { reason }) => r.finish_reason = reason,
            Ok(ChatStreamEvent::Usage(u)) => add_chat_usage(&mut r.usage[1], u),
            Err(e) if e.is_permanent() => {
                r.llm_failed = true;
                out.signal(ProtocolSignal::Fatal(e));
            }
            Err(e) => {
                r.llm_failed = true;
                tracing::warn!(error = %e, "the LLM failed mid-answer");
                out.publish(ErrorEvent::new("cascade-llm", e));
            }
        }
        for piece in pieces {
            self.enqueue_tts(piece, out);
        }
    }

    fn on_llm_end(&mut self, out: &mut Outbox) {
        let Some(r) = self.response.as_mut() else {
            return;
        };
        r.llm_task = None;
        let rest = if r.llm_failed {
            None
        } else {
            r.sentences.flush()
        };
        let content = (!r.text.is_empty()).then(|| r.text.clone());
        let calls = if r.llm_failed {
            Vec::new()
        } else {
            std::mem::take(&mut r.tool_calls)
        };
        if content.is_some() || !calls.is_empty() {
            r.spoken.history_index = Some(self.history.len());
            self.history.push(ChatMessage::Assistant {
                content,
                tool_calls: calls.clone(),
                refusal: None,
            });
        }
        let response_id = r.id.clone();
        if let Some(rest) = rest {
            self.enqueue_tts(rest, out);
        }
        if !calls.is_empty() {
            self.waiting_calls = calls.iter().map(|c| c.id.clone()).collect();
            self.respond_after_tools = true;
            self.tools_ready = false;
            out.publish(ToolCallRequested {
                calls: calls
                    .into_iter()
                    .map(|c| ToolCall {
                        call_id: c.id.as_str().into(),
                        name: c.function.name.as_str().into(),
                        arguments: serde_json::from_str(&c.function.arguments)
                            .unwrap_or(Value::String(c.function.arguments)),
                        response_id: Some(response_id.clone()),
                    })
                    .collect(),
            });
        }
        self.maybe_finish(out);
    }

    fn enqueue_tts(&mut self, piece: String, out: &mut Outbox) {
        let max = self.config.tts.capabilities().max_chars.max(16);
        let Some(r) = self.response.as_mut() else {
            return;
        };
        if r.tts_failed {
            return;
        }
        r.tts_queue.extend(split_long(&piece, max));
        self.pump_tts(out);
    }

    fn pump_tts(&mut self, out: &mut Outbox) {
        let Some(r) = self.response.as_ref() else {
            return;
        };
        if r.tts_task.is_some() || r.tts_failed || r.tts_queue.is_empty() {
            return;
        }
        let task = self.next_id();
        let Some(r) = self.response.as_mut() else {
            return;
        };
        let Some(text) = r.tts_queue.pop_front() else {
            return;
        };
        r.usage[2].requests += 1;
        r.usage[2].characters += text.chars().count() as u64;
        r.spoken.segments.push(Segment {
            text: text.clone(),
            start_ms: r.spoken.total_ms,
            ms: 0,
            complete: false,
        });
        r.tts_task = Some(task);
        out.spawn(task, boxed(self.config.tts.synthesize(text)));
    }

    fn on_tts(&mut self, item: Result<TtsEvent, LiveError>, out: &mut Outbox) {
        let out_rate = self.out_rate;
        let Some(r) = self.response.as_mut() else {
            return;
        };
        match item {
            Ok(TtsEvent::Audio(samples)) if !samples.is_empty() => {
                let ms_before = r.spoken.total_ms;
                let chunk = AudioChunk::new(samples, out_rate).with_origin(Instant::now());
                let us = chunk.duration_us();
                r.spoken.first_audio.get_or_insert_with(Instant::now);
                // The words are already on the stream as the LLM's `ModelMessageChunk`s;
                // what was spoken is published once, as the final `OutputTranscriptChunk`
                // (the session mirrors transcript deltas into `ModelMessageChunk`, which
                // would say them twice).
                if let Some(seg) = r.spoken.segments.last_mut() {
                    seg.ms += us.div_ceil(1000);
                }
                r.spoken.total_ms = ms_before + us.div_ceil(1000);
                r.usage[2].audio_ms += us.div_ceil(1000);
                out.publish(SynthesizedAudio {
                    response_id: Some(r.id.clone()),
                    item_id: r.item.clone(),
                    audio: chunk,
                });
            }
            Ok(TtsEvent::Audio(_)) => {}
            Ok(TtsEvent::Done {
                input_tokens,
                output_tokens,
            }) => {
                r.usage[2].input_tokens += input_tokens;
                r.usage[2].output_tokens += output_tokens;
                if let Some(seg) = r.spoken.segments.last_mut() {
                    seg.complete = true;
                }
            }
            Err(e) if e.is_permanent() => {
                r.tts_failed = true;
                r.tts_queue.clear();
                out.signal(ProtocolSignal::Fatal(e));
            }
            Err(e) => {
                r.tts_failed = true;
                r.tts_queue.clear();
                tracing::warn!(error = %e, "text-to-speech failed mid-answer");
                out.publish(ErrorEvent::new("cascade-tts", e));
            }
        }
    }

    fn on_tts_end(&mut self, out: &mut Outbox) {
        if let Some(r) = self.response.as_mut() {
            r.tts_task = None;
        }
        self.pump_tts(out);
        self.maybe_finish(out);
    }

    /// Ends the response once the LLM is done and everything queued was spoken.
    fn maybe_finish(&mut self, out: &mut Outbox) {
        let done = self.response.as_ref().is_some_and(|r| {
            r.llm_task.is_none() && r.tts_task.is_none() && r.tts_queue.is_empty()
        });
        if !done {
            return;
        }
        let Some(r) = self.response.take() else {
            return;
        };
        let status = if r.llm_failed || r.tts_failed {
            ResponseStatus::Failed
        } else if matches!(
            r.finish_reason.as_deref(),
            Some("length" | "content_filter")
        ) {
            ResponseStatus::Incomplete
        } else {
            ResponseStatus::Completed
        };
        let reason = if r.llm_failed {
            Some("llm_failed".to_owned())
        } else if r.tts_failed {
            Some("tts_failed".to_owned())
        } else {
            r.finish_reason.clone()
        };
        if r.tts_failed {
            // Only what was synthesized reached the user.
            self.set_history_text(r.spoken.history_index, r.spoken.synthesized_text());
        }
        let spoken_text = r.spoken.synthesized_text();
        if !spoken_text.is_empty() {
            out.publish(OutputTranscriptChunk {
                item_id: Some(r.item.clone()),
                text: spoken_text.into(),
                is_final: true,
            });
        }
        out.publish(ResponseDone {
            response_id: r.id.clone(),
            status,
            reason,
            usage: Some(usage_of(&r.usage)),
            text: None,
        });
        self.last_spoken = Some(r.spoken);
        if self.respond_after_tools && self.tools_ready {
            self.respond_after_tools = false;
            self.tools_ready = false;
            self.start_response(out);
        }
    }

    /// Barge-in or cancel: stop the LLM and the TTS, tell the player to flush, cut the
    /// assistant message to what was synthesized.
    fn interrupt(&mut self, reason: &str, out: &mut Outbox) {
        if let Some(mut r) = self.response.take() {
            for task in [r.llm_task.take(), r.tts_task.take()].into_iter().flatten() {
                out.cancel(task);
            }
            out.publish(Interrupted {
                response_id: Some(r.id.clone()),
                item_id: Some(r.item.clone()),
            });
            let heard = r.spoken.synthesized_text();
            match r.spoken.history_index {
                Some(i) => self.set_history_text(Some(i), heard),
                None if !heard.is_empty() => {
                    // The LLM had not finished: its half-made tool calls are dropped.
                    r.spoken.history_index = Some(self.history.len());
                    self.history.push(ChatMessage::assistant(heard));
                }
                None => {}
            }
            self.respond_after_tools = false;
            out.publish(ResponseDone {
                response_id: r.id.clone(),
                status: ResponseStatus::Cancelled,
                reason: Some(reason.to_owned()),
                usage: Some(usage_of(&r.usage)),
                text: None,
            });
            self.last_spoken = Some(r.spoken);
        } else if let Some(spoken) = self.last_spoken.as_ref().filter(|s| s.may_be_playing()) {
            out.publish(Interrupted {
                response_id: Some(spoken.response.clone()),
                item_id: Some(spoken.item.clone()),
            });
        }
        self.respond_after_tools = false;
    }

    fn set_history_text(&mut self, index: Option<usize>, text: String) {
        let Some(ChatMessage::Assistant { content, .. }) =
            index.and_then(|i| self.history.get_mut(i))
        else {
            return;
        };
        *content = (!text.is_empty()).then_some(text);
    }

    fn on_playback_stopped(&mut self, p: PlaybackStopped) {
        let spoken = match (&mut self.response, &mut self.last_spoken) {
            (Some(r), _) if r.spoken.item == p.item_id => &mut r.spoken,
            (_, Some(s)) if s.item == p.item_id => s,
            _ => return,
        };
        spoken.played_out = true;
        if !p.interrupted {
            return;
        }
        let heard = spoken.heard_text(p.played_ms);
        let index = spoken.history_index;
        tracing::debug!(item = %p.item_id, played_ms = p.played_ms, %heard, "cut the assistant message to what was heard");
        self.set_history_text(index, heard);
    }

    fn on_tool_result(&mut self, result: ToolResult, out: &mut Outbox) {
        let id = result.call_id.to_string();
        let content = result.output_text();
        if let Some(pos) = self.placeholders.iter().position(|c| *c == id) {
            self.placeholders.remove(pos);
            for m in self.history.iter_mut() {
                if let ChatMessage::Tool {
                    tool_call_id,
                    content: c,
                } = m
                {
                    if *tool_call_id == id {
                        *c = content.clone();
                    }
                }
            }
            return;
        }
        let Some(pos) = self.waiting_calls.iter().position(|c| *c == id) else {
            tracing::warn!(call_id = %id, "a tool result for a call the model did not make");
            out.publish(ErrorEvent::new(
                "cascade",
                LiveError::protocol(format!("tool result for unknown call `{id}` ignored")),
            ));
            return;
        };
        self.waiting_calls.remove(pos);
        self.history.push(ChatMessage::Tool {
            tool_call_id: id,
            content,
        });
        if self.waiting_calls.is_empty() && self.respond_after_tools {
            if self.response.is_none() {
                self.respond_after_tools = false;
                self.start_response(out);
            } else {
                self.tools_ready = true;
            }
        }
    }

    fn on_text(&mut self, text: UserText, out: &mut Outbox) {
        self.history.push(ChatMessage::user(text.text.to_string()));
        if text.respond {
            self.start_response(out);
        }
    }
}

fn add_chat_usage(u: &mut StageUsage, c: ChatUsage) {
    u.input_tokens += c.prompt_tokens;
    u.output_tokens += c.completion_tokens;
}

fn usage_of(stages: &[StageUsage; 3]) -> Usage {
    let llm = &stages[1];
    Usage {
        input_tokens: llm.input_tokens,
        output_tokens: llm.output_tokens,
        total_tokens: llm.input_tokens + llm.output_tokens,
        input_audio_tokens: None,
        output_audio_tokens: None,
        cached_tokens: None,
        thinking_tokens: None,
        stages: stages.to_vec(),
    }
}

/// Splits `text` into pieces of at most `max` characters at whitespace.
fn split_long(text: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for word in text.split_whitespace() {
        let wlen = word.chars().count();
        if !cur.is_empty() && cur.chars().count() + 1 + wlen > max {
            out.push(std::mem::take(&mut cur));
        }
        if wlen > max {
            let chars: Vec<char> = word.chars().collect();
            for part in chars.chunks(max) {
                out.push(part.iter().collect());
            }
            continue;
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Linear resampling (microphone audio that arrives at another rate than the STT's).
fn resample_linear(samples: &[i16], from: u32, to: u32) -> Vec<i16> {
    if samples.is_empty() || from == 0 {
        return Vec::new();
    }
    let n = (samples.len() as u64 * to as u64 / from as u64) as usize;
    (0..n)
        .map(|i| {
            let pos = i as f64 * from as f64 / to as f64;
            let j = pos as usize;
            let frac = pos - j as f64;
            let a = samples[j.min(samples.len() - 1)] as f64;
            let b = samples[(j + 1).min(samples.len() - 1)] as f64;
            (a + (b - a) * frac).round() as i16
        })
        .collect()
}

impl RealtimeProtocol for CascadeProtocol {
    fn provider(&self) -> &'static str {
        "cascade"
    }

    fn connect_request(&self) -> Result<ConnectRequest, LiveError> {
        Err(LiveError::config("the cascade has no session socket"))
    }

    fn uses_socket(&self) -> bool {
        false
    }

    fn on_open(&mut self, _reconnect: bool, out: &mut Outbox) {
        out.publish(SessionOpened {
            provider: "cascade",
            session_id: None,
        });
        out.signal(ProtocolSignal::Ready { resumed: false });
    }

    fn on_frame(&mut self, _frame: WireFrame, _out: &mut Outbox) {}

    fn on_command(&mut self, command: SessionCommand, out: &mut Outbox) {
        match command {
            SessionCommand::Audio(chunk) => self.on_audio(chunk, out),
            SessionCommand::Text(text) => self.on_text(text, out),
            SessionCommand::ToolResult(result) => self.on_tool_result(result, out),
            SessionCommand::PlaybackStopped(p) => self.on_playback_stopped(p),
            SessionCommand::Control(c) => match c {
                ControlCommand::CommitInput | ControlCommand::ActivityEnd => {
                    if let Some(event) = self.detector.commit() {
                        self.on_turn_event(event, out);
                    }
                }
                ControlCommand::ClearInput => {
                    self.detector.clear();
                    self.user_item = None;
                }
                ControlCommand::CreateResponse => self.start_response(out),
                ControlCommand::CancelResponse => self.interrupt("client_cancelled", out),
                ControlCommand::ActivityStart => {
                    if self.config.barge_in {
                        self.interrupt("turn_detected", out);
                    }
                }
            },
        }
    }

    fn on_close(&mut self, _out: &mut Outbox) {}

    fn input_sample_rate(&self) -> u32 {
        self.in_rate
    }

    fn is_idle(&self) -> bool {
        self.response.is_none() && self.stt_jobs.is_empty() && !self.detector.in_turn()
    }

    fn on_task_item(&mut self, id: TaskId, item: TaskItem, out: &mut Outbox) {
        if self.stt_jobs.contains_key(&id) {
            if let Ok(item) = item.downcast::<Result<SttEvent, LiveError>>() {
                self.on_stt(id, *item, out);
            }
            return;
        }
        let Some(r) = self.response.as_ref() else {
            return;
        };
        if r.llm_task == Some(id) {
            if let Ok(item) = item.downcast::<Result<ChatStreamEvent, LiveError>>() {
                self.on_llm(*item, out);
            }
        } else if r.tts_task == Some(id) {
            if let Ok(item) = item.downcast::<Result<TtsEvent, LiveError>>() {
                self.on_tts(*item, out);
            }
        }
    }

    fn on_task_end(&mut self, id: TaskId, out: &mut Outbox) {
        if self.stt_jobs.contains_key(&id) {
            return self.on_stt_end(id, out);
        }
        let Some(r) = self.response.as_ref() else {
            return;
        };
        if r.llm_task == Some(id) {
            self.on_llm_end(out);
        } else if r.tts_task == Some(id) {
            self.on_tts_end(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spoken() -> Spoken {
        Spoken {
            item: "i".into(),
            response: "r".into(),
            segments: vec![
                Segment {
                    text: "It is sunny.".into(),
                    start_ms: 0,
                    ms: 1000,
                    complete: true,
                },
                Segment {
                    text: "Take a hat with you.".into(),
                    start_ms: 1000,
                    ms: 2000,
                    complete: true,
                },
            ],
            total_ms: 3000,
            first_audio: None,
            played_out: false,
            history_index: None,
        }
    }

    #[test]
    fn heard_text_cuts_at_word_boundaries() {
        let s = spoken();
        assert_eq!(s.heard_text(0), "");
        assert_eq!(s.heard_text(999), "It is sunny");
        assert_eq!(s.heard_text(1000), "It is sunny.");
        assert_eq!(s.heard_text(1500), "It is sunny. Take");
        assert_eq!(s.heard_text(1600), "It is sunny. Take a");
        assert_eq!(s.heard_text(5000), "It is sunny. Take a hat with you.");
        assert_eq!(s.synthesized_text(), "It is sunny. Take a hat with you.");
    }

    #[test]
    fn long_pieces_split_at_words() {
        assert_eq!(split_long("aa bb cc", 5), vec!["aa bb", "cc"]);
        assert_eq!(split_long("abcdefgh", 3), vec!["abc", "def", "gh"]);
    }
}
