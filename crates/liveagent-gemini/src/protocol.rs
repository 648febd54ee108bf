//! [`GeminiProtocol`]: the sans-IO state machine of a Gemini Live conversation.
//!
//! It lives as long as the conversation, across connections, and keeps what a new
//! connection needs: the latest usable resumption handle, the frames the server has not
//! consumed yet (transparent mode), tool calls waiting for results, and the conversation
//! history to replay when the session cannot be resumed.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use liveagent_core::{
    AudioChunk, ConnectRequest, ControlCommand, ErrorKind, Id, InputTranscriptChunk, Interrupted,
    LiveError, ModelMessageChunk, Outbox, OutputTranscriptChunk, PlaybackStopped, ProtocolSignal,
    RealtimeProtocol, ResponseDone, ResponseStarted, ResponseStatus, Secret, SessionCommand,
    SessionOpened, SessionSetup, SessionUpdated, SpeechStarted, SpeechStopped, SynthesizedAudio,
    ToolCall, ToolCallCancelled, ToolCallRequested, ToolResult, Usage, UserText, WireFrame,
};
use serde_json::Value;

use crate::config::{Output, RealtimeConfig, INPUT_SAMPLE_RATE, OUTPUT_SAMPLE_RATE};
use crate::errors::classify_close;
use crate::history::{History, HistoryEntry};
use crate::wire::{self, *};

const PROVIDER: &str = "gemini";
/// Most frames kept for a transparent resend.
const MAX_UNCONSUMED_FRAMES: usize = 2_000;
/// Most bytes kept for a transparent resend.
const MAX_UNCONSUMED_BYTES: usize = 8 * 1024 * 1024;
/// Most commands held if the runtime sends some before the session is ready.
const MAX_HELD_COMMANDS: usize = 1_000;
/// Answered call ids remembered to drop duplicates.
const MAX_ANSWERED_IDS: usize = 4_096;
/// Connections closed during the handshake, in a row, before an error is reported.
const SETUP_FAILURES_REPORTED: u32 = 3;
/// An input transcript piece this recent means the user may still be speaking.
const SPEAKING_WINDOW: Duration = Duration::from_millis(1500);

/// Where the connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// No connection opened yet.
    Idle,
    /// `setup` sent, waiting for `setupComplete`.
    AwaitingSetup,
    /// Commands flow.
    Ready,
    /// The socket is gone.
    Closed,
}

#[derive(Clone, Debug)]
struct Handle {
    value: String,
    received: Instant,
    /// History sequence number when the handle arrived: entries from there on are not in the
    /// state the handle restores.
    history_seq: u64,
}

#[derive(Debug)]
struct Turn {
    response_id: Id,
    item_id: Id,
    text: String,
    transcript: String,
    transcript_final: bool,
    audio_samples: u64,
    audio_rate: u32,
    odd_byte: Option<u8>,
    usage: Option<Usage>,
}

#[derive(Debug)]
struct PendingCall {
    call_id: String,
    wire_id: Option<String>,
    name: String,
    answered: bool,
    cancelled: bool,
}

#[derive(Debug)]
struct Batch {
    calls: Vec<PendingCall>,
    results: Vec<FunctionResponse>,
    /// The server no longer knows these calls (new session): results go as `clientContent`.
    orphaned: bool,
    history_seq: u64,
}

impl Batch {
    fn complete(&self) -> bool {
        self.calls.iter().all(|c| c.answered || c.cancelled)
    }
}

/// The Gemini Live protocol state machine (implements [`RealtimeProtocol`]).
///
/// Build it with [`RealtimeConfig::build_protocol`](liveagent_core::RealtimeConfig::build_protocol)
/// or [`GeminiProtocol::new`], and hand it to `liveagent_session::start_session`.
pub struct GeminiProtocol {
    config: RealtimeConfig,
    setup: SessionSetup,
    api_key: Option<Secret>,
    phase: Phase,
    ever_ready: bool,
    // resumption
    handle: Option<Handle>,
    using_handle: Option<Handle>,
    // transparent mode
    next_index: u64,
    unconsumed: VecDeque<(u64, String)>,
    unconsumed_bytes: usize,
    resend: Vec<String>,
    overflow_warned: bool,
    // commands that arrived while not ready
    held: VecDeque<SessionCommand>,
    // turns
    turn_seq: u64,
    turn: Option<Turn>,
    last_turn: Option<(Id, Id)>,
    input_since_turn: bool,
    input: String,
    input_split: usize,
    last_input_at: Option<Instant>,
    user_speaking: bool,
    pending_usage: Option<Usage>,
    // tools
    batches: Vec<Batch>,
    answered: HashSet<String>,
    answered_order: VecDeque<String>,
    cancelled: HashSet<String>,
    call_seq: u64,
    // manual activity
    activity_open: bool,
    history: History,
    frames_received: u64,
    /// Connections closed before `setupComplete`, in a row.
    setup_failures: u32,
}

impl std::fmt::Debug for GeminiProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeminiProtocol")
            .field("model", &self.config.model)
            .field("phase", &self.phase)
            .field("has_handle", &self.handle.is_some())
            .field("turn", &self.turn.as_ref().map(|t| t.response_id.clone()))
            .field("pending_batches", &self.batches.len())
            .field("history", &self.history.len())
            .finish()
    }
}

impl GeminiProtocol {
    /// A protocol for one conversation. Fails on an invalid configuration, or when the
    /// default Google endpoint is used without an API key.
    pub fn new(config: RealtimeConfig, setup: SessionSetup) -> Result<Self, LiveError> {
        config.validate()?;
        let api_key = config.resolve_api_key();
        if api_key.is_none() && config.base_url == crate::config::DEFAULT_BASE_URL {
            return Err(LiveError::new(
                ErrorKind::Auth,
                "gemini: no API key (set RealtimeConfig::api_key, GEMINI_API_KEY or GOOGLE_API_KEY)",
            ));
        }
        let history = History::new(config.max_history_entries);
        Ok(GeminiProtocol {
            config,
            setup,
            api_key,
            phase: Phase::Idle,
            ever_ready: false,
            handle: None,
            using_handle: None,
            next_index: 0,
            unconsumed: VecDeque::new(),
            unconsumed_bytes: 0,
            resend: Vec::new(),
            overflow_warned: false,
            held: VecDeque::new(),
            turn_seq: 0,
            turn: None,
            last_turn: None,
            input_since_turn: false,
            input: String::new(),
            input_split: 0,
            last_input_at: None,
            user_speaking: false,
            pending_usage: None,
            batches: Vec::new(),
            answered: HashSet::new(),
            answered_order: VecDeque::new(),
            cancelled: HashSet::new(),
            call_seq: 0,
            activity_open: false,
            history,
            frames_received: 0,
            setup_failures: 0,
        })
    }

    /// The connection phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The latest usable resumption handle, if any.
    pub fn resumption_handle(&self) -> Option<&str> {
        self.handle.as_ref().map(|h| h.value.as_str())
    }

    /// The remembered conversation.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Frames kept for a transparent resend (their client message index and JSON).
    pub fn unconsumed_frames(&self) -> impl Iterator<Item = &(u64, String)> {
        self.unconsumed.iter()
    }

    /// The `setup` frame for a connection, resuming `handle` if given.
    pub fn setup_message(&self, handle: Option<&str>) -> Setup {
        let c = &self.config;
        let audio = c.is_audio_output();
        let speech_config = match &c.output {
            Output::Audio(a) if a.voice.is_some() || a.language_code.is_some() => {
                Some(SpeechConfig {
                    voice_config: a.voice.as_ref().map(|v| VoiceConfig {
                        prebuilt_voice_config: PrebuiltVoiceConfig {
                            voice_name: v.clone(),
                        },
                    }),
                    language_code: a.language_code.clone(),
                })
            }
            _ => None,
        };
        let generation_config = GenerationConfig {
            response_modalities: vec![if audio {
                Modality::Audio
            } else {
                Modality::Text
            }],
            speech_config,
            temperature: c.temperature,
            max_output_tokens: c.max_output_tokens,
        };
        let instructions = self.setup.instructions.trim();
        let tools = if self.setup.tools.is_empty() {
            None
        } else {
            Some(vec![Tool {
                function_declarations: self
                    .setup
                    .tools
                    .iter()
                    .map(|t| FunctionDeclaration {
                        name: t.name.clone(),
                        description: t.description.clone(),
                        parameters_json_schema: Some(json_schema_for_gemini(&t.parameters)),
                    })
                    .collect(),
            }])
        };
        let input = &c.input;
        let aad = &input.activity_detection;
        let realtime_input_config = if c.activity_detection_is_default()
            && input.activity_handling.is_none()
            && input.turn_coverage.is_none()
        {
            None
        } else {
            Some(RealtimeInputConfig {
                automatic_activity_detection: (!c.activity_detection_is_default()).then_some(
                    AutomaticActivityDetection {
                        disabled: Some(aad.disabled),
                        start_of_speech_sensitivity: aad.start_sensitivity,
                        end_of_speech_sensitivity: aad.end_sensitivity,
                        prefix_padding_ms: aad.prefix_padding_ms,
                        silence_duration_ms: aad.silence_duration_ms,
                    },
                ),
                activity_handling: input.activity_handling,
                turn_coverage: input.turn_coverage,
            })
        };
        let session_resumption = if c.resumption.enabled {
            Some(SessionResumptionConfig {
                handle: handle.map(str::to_owned),
                transparent: c.resumption.transparent.then_some(true),
            })
        } else {
            None
        };
        Setup {
            model: if c.model.starts_with("models/") {
                c.model.clone()
            } else {
                format!("models/{}", c.model)
            },
            generation_config: Some(generation_config),
            system_instruction: (!instructions.is_empty())
                .then(|| Content::text(None, instructions)),
            tools,
            realtime_input_config,
            input_audio_transcription: input.transcribe.then(AudioTranscriptionConfig::default),
            output_audio_transcription: (input.transcribe && audio)
                .then(AudioTranscriptionConfig::default),
            session_resumption,
            context_window_compression: c.compression.map(|cc| ContextWindowCompression {
                trigger_tokens: cc.trigger_tokens,
                sliding_window: SlidingWindow {
                    target_tokens: cc.target_tokens,
                },
            }),
        }
    }

    /// Classifies the close frame the server sent (Gemini reports errors this way) and
    /// reports it: a non-fatal [`ErrorEvent`](liveagent_core::ErrorEvent), or for errors retrying cannot fix (bad key,
    /// unknown model, quota, a `setup` the server refuses) a [`ProtocolSignal::Fatal`].
    ///
    /// The session runtime should call this with the close code and reason before
    /// [`on_close`](RealtimeProtocol::on_close).
    pub fn on_close_frame(&mut self, code: Option<u16>, reason: &str, out: &mut Outbox) {
        let reason = match &self.api_key {
            Some(k) => k.redact(reason),
            None => reason.to_owned(),
        };
        let Some(mut err) = classify_close(code, &reason) else {
            tracing::debug!(provider = PROVIDER, ?code, "normal close");
            return;
        };
        let resuming = self.phase == Phase::AwaitingSetup && self.using_handle.is_some();
        if resuming && err.kind != ErrorKind::Auth {
            // The server would not resume: forget the handle, start afresh next time.
            tracing::warn!(provider = PROVIDER, error = %err, "resumption refused; the next connection starts a new session");
            self.handle = None;
            out.error(PROVIDER, err);
            return;
        }
        if self.phase == Phase::AwaitingSetup && err.kind == ErrorKind::InvalidRequest {
            // The server refused our setup: the configuration is wrong, retrying cannot help.
            err.kind = ErrorKind::Config;
        }
        if err.is_permanent() {
            tracing::error!(provider = PROVIDER, error = %err, "fatal close");
            out.signal(ProtocolSignal::Fatal(err));
        } else {
            tracing::warn!(provider = PROVIDER, error = %err, "connection closed with an error");
            out.error(PROVIDER, err);
        }
    }

    // --------------------------------------------------------------------------------------
    // sending
    // --------------------------------------------------------------------------------------

    fn send(&mut self, msg: ClientMessage, out: &mut Outbox) {
        let text = msg.to_json();
        self.send_text(text, out);
    }

    fn send_text(&mut self, text: String, out: &mut Outbox) {
        let index = self.next_index;
        self.next_index += 1;
        if self.config.resumption.enabled && self.config.resumption.transparent && index > 0 {
            self.unconsumed_bytes += text.len();
            self.unconsumed.push_back((index, text.clone()));
            while self.unconsumed.len() > MAX_UNCONSUMED_FRAMES
                || self.unconsumed_bytes > MAX_UNCONSUMED_BYTES
            {
                if let Some((_, f)) = self.unconsumed.pop_front() {
                    self.unconsumed_bytes -= f.len();
                }
                if !self.overflow_warned {
                    self.overflow_warned = true;
                    tracing::warn!(
                        provider = PROVIDER,
                        "transparent resumption: the server has not reported consumed messages; \
                         dropping the oldest kept frames (a resend after a drop may be incomplete)"
                    );
                }
            }
        }
        out.send_text(text);
    }

    // --------------------------------------------------------------------------------------
    // server frames
    // --------------------------------------------------------------------------------------

    fn on_setup_complete(&mut self, done: SetupComplete, out: &mut Outbox) {
        if self.phase != Phase::AwaitingSetup {
            tracing::debug!(provider = PROVIDER, "unexpected setupComplete ignored");
            return;
        }
        let handle = self.using_handle.clone();
        let resumed = handle.is_some();
        self.phase = Phase::Ready;
        self.setup_failures = 0;
        if !self.ever_ready {
            out.publish(SessionOpened {
                provider: PROVIDER,
                session_id: done.session_id,
            });
        }
        out.publish(SessionUpdated { provider: PROVIDER });
        if self.ever_ready || !self.history.is_empty() {
            let transparent = self.config.resumption.transparent;
            match &handle {
                Some(h) if transparent => {
                    let frames = std::mem::take(&mut self.resend);
                    tracing::info!(
                        provider = PROVIDER,
                        frames = frames.len(),
                        "session resumed (transparent): resending unconsumed frames"
                    );
                    for f in frames {
                        self.send_text(f, out);
                    }
                    self.orphan_batches_from(h.history_seq);
                }
                Some(h) => {
                    let n = self.replay_history(h.history_seq, out);
                    tracing::info!(
                        provider = PROVIDER,
                        replayed_frames = n,
                        "session resumed with a handle"
                    );
                    self.orphan_batches_from(h.history_seq);
                }
                None => {
                    let n = self.replay_history(0, out);
                    tracing::info!(
                        provider = PROVIDER,
                        replayed_frames = n,
                        entries = self.history.len(),
                        "new session: conversation history replayed"
                    );
                    self.orphan_batches_from(0);
                }
            }
        }
        self.ever_ready = true;
        out.signal(ProtocolSignal::Ready { resumed });
        // Anything the runtime handed over too early.
        while let Some(cmd) = self.held.pop_front() {
            self.on_command(cmd, out);
        }
    }

    fn replay_history(&mut self, from_seq: u64, out: &mut Outbox) -> usize {
        let frames = self.history.replay_turns(from_seq);
        let n = frames.len();
        for turns in frames {
            self.send(
                ClientMessage::ClientContent(ClientContent {
                    turns,
                    turn_complete: false,
                }),
                out,
            );
        }
        n
    }

    fn orphan_batches_from(&mut self, seq: u64) {
        for b in &mut self.batches {
            if b.history_seq >= seq && !b.orphaned {
                b.orphaned = true;
                tracing::debug!(
                    provider = PROVIDER,
                    "tool calls from before the reconnect will be answered as conversation content"
                );
            }
        }
    }

    fn ensure_turn(&mut self, out: &mut Outbox) -> &mut Turn {
        if self.turn.is_none() {
            self.turn_seq += 1;
            let n = self.turn_seq;
            let response_id: Id = format!("gemini-turn-{n}").into();
            let item_id: Id = format!("gemini-item-{n}").into();
            self.input_split = self.input.len();
            out.publish(ResponseStarted {
                response_id: response_id.clone(),
            });
            self.turn = Some(Turn {
                response_id,
                item_id,
                text: String::new(),
                transcript: String::new(),
                transcript_final: false,
                audio_samples: 0,
                audio_rate: OUTPUT_SAMPLE_RATE,
                odd_byte: None,
                usage: self.pending_usage.take(),
            });
        }
        self.turn.as_mut().expect("turn was just set")
    }

    fn flush_input(&mut self, upto: usize, out: &mut Outbox) {
        let upto = upto.min(self.input.len());
        if !self.input.is_char_boundary(upto) {
            return;
        }
        let rest = self.input.split_off(upto);
        let text = std::mem::replace(&mut self.input, rest);
        self.input_split = 0;
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        out.publish(InputTranscriptChunk {
            item_id: None,
            text: text.into(),
            is_final: true,
        });
        self.history.push(HistoryEntry::User(text.to_owned()));
    }

    fn finish_turn(&mut self, status: ResponseStatus, reason: Option<&str>, out: &mut Outbox) {
        let Some(turn) = self.turn.take() else {
            return;
        };
        if !turn.transcript.trim().is_empty() && !turn.transcript_final {
            out.publish(OutputTranscriptChunk {
                item_id: Some(turn.item_id.clone()),
                text: turn.transcript.trim().into(),
                is_final: true,
            });
        }
        let text = if !turn.transcript.trim().is_empty()
            && (self.config.is_audio_output() || turn.text.trim().is_empty())
        {
            turn.transcript.clone()
        } else {
            turn.text.clone()
        };
        let audio_ms = if turn.audio_rate > 0 {
            turn.audio_samples * 1000 / turn.audio_rate as u64
        } else {
            0
        };
        self.history.push(HistoryEntry::Model {
            text,
            item_id: turn.item_id.to_string(),
            audio_ms,
            heard_ms: None,
        });
        out.publish(ResponseDone {
            response_id: turn.response_id.clone(),
            status,
            reason: reason.map(str::to_owned),
            usage: turn.usage,
        });
        self.last_turn = Some((turn.response_id, turn.item_id));
        self.input_since_turn = false;
    }

    fn on_input_transcription(&mut self, t: Transcription, out: &mut Outbox) {
        if let Some(text) = t.text.filter(|s| !s.is_empty()) {
            self.input.push_str(&text);
            self.input_since_turn = true;
            self.last_input_at = Some(Instant::now());
            out.publish(InputTranscriptChunk {
                item_id: None,
                text: text.into(),
                is_final: false,
            });
        }
        if t.finished == Some(true) {
            self.flush_input(usize::MAX, out);
        }
    }

    fn on_output_transcription(&mut self, t: Transcription, out: &mut Outbox) {
        let text = t.text.filter(|s| !s.is_empty());
        if self.turn.is_none() && !self.input_since_turn {
            // A late piece of the turn that just ended (transcripts are not ordered relative
            // to turnComplete).
            if let (Some((_, item)), Some(text)) = (self.last_turn.clone(), text.clone()) {
                tracing::debug!(
                    provider = PROVIDER,
                    "late output transcript attached to the last turn"
                );
                out.publish(OutputTranscriptChunk {
                    item_id: Some(item.clone()),
                    text: text.clone().into(),
                    is_final: t.finished == Some(true),
                });
                self.history.append_model_text(&item, &text);
                return;
            }
        }
        let Some(text) = text else {
            if t.finished == Some(true) {
                if let Some(turn) = self.turn.as_mut() {
                    if !turn.transcript_final && !turn.transcript.trim().is_empty() {
                        turn.transcript_final = true;
                        let whole = turn.transcript.trim().to_owned();
                        let item = turn.item_id.clone();
                        out.publish(OutputTranscriptChunk {
                            item_id: Some(item),
                            text: whole.into(),
                            is_final: true,
                        });
                    }
                }
            }
            return;
        };
        let turn = self.ensure_turn(out);
        turn.transcript.push_str(&text);
        turn.transcript_final = false;
        let item = turn.item_id.clone();
        out.publish(OutputTranscriptChunk {
            item_id: Some(item.clone()),
            text: text.into(),
            is_final: false,
        });
        if t.finished == Some(true) {
            let turn = self.turn.as_mut().expect("turn exists");
            turn.transcript_final = true;
            out.publish(OutputTranscriptChunk {
                item_id: Some(item),
                text: turn.transcript.trim().into(),
                is_final: true,
            });
        }
    }

    fn on_model_turn(&mut self, content: Content, out: &mut Outbox) {
        for part in content.parts {
            if let Some(blob) = part.inline_data {
                self.on_inline_data(blob, out);
            } else if let Some(text) = part.text {
                if part.thought == Some(true) {
                    tracing::trace!(provider = PROVIDER, "thought part skipped");
                    continue;
                }
                if text.is_empty() {
                    continue;
                }
                let turn = self.ensure_turn(out);
                turn.text.push_str(&text);
                let item = turn.item_id.clone();
                out.publish(ModelMessageChunk::new(item, text));
            } else {
                tracing::debug!(
                    provider = PROVIDER,
                    "model turn part of another kind ignored"
                );
            }
        }
    }

    fn on_inline_data(&mut self, blob: Blob, out: &mut Outbox) {
        let mime = blob.mime_type.to_ascii_lowercase();
        if !(mime.starts_with("audio/pcm") || mime.starts_with("audio/l16") || mime.is_empty()) {
            tracing::debug!(provider = PROVIDER, mime = %blob.mime_type, "inline data that is not PCM audio ignored");
            return;
        }
        let mut bytes = match wire::decode_base64(&blob.data) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(provider = PROVIDER, error = %e, "audio chunk with bad base64 dropped");
                out.error(
                    PROVIDER,
                    LiveError::protocol(format!("audio chunk with invalid base64 dropped: {e}")),
                );
                return;
            }
        };
        let rate = wire::mime_rate(&mime).unwrap_or(OUTPUT_SAMPLE_RATE);
        let turn = self.ensure_turn(out);
        if let Some(b) = turn.odd_byte.take() {
            bytes.insert(0, b);
        }
        if bytes.len() % 2 == 1 {
            turn.odd_byte = bytes.pop();
        }
        if bytes.is_empty() {
            return;
        }
        let audio = AudioChunk::from_le_bytes(&bytes, rate);
        turn.audio_rate = rate;
        turn.audio_samples += audio.len() as u64;
        out.publish(SynthesizedAudio {
            response_id: Some(turn.response_id.clone()),
            item_id: turn.item_id.clone(),
            audio,
        });
    }

    fn on_interrupted(&mut self, out: &mut Outbox) {
        let (response_id, item_id) = match (&self.turn, &self.last_turn) {
            (Some(t), _) => (Some(t.response_id.clone()), Some(t.item_id.clone())),
            (None, Some((r, i))) => (Some(r.clone()), Some(i.clone())),
            (None, None) => (None, None),
        };
        tracing::debug!(provider = PROVIDER, ?response_id, "interrupted");
        out.publish(Interrupted {
            response_id,
            item_id,
        });
        if self.turn.is_some() {
            let split = self.input_split;
            self.flush_input(split, out);
            self.finish_turn(ResponseStatus::Cancelled, Some("turn_detected"), out);
        }
    }

    fn on_turn_complete(&mut self, reason: Option<String>, out: &mut Outbox) {
        if self.turn.is_none() {
            // The turn ended already (interrupted), or the model produced nothing.
            tracing::debug!(provider = PROVIDER, "turnComplete without an open turn");
            self.pending_usage = None;
            return;
        }
        self.flush_input(usize::MAX, out);
        let reason = reason.filter(|r| !r.is_empty() && r != "TURN_COMPLETE_REASON_UNSPECIFIED");
        let (status, reason) = match reason.as_deref() {
            None => (ResponseStatus::Completed, None),
            Some("NEED_MORE_INPUT") => (
                ResponseStatus::Completed,
                Some("need_more_input".to_owned()),
            ),
            Some(r) => (ResponseStatus::Incomplete, Some(r.to_ascii_lowercase())),
        };
        self.finish_turn(status, reason.as_deref(), out);
    }

    fn on_tool_call(&mut self, call: wire::ToolCall, out: &mut Outbox) {
        self.flush_input(usize::MAX, out);
        let response_id = self.ensure_turn(out).response_id.clone();
        let history_seq = self.history.next_seq();
        let mut calls = Vec::new();
        let mut pending = Vec::new();
        for fc in call.function_calls {
            let wire_id = fc.id.filter(|id| !id.is_empty());
            let call_id = match &wire_id {
                Some(id) => id.clone(),
                None => {
                    self.call_seq += 1;
                    format!("gemini-call-{}", self.call_seq)
                }
            };
            if self.known_call(&call_id) {
                tracing::debug!(provider = PROVIDER, %call_id, "repeated tool call ignored");
                continue;
            }
            let args = fc.args.unwrap_or_else(|| Value::Object(Default::default()));
            self.history.push(HistoryEntry::FunctionCall {
                id: wire_id.clone(),
                name: fc.name.clone(),
                args: args.clone(),
            });
            calls.push(ToolCall {
                call_id: call_id.clone().into(),
                name: fc.name.clone().into(),
                arguments: args,
                response_id: Some(response_id.clone()),
            });
            pending.push(PendingCall {
                call_id,
                wire_id,
                name: fc.name,
                answered: false,
                cancelled: false,
            });
        }
        if calls.is_empty() {
            return;
        }
        self.batches.push(Batch {
            calls: pending,
            results: Vec::new(),
            orphaned: false,
            history_seq,
        });
        out.publish(ToolCallRequested { calls });
    }

    fn known_call(&self, id: &str) -> bool {
        self.answered.contains(id)
            || self.cancelled.contains(id)
            || self
                .batches
                .iter()
                .any(|b| b.calls.iter().any(|c| c.call_id == id))
    }

    fn on_tool_call_cancellation(&mut self, c: wire::ToolCallCancellation, out: &mut Outbox) {
        let mut ids: Vec<Id> = Vec::new();
        for id in c.ids {
            let mut found = false;
            for b in &mut self.batches {
                for call in &mut b.calls {
                    if call.call_id == id && !call.answered {
                        call.cancelled = true;
                        found = true;
                    }
                }
            }
            if !found {
                tracing::debug!(provider = PROVIDER, call_id = %id, "cancellation of an unknown or answered call");
            }
            self.cancelled.insert(id.clone());
            ids.push(id.into());
        }
        if !ids.is_empty() {
            out.publish(ToolCallCancelled { call_ids: ids });
        }
        // A batch may now be complete (every other call answered).
        let ready: Vec<usize> = (0..self.batches.len())
            .filter(|&i| self.batches[i].complete())
            .collect();
        for i in ready.into_iter().rev() {
            self.send_results(i, out);
        }
    }

    fn on_resumption_update(&mut self, u: SessionResumptionUpdate) {
        if let Some(idx) = u.last_consumed_client_message_index {
            while let Some((i, _)) = self.unconsumed.front() {
                if *i > idx {
                    break;
                }
                if let Some((_, f)) = self.unconsumed.pop_front() {
                    self.unconsumed_bytes -= f.len();
                }
            }
        }
        match (u.resumable, u.new_handle.filter(|h| !h.is_empty())) {
            (Some(true), Some(value)) => {
                tracing::debug!(provider = PROVIDER, "resumption handle updated");
                self.handle = Some(Handle {
                    value,
                    received: Instant::now(),
                    history_seq: self.history.next_seq(),
                });
            }
            _ => tracing::debug!(
                provider = PROVIDER,
                "not resumable at this point; keeping the previous handle"
            ),
        }
    }

    fn on_voice_activity(&mut self, start: bool, out: &mut Outbox) {
        if start && !self.user_speaking {
            self.user_speaking = true;
            out.publish(SpeechStarted::default());
        } else if !start && self.user_speaking {
            self.user_speaking = false;
            out.publish(SpeechStopped::default());
        }
    }

    // --------------------------------------------------------------------------------------
    // commands
    // --------------------------------------------------------------------------------------

    fn on_audio(&mut self, audio: AudioChunk, out: &mut Outbox) {
        if audio.is_empty() {
            return;
        }
        let rate = if audio.sample_rate == 0 {
            INPUT_SAMPLE_RATE
        } else {
            audio.sample_rate
        };
        let blob = Blob::pcm(&audio.to_le_bytes(), rate);
        self.send(
            ClientMessage::RealtimeInput(RealtimeInput::Audio(blob)),
            out,
        );
    }

    fn on_text(&mut self, text: UserText, out: &mut Outbox) {
        let t = text.text.trim();
        if t.is_empty() && !text.respond {
            return;
        }
        self.flush_input(usize::MAX, out);
        self.input_since_turn = true;
        let turns = if t.is_empty() {
            Vec::new()
        } else {
            self.history.push(HistoryEntry::User(t.to_owned()));
            vec![Content::text(Some("user"), t)]
        };
        self.send(
            ClientMessage::ClientContent(ClientContent {
                turns,
                turn_complete: text.respond,
            }),
            out,
        );
    }

    fn on_control(&mut self, command: ControlCommand, out: &mut Outbox) {
        let manual = self.config.manual_activity();
        match command {
            ControlCommand::ActivityStart if manual => {
                if self.activity_open {
                    tracing::debug!(provider = PROVIDER, "activityStart while activity is open");
                }
                self.activity_open = true;
                self.input_since_turn = true;
                self.send(
                    ClientMessage::RealtimeInput(RealtimeInput::ActivityStart(Empty {})),
                    out,
                );
            }
            ControlCommand::ActivityEnd | ControlCommand::CommitInput if manual => {
                if !self.activity_open {
                    tracing::debug!(
                        provider = PROVIDER,
                        ?command,
                        "no activity open: nothing to end"
                    );
                    return;
                }
                self.activity_open = false;
                self.send(
                    ClientMessage::RealtimeInput(RealtimeInput::ActivityEnd(Empty {})),
                    out,
                );
            }
            ControlCommand::ActivityStart | ControlCommand::ActivityEnd => {
                tracing::warn!(
                    provider = PROVIDER,
                    ?command,
                    "needs manual activity detection; ignored"
                );
                out.error(
                    PROVIDER,
                    LiveError::new(
                        ErrorKind::InvalidRequest,
                        format!(
                            "{command:?} needs manual activity detection \
                             (ActivityDetection::manual()); ignored"
                        ),
                    ),
                );
            }
            ControlCommand::CommitInput => {
                // Automatic VAD: flush the audio the server buffered (microphone paused).
                self.send(
                    ClientMessage::RealtimeInput(RealtimeInput::AudioStreamEnd(true)),
                    out,
                );
            }
            ControlCommand::CreateResponse => {
                self.input_since_turn = true;
                self.send(
                    ClientMessage::ClientContent(ClientContent {
                        turns: Vec::new(),
                        turn_complete: true,
                    }),
                    out,
                );
            }
            ControlCommand::ClearInput => {
                tracing::debug!(
                    provider = PROVIDER,
                    "ClearInput has no Gemini equivalent; ignored"
                );
            }
            ControlCommand::CancelResponse => {
                tracing::warn!(
                    provider = PROVIDER,
                    "CancelResponse has no Gemini equivalent"
                );
                out.error(
                    PROVIDER,
                    LiveError::new(
                        ErrorKind::InvalidRequest,
                        "Gemini Live cannot cancel a response: stop playback locally; \
                         user speech (or ActivityStart in manual mode) interrupts the model",
                    ),
                );
            }
        }
    }

    fn on_tool_result(&mut self, result: ToolResult, out: &mut Outbox) {
        let id: &str = &result.call_id;
        let Some(bi) = self
            .batches
            .iter()
            .position(|b| b.calls.iter().any(|c| c.call_id == id))
        else {
            if self.cancelled.contains(id) {
                tracing::debug!(provider = PROVIDER, call_id = %id, "result of a cancelled call dropped");
            } else if self.answered.contains(id) {
                tracing::debug!(provider = PROVIDER, call_id = %id, "second result for a call dropped");
            } else {
                tracing::warn!(provider = PROVIDER, call_id = %id, "result for an unknown call dropped");
                out.error(
                    PROVIDER,
                    LiveError::new(
                        ErrorKind::Tool,
                        format!("tool result for unknown call {id:?} dropped"),
                    ),
                );
            }
            return;
        };
        let batch = &mut self.batches[bi];
        let call = batch
            .calls
            .iter_mut()
            .find(|c| c.call_id == id)
            .expect("position found it");
        if call.cancelled {
            tracing::debug!(provider = PROVIDER, call_id = %id, "result of a cancelled call dropped");
            return;
        }
        if call.answered {
            tracing::debug!(provider = PROVIDER, call_id = %id, "second result for a call dropped");
            return;
        }
        call.answered = true;
        batch.results.push(FunctionResponse {
            id: call.wire_id.clone(),
            name: call.name.clone(),
            response: result.output_object(),
        });
        let call_id = call.call_id.clone();
        self.remember_answered(call_id);
        let batch = &self.batches[bi];
        if batch.complete() || result.request_response {
            self.send_results(bi, out);
        }
    }

    fn remember_answered(&mut self, id: String) {
        if self.answered.insert(id.clone()) {
            self.answered_order.push_back(id);
            while self.answered_order.len() > MAX_ANSWERED_IDS {
                if let Some(old) = self.answered_order.pop_front() {
                    self.answered.remove(&old);
                }
            }
        }
    }

    /// Sends the collected results of batch `i` in one frame; drops the batch when complete.
    fn send_results(&mut self, i: usize, out: &mut Outbox) {
        let results = std::mem::take(&mut self.batches[i].results);
        let orphaned = self.batches[i].orphaned;
        if self.batches[i].complete() {
            self.batches.remove(i);
        }
        if results.is_empty() {
            return;
        }
        for r in &results {
            self.history.push(HistoryEntry::FunctionResponse {
                id: r.id.clone(),
                name: r.name.clone(),
                response: r.response.clone(),
            });
        }
        self.input_since_turn = true;
        if orphaned {
            // The session was not resumed: the server does not know these calls any more.
            // The calls are in the replayed history; answer them as content and let the
            // model go on.
            let parts = results
                .into_iter()
                .map(|r| Part {
                    function_response: Some(r),
                    ..Part::default()
                })
                .collect();
            self.send(
                ClientMessage::ClientContent(ClientContent {
                    turns: vec![Content {
                        role: Some("user".into()),
                        parts,
                    }],
                    turn_complete: true,
                }),
                out,
            );
        } else {
            self.send(
                ClientMessage::ToolResponse(ToolResponse {
                    function_responses: results,
                }),
                out,
            );
        }
    }

    fn on_playback_stopped(&mut self, p: PlaybackStopped) {
        if p.interrupted {
            self.history.set_heard(&p.item_id, p.played_ms);
        }
    }
}

/// The tool's JSON Schema, as `parametersJsonSchema` takes it: an object schema (an empty
/// `{"type":"object"}` when the tool gave none), without the `$schema` keyword.
fn json_schema_for_gemini(schema: &Value) -> Value {
    match schema {
        Value::Object(m) if !m.is_empty() => {
            let mut m = m.clone();
            m.remove("$schema");
            Value::Object(m)
        }
        _ => serde_json::json!({"type": "object", "properties": {}}),
    }
}

impl RealtimeProtocol for GeminiProtocol {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn connect_request(&self) -> Result<ConnectRequest, LiveError> {
        let mut headers = Vec::new();
        if let Some(key) = &self.api_key {
            headers.push(("x-goog-api-key".to_owned(), key.expose().to_owned()));
        }
        Ok(ConnectRequest {
            url: self.config.url(),
            headers,
            secret: self.api_key.clone(),
        })
    }

    fn on_open(&mut self, reconnect: bool, out: &mut Outbox) {
        self.phase = Phase::AwaitingSetup;
        self.next_index = 0;
        let r = &self.config.resumption;
        let handle = if r.enabled {
            match &self.handle {
                Some(h) if h.received.elapsed() < r.handle_max_age => Some(h.clone()),
                Some(_) => {
                    tracing::info!(
                        provider = PROVIDER,
                        "resumption handle too old; starting a new session"
                    );
                    self.handle = None;
                    None
                }
                None => None,
            }
        } else {
            None
        };
        // Frames the server has not consumed: still waiting from an attempt that never
        // completed setup, then those of the last connection.
        let mut pending = std::mem::take(&mut self.resend);
        pending.extend(self.unconsumed.drain(..).map(|(_, f)| f));
        self.unconsumed_bytes = 0;
        if r.transparent && handle.is_some() {
            self.resend = pending;
        } else if !pending.is_empty() {
            tracing::debug!(
                provider = PROVIDER,
                frames = pending.len(),
                "not resuming: unconsumed frames dropped (the history is replayed instead)"
            );
        }
        tracing::debug!(
            provider = PROVIDER,
            reconnect,
            resuming = handle.is_some(),
            "sending setup"
        );
        let setup = self.setup_message(handle.as_ref().map(|h| h.value.as_str()));
        self.using_handle = handle;
        self.send(ClientMessage::Setup(setup), out);
    }

    fn on_frame(&mut self, frame: WireFrame, out: &mut Outbox) {
        self.frames_received += 1;
        let msg = match wire::decode_server(frame.as_bytes()) {
            Ok(m) => m,
            Err(e) => {
                let excerpt = excerpt(frame.as_bytes());
                tracing::warn!(provider = PROVIDER, error = %e, %excerpt, "undecodable frame");
                out.error(
                    PROVIDER,
                    LiveError::protocol(format!("undecodable Gemini frame ({e}): {excerpt}")),
                );
                return;
            }
        };
        if !msg.other.is_empty() {
            let keys: Vec<&String> = msg.other.keys().collect();
            tracing::debug!(
                provider = PROVIDER,
                ?keys,
                "unknown server message keys ignored"
            );
        }
        if let Some(done) = msg.setup_complete {
            self.on_setup_complete(done, out);
        }
        if let Some(u) = msg.usage_metadata {
            let usage = to_usage(&u);
            match self.turn.as_mut() {
                Some(t) => t.usage = Some(usage),
                None => self.pending_usage = Some(usage),
            }
        }
        if let Some(sc) = msg.server_content {
            if let Some(t) = sc.input_transcription {
                self.on_input_transcription(t, out);
            }
            if let Some(mt) = sc.model_turn {
                self.on_model_turn(mt, out);
            }
            if let Some(t) = sc.output_transcription {
                self.on_output_transcription(t, out);
            }
            if sc.interrupted == Some(true) {
                self.on_interrupted(out);
            }
            if sc.generation_complete == Some(true) {
                tracing::trace!(provider = PROVIDER, "generation complete");
            }
            if sc.turn_complete == Some(true) {
                self.on_turn_complete(sc.turn_complete_reason, out);
            }
            if sc.waiting_for_input == Some(true) {
                tracing::trace!(provider = PROVIDER, "model waits for input");
            }
        }
        if let Some(tc) = msg.tool_call {
            self.on_tool_call(tc, out);
        }
        if let Some(c) = msg.tool_call_cancellation {
            self.on_tool_call_cancellation(c, out);
        }
        if let Some(u) = msg.session_resumption_update {
            self.on_resumption_update(u);
        }
        if let Some(v) = msg.voice_activity.and_then(|v| v.voice_activity_type) {
            match v.as_str() {
                "ACTIVITY_START" => self.on_voice_activity(true, out),
                "ACTIVITY_END" => self.on_voice_activity(false, out),
                _ => {}
            }
        }
        if let Some(v) = msg
            .voice_activity_detection_signal
            .and_then(|v| v.vad_signal_type)
        {
            match v.as_str() {
                "VAD_SIGNAL_TYPE_SOS" => self.on_voice_activity(true, out),
                "VAD_SIGNAL_TYPE_EOS" => self.on_voice_activity(false, out),
                _ => {}
            }
        }
        if let Some(g) = msg.go_away {
            let reason = match g.time_left {
                Some(t) => format!(
                    "goAway (the server closes the connection in {:.1}s)",
                    t.as_secs_f64()
                ),
                None => "goAway".to_owned(),
            };
            tracing::info!(provider = PROVIDER, %reason, "server asked to reconnect");
            out.signal(ProtocolSignal::Reconnect { reason });
        }
    }

    fn on_command(&mut self, command: SessionCommand, out: &mut Outbox) {
        if self.phase != Phase::Ready {
            if let SessionCommand::PlaybackStopped(p) = command {
                self.on_playback_stopped(p);
                return;
            }
            if self.held.len() >= MAX_HELD_COMMANDS {
                tracing::warn!(
                    provider = PROVIDER,
                    "command dropped: session not ready and too many held"
                );
                return;
            }
            self.held.push_back(command);
            return;
        }
        match command {
            SessionCommand::Audio(a) => self.on_audio(a, out),
            SessionCommand::Text(t) => self.on_text(t, out),
            SessionCommand::Control(c) => self.on_control(c, out),
            SessionCommand::ToolResult(r) => self.on_tool_result(r, out),
            SessionCommand::PlaybackStopped(p) => self.on_playback_stopped(p),
        }
    }

    fn on_close_frame(&mut self, code: Option<u16>, reason: &str, out: &mut Outbox) {
        GeminiProtocol::on_close_frame(self, code, reason, out)
    }

    fn on_close(&mut self, out: &mut Outbox) {
        if self.phase == Phase::AwaitingSetup {
            if self.using_handle.is_some() {
                tracing::warn!(
                    provider = PROVIDER,
                    "connection closed before the session resumed; the next attempt starts a new session"
                );
                self.handle = None;
            }
            self.setup_failures += 1;
            if self.setup_failures == SETUP_FAILURES_REPORTED {
                // Gemini refuses a bad key, model or setup by closing the socket. Without the
                // close frame (see `on_close_frame`) the reason is unknown here; say so once
                // rather than reconnecting in silence.
                out.error(
                    PROVIDER,
                    LiveError::connection(format!(
                        "the server closed {SETUP_FAILURES_REPORTED} connections in a row before \
                         completing setup: check the API key, the model id and the configuration"
                    )),
                );
            }
        }
        if self.turn.is_some() {
            let split = self.input_split;
            self.flush_input(split, out);
            self.finish_turn(ResponseStatus::Failed, Some("connection lost"), out);
        }
        self.flush_input(usize::MAX, out);
        self.activity_open = false;
        if self.user_speaking {
            self.user_speaking = false;
        }
        self.pending_usage = None;
        self.phase = Phase::Closed;
    }

    fn input_sample_rate(&self) -> u32 {
        INPUT_SAMPLE_RATE
    }

    fn is_idle(&self) -> bool {
        let recent_input = self
            .last_input_at
            .is_some_and(|t| t.elapsed() < SPEAKING_WINDOW);
        self.turn.is_none()
            && self.batches.is_empty()
            && !self.user_speaking
            && !self.activity_open
            && !recent_input
    }
}

fn to_usage(u: &UsageMetadata) -> Usage {
    let audio = |details: &[ModalityTokenCount]| {
        details
            .iter()
            .filter(|d| d.modality.as_deref() == Some("AUDIO"))
            .map(|d| d.token_count.unwrap_or(0))
            .reduce(|a, b| a + b)
    };
    let input = u.prompt_token_count.unwrap_or(0);
    let output = u.response_token_count.unwrap_or(0);
    Usage {
        input_tokens: input,
        output_tokens: output,
        total_tokens: u.total_token_count.unwrap_or(input + output),
        input_audio_tokens: audio(&u.prompt_tokens_details),
        output_audio_tokens: audio(&u.response_tokens_details),
        cached_tokens: u.cached_content_token_count,
    }
}

fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(160)]);
    if bytes.len() > 160 {
        format!("{text}…")
    } else {
        text.into_owned()
    }
}
