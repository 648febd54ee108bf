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
//! (a streaming Stt stage's task opens at Started, is fed the turn's audio as it arrives
//!  and yields partial InputTranscriptChunks while the user speaks; Stopped commits it)
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
use std::time::Instant;

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
use crate::heard::{Segment, Spoken};
use crate::sentence::SentenceBuffer;
use crate::stage::{SttEvent, SttInput, TtsEvent};
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
    /// The streaming STT session of the turn in progress (stages that stream input).
    live_stt: Option<LiveStt>,
    /// STT usage waiting for the response it leads to.
    stt_usage: StageUsage,
    response: Option<Response>,
    last_spoken: Option<Spoken>,
    /// Calls of the last tool round still without a result.
    waiting_calls: Vec<String>,
    placeholders: Vec<String>,
}

/// A streaming STT session being fed the turn in progress.
struct LiveStt {
    input: tokio::sync::mpsc::UnboundedSender<SttInput>,
    /// Samples of the turn already sent.
    sent: usize,
}

struct SttJob {
    item_id: Id,
    text: Option<String>,
    failed: bool,
}

/// A response: one LLM round, or several when the model calls tools (the round asking
/// for the calls, then one continuing with their results, in the same response, as Gemini
/// Live's model turn spans its `toolCall`). Each round is one assistant message.
struct Response {
    id: Id,
    item: Id,
    llm_task: Option<TaskId>,
    tts_task: Option<TaskId>,
    sentences: SentenceBuffer,
    /// Pieces to synthesize, with the round they belong to.
    tts_queue: VecDeque<(usize, String)>,
    /// The LLM round in progress (0, then 1 after the first tool results...).
    round: usize,
    /// The current round's text.
    text: String,
    /// Every round's text (`ResponseDone::text`).
    all_text: String,
    tool_calls: Vec<ChatToolCall>,
    finish_reason: Option<String>,
    /// The round asked for tools: the response goes on when their results are all in.
    awaiting_tools: bool,
    llm_failed: bool,
    tts_failed: bool,
    spoken: Spoken,
    usage: [StageUsage; 3],
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
            live_stt: None,
            stt_usage,
            response: None,
            last_spoken: None,
            waiting_calls: Vec::new(),
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
        self.feed_live_stt();
    }

    /// Opens a streaming STT session for the turn that just started (when the stage
    /// streams input).
    fn open_live_stt(&mut self, item_id: Id, out: &mut Outbox) {
        // A session left open (a turn that never stopped) is aborted.
        self.live_stt = None;
        if !self.config.stt.streams_input() {
            return;
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let input = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .boxed_local();
        let id = self.next_id();
        self.stt_usage.requests += 1;
        let stream = self.config.stt.transcribe_live(input);
        self.stt_jobs.insert(
            id,
            SttJob {
                item_id,
                text: None,
                failed: false,
            },
        );
        self.live_stt = Some(LiveStt { input: tx, sent: 0 });
        out.spawn(id, boxed(stream));
    }

    /// Sends the streaming STT session the turn's audio it has not had yet.
    fn feed_live_stt(&mut self) {
        let Some(live) = self.live_stt.as_mut() else {
            return;
        };
        let audio = self.detector.turn_audio();
        if audio.len() > live.sent {
            // A closed session (it failed) just drops the audio.
            let _ = live
                .input
                .send(SttInput::Audio(audio[live.sent..].to_vec()));
            live.sent = audio.len();
        }
    }

    fn on_turn_event(&mut self, event: TurnEvent, out: &mut Outbox) {
        match event {
            TurnEvent::Started { start_ms } => {
                let item = self.new_item("item");
                self.user_item = Some(item.clone());
                out.publish(SpeechStarted {
                    item_id: Some(item.clone()),
                    audio_start_ms: Some(start_ms),
                });
                self.open_live_stt(item, out);
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
                match self.live_stt.take() {
                    Some(live) => {
                        // The rest of the utterance, then the commit; the session's
                        // final transcript ends its task.
                        self.stt_usage.audio_ms +=
                            audio.len() as u64 * 1000 / self.in_rate.max(1) as u64;
                        if audio.len() > live.sent {
                            let _ = live
                                .input
                                .send(SttInput::Audio(audio[live.sent..].to_vec()));
                        }
                        let _ = live.input.send(SttInput::Commit);
                    }
                    None => self.start_stt(item, audio, out),
                }
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
                self.fatal(e, out);
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
                // The answer being cut goes into the history before the new question.
                if self.response.is_some() {
                    self.interrupt("new_turn", out);
                }
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
        let id = self.new_item("resp");
        let item = self.new_item("item");
        let cfg = &self.config;
        let stt = std::mem::replace(
            &mut self.stt_usage,
            stage_usage(Stage::Stt, cfg.stt.provider(), cfg.stt.model()),
        );
        let response = Response {
            id: id.clone(),
            item: item.clone(),
            llm_task: None,
            tts_task: None,
            sentences: SentenceBuffer::new(cfg.min_chars),
            tts_queue: VecDeque::new(),
            round: 0,
            text: String::new(),
            all_text: String::new(),
            tool_calls: Vec::new(),
            finish_reason: None,
            awaiting_tools: false,
            llm_failed: false,
            tts_failed: false,
            spoken: Spoken {
                item,
                response: id.clone(),
                segments: Vec::new(),
                total_ms: 0,
                first_audio: None,
                played_out: false,
                messages: vec![None],
            },
            usage: [
                stt,
                stage_usage(Stage::Llm, cfg.llm.provider(), cfg.llm.model()),
                stage_usage(Stage::Tts, cfg.tts.provider(), cfg.tts.model()),
            ],
        };
        self.response = Some(response);
        out.publish(ResponseStarted { response_id: id });
        self.start_llm(out);
    }

    /// Runs the LLM on the history for the response's current round.
    fn start_llm(&mut self, out: &mut Outbox) {
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

    /// Every tool result of the round is in: the response goes on with a new LLM round
    /// (its text is spoken after whatever of the previous round is still queued).
    fn continue_response(&mut self, out: &mut Outbox) {
        let min_chars = self.config.min_chars;
        let Some(r) = self.response.as_mut() else {
            return;
        };
        r.awaiting_tools = false;
        r.round += 1;
        r.text.clear();
        r.tool_calls.clear();
        r.finish_reason = None;
        if !r.all_text.is_empty() {
            r.all_text.push(' ');
        }
        r.sentences = SentenceBuffer::new(min_chars);
        r.spoken.messages.push(None);
        self.start_llm(out);
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
                r.all_text.push_str(&t);
                pieces = r.sentences.push(&t);
            }
            Ok(ChatStreamEvent::ToolCalls(calls)) => r.tool_calls.extend(calls),
            Ok(ChatStreamEvent::Finished { reason }) => r.finish_reason = reason,
            Ok(ChatStreamEvent::Usage(u)) => add_chat_usage(&mut r.usage[1], u),
            Err(e) if e.is_permanent() => return self.fatal(e, out),
            Err(e) => {
                r.llm_failed = true;
                tracing::warn!(error = %e, "the LLM failed mid-answer");
                out.publish(ErrorEvent::new("cascade-llm", e));
            }
        }
        let round = r.round;
        for piece in pieces {
            self.enqueue_tts(round, piece, out);
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
        let round = r.round;
        if content.is_some() || !calls.is_empty() {
            r.spoken.messages[round] = Some(self.history.len());
            self.history.push(ChatMessage::Assistant {
                content,
                tool_calls: calls.clone(),
                refusal: None,
            });
        }
        let response_id = r.id.clone();
        if let Some(rest) = rest {
            self.enqueue_tts(round, rest, out);
        }
        if !calls.is_empty() {
            // Published now, inside the running response (the text before the calls is
            // spoken while they run); the response goes on with their results.
            self.waiting_calls = calls.iter().map(|c| c.id.clone()).collect();
            if let Some(r) = self.response.as_mut() {
                r.awaiting_tools = true;
            }
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

    fn enqueue_tts(&mut self, round: usize, piece: String, out: &mut Outbox) {
        if self.config.text_only {
            return;
        }
        let max = self.config.tts.capabilities().max_chars.max(16);
        let Some(r) = self.response.as_mut() else {
            return;
        };
        if r.tts_failed {
            return;
        }
        r.tts_queue
            .extend(split_long(&piece, max).into_iter().map(|p| (round, p)));
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
        let Some((round, text)) = r.tts_queue.pop_front() else {
            return;
        };
        r.usage[2].requests += 1;
        r.usage[2].characters += text.chars().count() as u64;
        r.spoken.segments.push(Segment {
            round,
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
            Err(e) if e.is_permanent() => self.fatal(e, out),
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

    /// Ends the response once the LLM is done, no tool result is awaited and everything
    /// queued was spoken.
    fn maybe_finish(&mut self, out: &mut Outbox) {
        let done = self.response.as_ref().is_some_and(|r| {
            r.llm_task.is_none()
                && r.tts_task.is_none()
                && r.tts_queue.is_empty()
                && !(r.awaiting_tools && !r.llm_failed && !r.tts_failed)
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
        if (r.tts_failed || r.llm_failed) && !self.config.text_only {
            // Only what was synthesized reached the user.
            self.cut_history(&r.spoken, None);
        }
        self.end_response(r, status, reason, out);
    }

    /// Publishes the end of `r`: what was spoken (final output transcript), then
    /// `ResponseDone`.
    fn end_response(
        &mut self,
        r: Response,
        status: ResponseStatus,
        reason: Option<String>,
        out: &mut Outbox,
    ) {
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
            text: (!r.all_text.is_empty()).then(|| r.all_text.clone().into()),
        });
        self.last_spoken = Some(r.spoken);
    }

    /// An error retrying cannot fix (a refused key, an unknown model, an exhausted quota):
    /// the response in progress ends as failed, then the session ends with it (one fatal
    /// `ErrorEvent` and `SessionClosed`, from the runtime).
    fn fatal(&mut self, e: LiveError, out: &mut Outbox) {
        if let Some(mut r) = self.response.take() {
            for task in [r.llm_task.take(), r.tts_task.take()].into_iter().flatten() {
                out.cancel(task);
            }
            self.cut_history(&r.spoken, None);
            let reason = format!("{:?}", e.kind).to_lowercase();
            self.end_response(r, ResponseStatus::Failed, Some(reason), out);
        }
        out.signal(ProtocolSignal::Fatal(e));
    }

    /// Barge-in or cancel: stop the LLM and the TTS, tell the player to flush, cut the
    /// assistant messages to what was synthesized.
    fn interrupt(&mut self, reason: &str, out: &mut Outbox) {
        if let Some(mut r) = self.response.take() {
            for task in [r.llm_task.take(), r.tts_task.take()].into_iter().flatten() {
                out.cancel(task);
            }
            out.publish(Interrupted {
                response_id: Some(r.id.clone()),
                item_id: Some(r.item.clone()),
            });
            let round = r.round;
            if r.spoken.messages[round].is_none() {
                // The LLM had not finished this round: its half-made tool calls are
                // dropped, and the message holds what reached the user.
                let text = if self.config.text_only {
                    r.text.clone()
                } else {
                    r.spoken.texts(None).remove(&round).unwrap_or_default()
                };
                if !text.is_empty() {
                    r.spoken.messages[round] = Some(self.history.len());
                    self.history.push(ChatMessage::assistant(text));
                }
            }
            if !self.config.text_only {
                self.cut_history(&r.spoken, None);
            }
            out.publish(ResponseDone {
                response_id: r.id.clone(),
                status: ResponseStatus::Cancelled,
                reason: Some(reason.to_owned()),
                usage: Some(usage_of(&r.usage)),
                text: (!r.all_text.is_empty()).then(|| r.all_text.clone().into()),
            });
            self.last_spoken = Some(r.spoken);
        } else if let Some(spoken) = self.last_spoken.as_ref().filter(|s| s.may_be_playing()) {
            out.publish(Interrupted {
                response_id: Some(spoken.response.clone()),
                item_id: Some(spoken.item.clone()),
            });
        }
    }

    /// Cuts each assistant message of `spoken` to its synthesized text (`played_ms`
    /// `None`) or to what was heard after `played_ms`.
    fn cut_history(&mut self, spoken: &Spoken, played_ms: Option<u64>) {
        let texts = spoken.texts(played_ms);
        for (round, index) in spoken.messages.iter().enumerate() {
            let Some(ChatMessage::Assistant {
                content,
                tool_calls,
                ..
            }) = index.and_then(|i| self.history.get_mut(i))
            else {
                continue;
            };
            let text = texts.get(&round).cloned().unwrap_or_default();
            *content = if !text.is_empty() {
                Some(text)
            } else if tool_calls.is_empty() {
                // An assistant message needs content or calls.
                Some(String::new())
            } else {
                None
            };
        }
    }

    fn on_playback_stopped(&mut self, p: PlaybackStopped) {
        let spoken = match (&mut self.response, &mut self.last_spoken) {
            (Some(r), _) if r.spoken.item == p.item_id => &mut r.spoken,
            (_, Some(s)) if s.item == p.item_id => s,
            _ => return,
        };
        spoken.played_out = true;
        if !p.interrupted || self.config.text_only {
            return;
        }
        let spoken = spoken.clone();
        tracing::debug!(item = %p.item_id, played_ms = p.played_ms, "cut the assistant message to what was heard");
        self.cut_history(&spoken, Some(p.played_ms));
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
            // A repeated result (a retried executor, say) or one for a call the model did
            // not make: the model must not get it (again).
            tracing::warn!(call_id = %id, "a tool result for no pending call is ignored");
            return;
        };
        self.waiting_calls.remove(pos);
        self.history.push(ChatMessage::Tool {
            tool_call_id: id,
            content,
        });
        let go_on = self.waiting_calls.is_empty()
            && self
                .response
                .as_ref()
                .is_some_and(|r| r.awaiting_tools && r.llm_task.is_none());
        if go_on {
            self.continue_response(out);
        }
    }

    fn on_text(&mut self, text: UserText, out: &mut Outbox) {
        if text.respond && self.response.is_some() {
            self.interrupt("new_turn", out);
        }
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
                    // Dropping the input without a commit aborts the streaming session,
                    // which ends with an error coded `cancelled` (an ErrorEvent).
                    self.live_stt = None;
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

    #[test]
    fn long_pieces_split_at_words() {
        assert_eq!(split_long("aa bb cc", 5), vec!["aa bb", "cc"]);
        assert_eq!(split_long("abcdefgh", 3), vec!["abc", "def", "gh"]);
    }
}
