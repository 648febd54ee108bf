//! [`OpenAiProtocol`]: the sans-IO state machine of one OpenAI Realtime conversation.
//!
//! # Handshake
//! `on_open` → wait for `session.created` → send `session.update` (and, after a reconnect,
//! the conversation history as `conversation.item.create` items) → on `session.updated`
//! signal [`ProtocolSignal::Ready`]. The first time it also publishes `SessionOpened` and
//! `SessionUpdated`; after a reconnect nothing is published again.
//!
//! # Barge-in
//! When the server reports `input_audio_buffer.speech_started` and the turn detection
//! interrupts responses, the protocol publishes `SpeechStarted` and, if a response is running
//! or audio was produced that the player has not reported as finished, `Interrupted`: the
//! player flushes its queue and reports `PlaybackStopped { interrupted: true, played_ms }`.
//! Audio deltas of the interrupted response that still arrive are dropped. The protocol then
//! sends `conversation.item.truncate` with `audio_end_ms = min(played_ms, audio received for
//! the item)`, so the model's memory matches what the user heard, and cuts its own history
//! copy of the transcript proportionally (see [`HistoryItem::replay_text`]).
//!
//! # Tool calls
//! Calls are collected from `response.function_call_arguments.done`, `output_item.done` and
//! `response.done`; one `ToolCallRequested` with every call of the response is published when
//! `response.done` arrives (calls of a cancelled or failed response are dropped). Each call's
//! output is sent exactly once; `response.create` follows when the result asks for it, deferred
//! until no response is running.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use liveagent_core::{
    AudioChunk, ConnectRequest, ControlCommand, ErrorEvent, ErrorKind, Id, InputTranscriptChunk,
    Interrupted, LiveError, ModelMessageChunk, Outbox, OutputTranscriptChunk, PlaybackStopped,
    ProtocolSignal, RealtimeProtocol, ResponseDone, ResponseStarted, ResponseStatus, Secret,
    SessionCommand, SessionOpened, SessionSetup, SessionUpdated, SpeechStarted, SpeechStopped,
    SynthesizedAudio, ToolCall, ToolCallRequested, ToolResult, Usage, UserText, WireFrame,
};
use serde_json::Value;

use crate::config::{Output, RealtimeConfig, TurnDetection, SAMPLE_RATE};
use crate::history::{History, HistoryItem};
use crate::resample::LinearResampler;
use crate::wire::{
    ApiError, AudioFormat, AudioInputConfig, AudioOutputConfig, ClientEvent, ContentPart,
    FunctionTool, Item, Modality, NoiseReductionConfig, ResponseInfo, Role, ServerEvent,
    SessionAudio, SessionConfig, SessionType, TranscriptionConfig, TurnDetectionConfig, TypeOnly,
};

const PROVIDER: &str = "openai";
/// PCM16 mono at 24 kHz: bytes per millisecond.
const BYTES_PER_MS: u64 = 48;
/// Largest raw audio payload of one `input_audio_buffer.append` (the API allows 15 MiB).
const MAX_APPEND_BYTES: usize = 4 * 1024 * 1024;
/// How many recent assistant audio items are remembered for truncation.
const MAX_TRACKS: usize = 32;

/// Where the connection is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// No socket.
    Closed,
    /// Socket open, waiting for `session.created`.
    AwaitingCreated,
    /// `session.update` sent, waiting for `session.updated`.
    AwaitingUpdated,
    /// Configured: commands flow.
    Ready,
}

/// Audio received for one assistant item.
#[derive(Debug)]
struct AudioTrack {
    item_id: Id,
    response_id: Id,
    bytes: u64,
    /// The connection it was produced on (truncation only makes sense on that one).
    generation: u64,
    /// The player has finished with it (played out, flushed, or reported stopped).
    playback_done: bool,
    /// `output_audio.done` arrived.
    audio_done: bool,
    /// A trailing odd byte waiting for its pair.
    odd_byte: Option<u8>,
}

#[derive(Debug)]
struct PendingCall {
    item_id: String,
    call_id: String,
    name: String,
    arguments: Option<String>,
}

#[derive(Debug)]
struct ActiveResponse {
    id: Id,
    calls: Vec<PendingCall>,
    /// The user barged in (or the app cancelled): drop its remaining audio.
    interrupted: bool,
}

/// The OpenAI Realtime protocol state machine. Built by
/// [`RealtimeConfig::protocol`](crate::RealtimeConfig::protocol) (or `build_protocol`); the
/// session runtime drives it.
pub struct OpenAiProtocol {
    config: RealtimeConfig,
    setup: SessionSetup,
    key: Secret,
    phase: Phase,
    generation: u64,
    opened_once: bool,
    session_id: Option<String>,
    update_seq: u64,
    update_event_id: Option<String>,
    // turn state
    active: Option<ActiveResponse>,
    /// `response.create` sent, `response.created` not seen yet.
    response_requested: bool,
    /// A response was asked for while one was running: send `response.create` after it.
    response_deferred: bool,
    user_speaking: bool,
    input_bytes: u64,
    resampler: Option<LinearResampler>,
    warned_rate: bool,
    tracks: VecDeque<AudioTrack>,
    /// The last response the user interrupted (its late audio is dropped).
    interrupted_response: Option<Id>,
    // history and tools
    history: History,
    known_calls: HashSet<String>,
    outputs_sent: HashSet<String>,
    awaiting_outputs: HashSet<String>,
}

impl std::fmt::Debug for OpenAiProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiProtocol")
            .field("model", &self.config.model)
            .field("phase", &self.phase)
            .field("generation", &self.generation)
            .field("history_items", &self.history.len())
            .finish_non_exhaustive()
    }
}

/// Checks and normalizes a base URL: trailing `/` removed, `http(s)` mapped to `ws(s)`.
pub(crate) fn websocket_base(url: &str) -> Result<String, LiveError> {
    let url = url.trim().trim_end_matches('/');
    let url = if let Some(rest) = url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        url.to_owned()
    };
    let host = url
        .strip_prefix("wss://")
        .or_else(|| url.strip_prefix("ws://"))
        .ok_or_else(|| {
            LiveError::config(format!(
                "openai: base URL must start with wss://, ws://, https:// or http://: {url}"
            ))
        })?;
    if host.is_empty() || host.starts_with('/') {
        return Err(LiveError::config(format!(
            "openai: base URL has no host: {url}"
        )));
    }
    if url.contains('?') || url.contains('#') {
        return Err(LiveError::config(format!(
            "openai: base URL must not carry a query or fragment: {url}"
        )));
    }
    Ok(url)
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass).
fn encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Parses function arguments: JSON when valid, `{}` when empty, else the raw text as a
/// JSON string (the tool executor then reports the problem to the model).
pub fn parse_arguments(raw: &str) -> Value {
    if raw.trim().is_empty() {
        return Value::Object(Default::default());
    }
    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()))
}

/// Maps an `error` event to a typed error and whether the session can go on.
pub fn classify_error(error: &ApiError) -> (ErrorKind, bool) {
    let code = error.code.as_deref().unwrap_or("");
    let kind = error.kind.as_deref().unwrap_or("");
    match code {
        "invalid_api_key"
        | "invalid_client_secret"
        | "expired_client_secret"
        | "unauthorized"
        | "authentication_error"
        | "missing_api_key" => return (ErrorKind::Auth, true),
        "model_not_found" | "deployment_not_found" | "DeploymentNotFound" => {
            return (ErrorKind::NotFound, true)
        }
        "insufficient_quota" | "billing_hard_limit_reached" => return (ErrorKind::Quota, true),
        "rate_limit_exceeded" => return (ErrorKind::Provider, false),
        _ => {}
    }
    match kind {
        "authentication_error" | "permission_error" | "invalid_api_key" => (ErrorKind::Auth, true),
        "insufficient_quota" => (ErrorKind::Quota, true),
        "not_found_error" => (ErrorKind::NotFound, true),
        "invalid_request_error" => (ErrorKind::InvalidRequest, false),
        _ => (ErrorKind::Provider, false),
    }
}

impl OpenAiProtocol {
    /// A protocol for one conversation. Prefer [`RealtimeConfig::protocol`], which validates
    /// the configuration and resolves the key.
    pub fn new(config: RealtimeConfig, setup: SessionSetup, key: Secret) -> Self {
        let history = History::new(config.history_limit);
        OpenAiProtocol {
            config,
            setup,
            key,
            phase: Phase::Closed,
            generation: 0,
            opened_once: false,
            session_id: None,
            update_seq: 0,
            update_event_id: None,
            active: None,
            response_requested: false,
            response_deferred: false,
            user_speaking: false,
            input_bytes: 0,
            resampler: None,
            warned_rate: false,
            tracks: VecDeque::new(),
            interrupted_response: None,
            history,
            known_calls: HashSet::new(),
            outputs_sent: HashSet::new(),
            awaiting_outputs: HashSet::new(),
        }
    }

    /// Where the connection is.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The conversation kept for replay.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The provider's session id of the current (or last) connection.
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// The `session.update` this protocol sends after `session.created`.
    pub fn session_update(&self) -> ClientEvent {
        ClientEvent::SessionUpdate {
            event_id: self.update_event_id.clone(),
            session: Box::new(self.session_config()),
        }
    }

    fn session_config(&self) -> SessionConfig {
        let c = &self.config;
        let turn_detection = match &c.input.turn_detection {
            TurnDetection::SemanticVad(v) => Some(TurnDetectionConfig::SemanticVad {
                eagerness: v.eagerness,
                create_response: v.create_response,
                interrupt_response: v.interrupt_response,
            }),
            TurnDetection::ServerVad(v) => Some(TurnDetectionConfig::ServerVad {
                threshold: v.threshold,
                prefix_padding_ms: v.prefix_padding_ms,
                silence_duration_ms: v.silence_duration_ms,
                idle_timeout_ms: v.idle_timeout_ms,
                create_response: v.create_response,
                interrupt_response: v.interrupt_response,
            }),
            TurnDetection::Manual => None,
        };
        let input = AudioInputConfig {
            format: Some(AudioFormat::pcm24k()),
            noise_reduction: Some(
                c.input
                    .noise_reduction
                    .map(|kind| NoiseReductionConfig { kind }),
            ),
            transcription: Some(c.input.transcription.as_ref().map(|t| TranscriptionConfig {
                model: t.model.clone(),
                language: t.language.clone(),
                prompt: t.prompt.clone(),
            })),
            turn_detection: Some(turn_detection),
        };
        let (modality, output) = match &c.output {
            Output::Audio(a) => (
                Modality::Audio,
                Some(AudioOutputConfig {
                    format: Some(AudioFormat::pcm24k()),
                    voice: Some(a.voice.clone()),
                    speed: Some(a.speed),
                }),
            ),
            Output::Text(_) => (Modality::Text, None),
        };
        SessionConfig {
            kind: SessionType::Realtime,
            // With an Azure deployment the URL names the deployment, not the model.
            model: match &c.azure {
                Some(az) if az.deployment.is_some() => None,
                _ => Some(c.model.clone()),
            },
            instructions: Some(self.setup.instructions.clone()),
            output_modalities: Some(vec![modality]),
            audio: Some(SessionAudio {
                input: Some(input),
                output,
            }),
            tools: Some(
                self.setup
                    .tools
                    .iter()
                    .map(|t| FunctionTool {
                        kind: "function",
                        name: t.name.clone(),
                        description: t.description.clone(),
                        parameters: t.parameters.clone(),
                    })
                    .collect(),
            ),
            tool_choice: c.tool_choice.clone(),
            max_output_tokens: c.max_output_tokens,
        }
    }

    fn send(&self, out: &mut Outbox, event: &ClientEvent) {
        out.send_text(event.to_json());
    }

    fn error(&self, out: &mut Outbox, kind: ErrorKind, message: String) {
        let message = self.key.redact(&message);
        tracing::warn!(target: "liveagent::openai", "{message}");
        out.error(PROVIDER, LiveError::new(kind, message));
    }

    // ------------------------------------------------------------------ server events

    fn handle_event(&mut self, event: ServerEvent, out: &mut Outbox) {
        match event {
            ServerEvent::Error { error } => self.on_error(error, out),
            ServerEvent::SessionCreated { session } => {
                self.session_id = session.id;
                if self.phase != Phase::AwaitingCreated {
                    tracing::debug!(target: "liveagent::openai", phase = ?self.phase, "unexpected session.created");
                    return;
                }
                self.update_seq += 1;
                self.update_event_id =
                    Some(format!("liveagent_session_update_{}", self.update_seq));
                let update = self.session_update();
                self.send(out, &update);
                let items = self.history.replay();
                if !items.is_empty() {
                    tracing::info!(target: "liveagent::openai", items = items.len(), "replaying conversation history");
                }
                for item in items {
                    self.send(
                        out,
                        &ClientEvent::ConversationItemCreate {
                            event_id: None,
                            item,
                        },
                    );
                }
                self.phase = Phase::AwaitingUpdated;
            }
            ServerEvent::SessionUpdated { .. } => {
                if self.phase == Phase::AwaitingUpdated {
                    self.phase = Phase::Ready;
                    out.signal(ProtocolSignal::Ready { resumed: false });
                    if !self.opened_once {
                        self.opened_once = true;
                        out.publish(SessionOpened {
                            provider: PROVIDER,
                            session_id: self.session_id.clone(),
                        });
                        out.publish(SessionUpdated { provider: PROVIDER });
                    }
                    if self.response_deferred {
                        self.response_deferred = false;
                        self.request_response(out);
                    }
                } else if self.phase == Phase::Ready {
                    out.publish(SessionUpdated { provider: PROVIDER });
                }
            }
            ServerEvent::SpeechStarted {
                audio_start_ms,
                item_id,
            } => {
                self.user_speaking = true;
                out.publish(SpeechStarted {
                    item_id: item_id.map(Id::from),
                    audio_start_ms,
                });
                if self.config.input.turn_detection.interrupts_response() {
                    self.interrupt(out);
                }
            }
            ServerEvent::SpeechStopped {
                audio_end_ms,
                item_id,
            } => {
                self.user_speaking = false;
                out.publish(SpeechStopped {
                    item_id: item_id.map(Id::from),
                    audio_end_ms,
                });
            }
            ServerEvent::InputCommitted { item_id } => {
                self.input_bytes = 0;
                self.user_speaking = false;
                self.note_user_audio(item_id, None);
            }
            ServerEvent::InputCleared => self.input_bytes = 0,
            ServerEvent::ItemAdded { item } | ServerEvent::ItemDone { item } => {
                if let Item::Message {
                    id: Some(id),
                    role: Role::User,
                    content,
                    ..
                } = item
                {
                    let audio = content.iter().find_map(|p| match p {
                        ContentPart::InputAudio { transcript } => Some(transcript.clone()),
                        _ => None,
                    });
                    if let Some(transcript) = audio {
                        self.note_user_audio(id, transcript.filter(|t| !t.is_empty()));
                    }
                }
            }
            ServerEvent::ItemTruncated {
                item_id,
                audio_end_ms,
            } => {
                tracing::debug!(target: "liveagent::openai", %item_id, audio_end_ms, "item truncated");
            }
            ServerEvent::InputTranscriptionDelta { item_id, delta } => {
                if let Some(delta) = delta.filter(|d| !d.is_empty()) {
                    out.publish(InputTranscriptChunk {
                        item_id: Some(item_id.into()),
                        text: delta.into(),
                        is_final: false,
                    });
                }
            }
            ServerEvent::InputTranscriptionCompleted {
                item_id,
                transcript,
            } => {
                self.note_user_audio(item_id.clone(), Some(transcript.clone()));
                out.publish(InputTranscriptChunk {
                    item_id: Some(item_id.into()),
                    text: transcript.into(),
                    is_final: true,
                });
            }
            ServerEvent::InputTranscriptionFailed { item_id, error } => {
                let msg = error.and_then(|e| e.message).unwrap_or_default();
                self.error(
                    out,
                    ErrorKind::Provider,
                    format!("openai: transcription of {item_id} failed: {msg}"),
                );
            }
            ServerEvent::ResponseCreated { response } => {
                let id: Id = response.id.unwrap_or_default().into();
                self.response_requested = false;
                if let Some(prev) = self.active.take() {
                    tracing::debug!(target: "liveagent::openai", response = %prev.id, "response.created while another was active");
                }
                self.active = Some(ActiveResponse {
                    id: id.clone(),
                    calls: Vec::new(),
                    interrupted: false,
                });
                out.publish(ResponseStarted { response_id: id });
            }
            ServerEvent::OutputItemAdded { response_id, item } => {
                self.on_output_item(&response_id, item, false);
            }
            ServerEvent::OutputItemDone { response_id, item } => {
                self.on_output_item(&response_id, item, true);
            }
            ServerEvent::OutputAudioDelta {
                response_id,
                item_id,
                delta,
            } => self.on_audio_delta(response_id, item_id, &delta, out),
            ServerEvent::OutputAudioDone { item_id, .. } => {
                if let Some(t) = self.tracks.iter_mut().find(|t| *t.item_id == *item_id) {
                    t.audio_done = true;
                }
            }
            ServerEvent::OutputAudioTranscriptDelta { item_id, delta, .. } => {
                self.append_assistant_text(&item_id, &delta);
                out.publish(OutputTranscriptChunk {
                    item_id: Some(item_id.into()),
                    text: delta.into(),
                    is_final: false,
                });
            }
            ServerEvent::OutputAudioTranscriptDone {
                item_id,
                transcript,
                ..
            } => {
                self.finish_assistant_text(&item_id, &transcript);
                out.publish(OutputTranscriptChunk {
                    item_id: Some(item_id.into()),
                    text: transcript.into(),
                    is_final: true,
                });
            }
            ServerEvent::OutputTextDelta { item_id, delta, .. } => {
                self.append_assistant_text(&item_id, &delta);
                out.publish(ModelMessageChunk::new(item_id, delta));
            }
            ServerEvent::OutputTextDone { item_id, text, .. } => {
                self.finish_assistant_text(&item_id, &text);
            }
            ServerEvent::FunctionCallArgumentsDone {
                response_id,
                item_id,
                call_id,
                name,
                arguments,
            } => self.note_call(&response_id, item_id, call_id, name, Some(arguments)),
            ServerEvent::ResponseDone { response } => self.on_response_done(response, out),
            ServerEvent::Unknown => {}
        }
    }

    fn on_error(&mut self, error: ApiError, out: &mut Outbox) {
        let (mut kind, mut fatal) = classify_error(&error);
        // An error about our own session.update during the handshake: the configuration
        // is wrong and the session would never become ready.
        if self.phase == Phase::AwaitingUpdated
            && (error.event_id.is_some() && error.event_id == self.update_event_id
                || error
                    .param
                    .as_deref()
                    .is_some_and(|p| p.starts_with("session")))
        {
            fatal = true;
            if !kind.is_permanent() {
                kind = ErrorKind::Config;
            }
        }
        let message = self.key.redact(&format!(
            "openai: {}{}",
            error.message.as_deref().unwrap_or("error without message"),
            error
                .param
                .as_deref()
                .map(|p| format!(" (param {p})"))
                .unwrap_or_default(),
        ));
        let mut err = LiveError::new(kind, message);
        if let Some(code) = error.code.clone().or(error.kind.clone()) {
            err = err.with_code(code);
        }
        if fatal {
            // The session runtime publishes the fatal ErrorEvent and SessionClosed.
            tracing::error!(target: "liveagent::openai", "{err}");
            out.signal(ProtocolSignal::Fatal(err));
        } else {
            tracing::warn!(target: "liveagent::openai", "{err}");
            out.publish(ErrorEvent::new(PROVIDER, err));
        }
    }

    fn note_user_audio(&mut self, item_id: String, transcript: Option<String>) {
        if let Some(HistoryItem::UserAudio { transcript: t, .. }) =
            self.history.user_audio_mut(&item_id)
        {
            if transcript.is_some() {
                *t = transcript;
            }
        } else {
            self.history.push(HistoryItem::UserAudio {
                item_id,
                transcript,
            });
        }
    }

    fn ensure_assistant(&mut self, item_id: &str) -> &mut HistoryItem {
        if self.history.assistant_mut(item_id).is_none() {
            self.history.push(HistoryItem::Assistant {
                item_id: item_id.to_owned(),
                text: String::new(),
                done: false,
                audio_ms: 0,
                heard_ms: None,
            });
        }
        self.history
            .assistant_mut(item_id)
            .expect("assistant item was just inserted")
    }

    fn append_assistant_text(&mut self, item_id: &str, delta: &str) {
        if let HistoryItem::Assistant { text, done, .. } = self.ensure_assistant(item_id) {
            if !*done {
                text.push_str(delta);
            }
        }
    }

    fn finish_assistant_text(&mut self, item_id: &str, full: &str) {
        if let HistoryItem::Assistant { text, done, .. } = self.ensure_assistant(item_id) {
            *text = full.to_owned();
            *done = true;
        }
    }

    fn on_output_item(&mut self, response_id: &str, item: Item, done: bool) {
        match item {
            Item::Message {
                id: Some(id),
                role: Role::Assistant,
                content,
                ..
            } => {
                self.ensure_assistant(&id);
                if done {
                    let full: Option<String> = content.iter().find_map(|p| match p {
                        ContentPart::OutputAudio {
                            transcript: Some(t),
                        } => Some(t.clone()),
                        ContentPart::OutputText { text } => Some(text.clone()),
                        _ => None,
                    });
                    match full {
                        Some(full) => self.finish_assistant_text(&id, &full),
                        None => {
                            if let Some(HistoryItem::Assistant { done, .. }) =
                                self.history.assistant_mut(&id)
                            {
                                *done = true;
                            }
                        }
                    }
                }
            }
            Item::FunctionCall {
                id,
                call_id,
                name,
                arguments,
                ..
            } => {
                let args = done.then_some(arguments);
                self.note_call(
                    response_id,
                    id.unwrap_or_default(),
                    call_id,
                    Some(name).filter(|n| !n.is_empty()),
                    args,
                );
            }
            _ => {}
        }
    }

    /// Records (or completes) a function call of the active response.
    fn note_call(
        &mut self,
        response_id: &str,
        item_id: String,
        call_id: String,
        name: Option<String>,
        arguments: Option<String>,
    ) {
        if call_id.is_empty() {
            tracing::debug!(target: "liveagent::openai", "function call without call_id ignored");
            return;
        }
        let Some(active) = self.active.as_mut().filter(|a| *a.id == *response_id) else {
            tracing::debug!(target: "liveagent::openai", %response_id, %call_id, "function call of an unknown response ignored");
            return;
        };
        let call = match active.calls.iter_mut().position(|c| c.call_id == call_id) {
            Some(i) => &mut active.calls[i],
            None => {
                active.calls.push(PendingCall {
                    item_id,
                    call_id: call_id.clone(),
                    name: String::new(),
                    arguments: None,
                });
                active.calls.last_mut().expect("just pushed")
            }
        };
        if let Some(name) = name {
            call.name = name;
        }
        if call.arguments.is_none() {
            if let Some(args) = arguments {
                call.arguments = Some(args.clone());
                self.known_calls.insert(call_id.clone());
                let name = call.name.clone();
                self.history.push(HistoryItem::FunctionCall {
                    call_id,
                    name,
                    arguments: args,
                });
            }
        }
    }

    fn on_audio_delta(
        &mut self,
        response_id: String,
        item_id: String,
        delta: &str,
        out: &mut Outbox,
    ) {
        let bytes = match B64.decode(delta) {
            Ok(b) => b,
            Err(e) => {
                self.error(
                    out,
                    ErrorKind::Protocol,
                    format!("openai: undecodable audio delta for {item_id}: {e}"),
                );
                return;
            }
        };
        if self
            .interrupted_response
            .as_deref()
            .is_some_and(|r| r == response_id)
        {
            tracing::trace!(target: "liveagent::openai", %item_id, "audio of an interrupted response dropped");
            return;
        }
        let generation = self.generation;
        let pos = self.tracks.iter().position(|t| *t.item_id == *item_id);
        let track = match pos {
            Some(i) => &mut self.tracks[i],
            None => {
                if self.tracks.len() >= MAX_TRACKS {
                    self.tracks.pop_front();
                }
                self.tracks.push_back(AudioTrack {
                    item_id: item_id.as_str().into(),
                    response_id: response_id.as_str().into(),
                    bytes: 0,
                    generation,
                    playback_done: false,
                    audio_done: false,
                    odd_byte: None,
                });
                self.tracks.back_mut().expect("just pushed")
            }
        };
        let mut data = bytes;
        if let Some(b) = track.odd_byte.take() {
            data.insert(0, b);
        }
        if data.len() % 2 == 1 {
            track.odd_byte = data.pop();
        }
        track.bytes += data.len() as u64;
        track.playback_done = false;
        let audio_ms = track.bytes / BYTES_PER_MS;
        let item: Id = track.item_id.clone();
        let response: Id = track.response_id.clone();
        if let Some(HistoryItem::Assistant { audio_ms: ms, .. }) =
            self.history.assistant_mut(&item_id)
        {
            *ms = audio_ms;
        } else if let HistoryItem::Assistant { audio_ms: ms, .. } = self.ensure_assistant(&item_id)
        {
            *ms = audio_ms;
        }
        if data.is_empty() {
            return;
        }
        out.publish(SynthesizedAudio {
            response_id: Some(response),
            item_id: item,
            audio: AudioChunk::from_le_bytes(&data, SAMPLE_RATE),
        });
    }

    fn on_response_done(&mut self, response: ResponseInfo, out: &mut Outbox) {
        let id: Id = response.id.clone().unwrap_or_default().into();
        let status = match response.status.as_deref() {
            Some("completed") => ResponseStatus::Completed,
            Some("cancelled") => ResponseStatus::Cancelled,
            Some("incomplete") => ResponseStatus::Incomplete,
            _ => ResponseStatus::Failed,
        };
        let reason = response.status_details.as_ref().and_then(|d| {
            d.reason.clone().or_else(|| {
                d.error
                    .as_ref()
                    .and_then(|e| e.code.clone().or(e.message.clone()))
            })
        });
        // Fill in whatever the streaming events missed from the final output list.
        if self.active.as_ref().is_none_or(|a| a.id != id) {
            self.active = Some(ActiveResponse {
                id: id.clone(),
                calls: Vec::new(),
                interrupted: false,
            });
        }
        for item in response.output {
            self.on_output_item(&id, item, true);
        }
        let active = self.active.take().expect("set above");
        self.response_requested = false;
        let usage = response.usage.map(|u| Usage {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            total_tokens: u.total_tokens,
            input_audio_tokens: u.input_token_details.as_ref().and_then(|d| d.audio_tokens),
            output_audio_tokens: u.output_token_details.as_ref().and_then(|d| d.audio_tokens),
            cached_tokens: u.input_token_details.as_ref().and_then(|d| d.cached_tokens),
        });
        out.publish(ResponseDone {
            response_id: id.clone(),
            status,
            reason,
            usage,
        });
        self.finish_calls(active, status, out);
        if self.response_deferred && self.phase == Phase::Ready {
            self.response_deferred = false;
            self.request_response(out);
        }
    }

    /// Publishes the complete calls of a finished response, or drops them if it was cancelled.
    fn finish_calls(&mut self, active: ActiveResponse, status: ResponseStatus, out: &mut Outbox) {
        let (complete, partial): (Vec<_>, Vec<_>) = active
            .calls
            .into_iter()
            .partition(|c| c.arguments.is_some());
        for c in &partial {
            tracing::warn!(target: "liveagent::openai", call_id = %c.call_id, item_id = %c.item_id, "function call without arguments dropped");
        }
        if complete.is_empty() {
            return;
        }
        if matches!(status, ResponseStatus::Cancelled | ResponseStatus::Failed) {
            let ids: Vec<String> = complete.iter().map(|c| c.call_id.clone()).collect();
            tracing::info!(target: "liveagent::openai", calls = ?ids, ?status, "calls of an unfinished response dropped");
            self.history.remove_calls(&ids);
            return;
        }
        let calls = complete
            .into_iter()
            .map(|c| {
                self.awaiting_outputs.insert(c.call_id.clone());
                let raw = c.arguments.unwrap_or_default();
                ToolCall {
                    call_id: c.call_id.into(),
                    name: c.name.into(),
                    arguments: parse_arguments(&raw),
                    response_id: Some(active.id.clone()),
                }
            })
            .collect();
        out.publish(ToolCallRequested { calls });
    }

    /// Barge-in: tell the player to flush if anything may still be playing.
    fn interrupt(&mut self, out: &mut Outbox) {
        let unplayed = self.tracks.iter().rev().find(|t| !t.playback_done);
        let active_id = self.active.as_ref().map(|a| a.id.clone());
        if active_id.is_none() && unplayed.is_none() {
            return;
        }
        let item_id = unplayed.map(|t| t.item_id.clone());
        let response_id = active_id.or_else(|| unplayed.map(|t| t.response_id.clone()));
        if let Some(active) = self.active.as_mut() {
            active.interrupted = true;
            self.interrupted_response = Some(active.id.clone());
        }
        for t in self.tracks.iter_mut() {
            t.playback_done = true;
        }
        out.publish(Interrupted {
            response_id,
            item_id,
        });
    }

    /// Sends `response.create` now, or once the running response is done.
    fn request_response(&mut self, out: &mut Outbox) {
        if self.phase != Phase::Ready {
            self.response_deferred = true;
            return;
        }
        if self.active.is_some() || self.response_requested {
            tracing::debug!(target: "liveagent::openai", "response.create deferred until the running response is done");
            self.response_deferred = true;
            return;
        }
        self.response_requested = true;
        self.send(out, &ClientEvent::ResponseCreate { response: None });
    }

    // ------------------------------------------------------------------ commands

    fn on_audio(&mut self, chunk: AudioChunk, out: &mut Outbox) {
        if chunk.is_empty() {
            return;
        }
        let samples: Arc<[i16]> = if chunk.sample_rate == SAMPLE_RATE {
            chunk.samples
        } else if chunk.sample_rate == 0 {
            self.error(
                out,
                ErrorKind::Audio,
                "openai: dropped microphone audio with sample rate 0".into(),
            );
            return;
        } else {
            if !self.warned_rate {
                self.warned_rate = true;
                tracing::warn!(target: "liveagent::openai", rate = chunk.sample_rate, "microphone audio is not 24 kHz; resampling linearly (let the recorder resample for better quality)");
            }
            let r = self
                .resampler
                .get_or_insert_with(|| LinearResampler::new(chunk.sample_rate, SAMPLE_RATE));
            if r.input_rate() != chunk.sample_rate {
                *r = LinearResampler::new(chunk.sample_rate, SAMPLE_RATE);
            }
            r.process(&chunk.samples).into()
        };
        let bytes = AudioChunk::new(samples, SAMPLE_RATE).to_le_bytes();
        for piece in bytes.chunks(MAX_APPEND_BYTES) {
            self.input_bytes += piece.len() as u64;
            self.send(
                out,
                &ClientEvent::InputAudioBufferAppend {
                    audio: B64.encode(piece),
                },
            );
        }
    }

    fn on_text(&mut self, text: UserText, out: &mut Outbox) {
        if text.text.trim().is_empty() {
            tracing::debug!(target: "liveagent::openai", "empty user text ignored");
            return;
        }
        self.send(
            out,
            &ClientEvent::ConversationItemCreate {
                event_id: None,
                item: Item::user_text(&*text.text),
            },
        );
        self.history.push(HistoryItem::UserText {
            text: text.text.to_string(),
        });
        if text.respond {
            self.request_response(out);
        }
    }

    fn on_tool_result(&mut self, result: ToolResult, out: &mut Outbox) {
        let call_id = result.call_id.to_string();
        if self.outputs_sent.contains(&call_id) {
            tracing::warn!(target: "liveagent::openai", %call_id, "a result for this call was already sent; ignoring the duplicate");
            return;
        }
        if !self.known_calls.contains(&call_id) {
            self.error(
                out,
                ErrorKind::Tool,
                format!(
                    "openai: tool result for unknown call {call_id} ({}) not sent",
                    result.name
                ),
            );
            return;
        }
        let output = result.output_text();
        self.send(
            out,
            &ClientEvent::ConversationItemCreate {
                event_id: None,
                item: Item::FunctionCallOutput {
                    id: None,
                    call_id: call_id.clone(),
                    output: output.clone(),
                },
            },
        );
        self.outputs_sent.insert(call_id.clone());
        self.awaiting_outputs.remove(&call_id);
        if self.history.has_call(&call_id) {
            self.history
                .push(HistoryItem::FunctionCallOutput { call_id, output });
        }
        if result.request_response {
            self.request_response(out);
        }
    }

    fn on_playback_stopped(&mut self, stopped: PlaybackStopped, out: &mut Outbox) {
        let Some(track) = self
            .tracks
            .iter_mut()
            .find(|t| t.item_id == stopped.item_id)
        else {
            tracing::debug!(target: "liveagent::openai", item_id = %stopped.item_id, "playback report for an unknown item");
            return;
        };
        track.playback_done = true;
        if !stopped.interrupted {
            return;
        }
        let audio_ms = track.bytes / BYTES_PER_MS;
        let end = stopped.played_ms.min(audio_ms);
        let complete = track.audio_done && stopped.played_ms >= audio_ms;
        let same_connection = track.generation == self.generation && self.phase == Phase::Ready;
        let item_id = track.item_id.to_string();
        if let Some(HistoryItem::Assistant { heard_ms, .. }) = self.history.assistant_mut(&item_id)
        {
            *heard_ms = Some(end);
        }
        if complete {
            tracing::debug!(target: "liveagent::openai", %item_id, "item was heard in full; no truncation");
        } else if !same_connection {
            tracing::debug!(target: "liveagent::openai", %item_id, "item belongs to an earlier connection; history trimmed only");
        } else {
            tracing::debug!(target: "liveagent::openai", %item_id, audio_end_ms = end, audio_ms, "truncating the interrupted item");
            self.send(
                out,
                &ClientEvent::ConversationItemTruncate {
                    item_id,
                    content_index: 0,
                    audio_end_ms: end,
                },
            );
        }
    }

    fn on_control(&mut self, command: ControlCommand, out: &mut Outbox) {
        let manual = matches!(self.config.input.turn_detection, TurnDetection::Manual);
        match command {
            ControlCommand::CommitInput => {
                if self.input_bytes == 0 {
                    tracing::debug!(target: "liveagent::openai", "commit of an empty input buffer skipped");
                } else {
                    self.input_bytes = 0;
                    self.send(out, &ClientEvent::InputAudioBufferCommit);
                }
            }
            ControlCommand::ClearInput => {
                self.input_bytes = 0;
                self.send(out, &ClientEvent::InputAudioBufferClear);
            }
            ControlCommand::CreateResponse => self.request_response(out),
            ControlCommand::CancelResponse => {
                self.response_deferred = false;
                if self.active.is_some() || self.response_requested {
                    self.interrupt(out);
                    self.send(out, &ClientEvent::ResponseCancel { response_id: None });
                } else {
                    tracing::debug!(target: "liveagent::openai", "no response to cancel");
                }
            }
            ControlCommand::ActivityStart if manual => {
                self.user_speaking = true;
                if self.active.is_some() {
                    self.send(out, &ClientEvent::ResponseCancel { response_id: None });
                }
                self.interrupt(out);
                self.input_bytes = 0;
                self.send(out, &ClientEvent::InputAudioBufferClear);
            }
            ControlCommand::ActivityEnd if manual => {
                self.user_speaking = false;
                if self.input_bytes == 0 {
                    tracing::debug!(target: "liveagent::openai", "activity end without audio: nothing to commit");
                } else {
                    self.input_bytes = 0;
                    self.send(out, &ClientEvent::InputAudioBufferCommit);
                    self.request_response(out);
                }
            }
            ControlCommand::ActivityStart | ControlCommand::ActivityEnd => {
                tracing::debug!(target: "liveagent::openai", ?command, "activity markers only apply to manual turn detection; ignored");
            }
        }
    }
}

impl RealtimeProtocol for OpenAiProtocol {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn connect_request(&self) -> Result<ConnectRequest, LiveError> {
        let base = websocket_base(&self.config.base_url)?;
        let mut query: Vec<(&str, &str)> = Vec::new();
        let mut api_key_header = false;
        match &self.config.azure {
            Some(az) => {
                if let Some(v) = &az.api_version {
                    query.push(("api-version", v));
                }
                match &az.deployment {
                    Some(d) => query.push(("deployment", d)),
                    None => query.push(("model", &self.config.model)),
                }
                api_key_header = az.api_key_header;
            }
            None => query.push(("model", &self.config.model)),
        }
        let query = query
            .iter()
            .map(|(k, v)| format!("{k}={}", encode_query(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut headers = Vec::new();
        if api_key_header {
            headers.push(("api-key".to_owned(), self.key.expose().to_owned()));
        } else {
            headers.push((
                "Authorization".to_owned(),
                format!("Bearer {}", self.key.expose()),
            ));
        }
        if let Some(org) = &self.config.organization {
            headers.push(("OpenAI-Organization".to_owned(), org.clone()));
        }
        if let Some(project) = &self.config.project {
            headers.push(("OpenAI-Project".to_owned(), project.clone()));
        }
        Ok(ConnectRequest {
            url: format!("{base}/realtime?{query}"),
            headers,
            secret: Some(self.key.clone()),
        })
    }

    fn on_open(&mut self, reconnect: bool, out: &mut Outbox) {
        tracing::debug!(target: "liveagent::openai", reconnect, "socket open; waiting for session.created");
        if self.phase != Phase::Closed {
            // The previous connection was not reported closed: close it now, so a response
            // it left running still gets its ResponseDone.
            self.on_close(out);
        }
        self.generation += 1;
        self.phase = Phase::AwaitingCreated;
        self.input_bytes = 0;
        self.user_speaking = false;
    }

    fn on_frame(&mut self, frame: WireFrame, out: &mut Outbox) {
        let bytes = frame.as_bytes();
        match serde_json::from_slice::<ServerEvent>(bytes) {
            Ok(ServerEvent::Unknown) => {
                let kind = serde_json::from_slice::<TypeOnly>(bytes)
                    .ok()
                    .and_then(|t| t.kind);
                tracing::debug!(target: "liveagent::openai", event = kind.as_deref().unwrap_or("?"), "server event ignored");
            }
            Ok(event) => self.handle_event(event, out),
            Err(e) => {
                let kind = serde_json::from_slice::<TypeOnly>(bytes)
                    .ok()
                    .and_then(|t| t.kind);
                let what = match kind {
                    Some(k) => format!("malformed `{k}` event"),
                    None => "undecodable frame".to_owned(),
                };
                self.error(out, ErrorKind::Protocol, format!("openai: {what}: {e}"));
            }
        }
    }

    fn on_command(&mut self, command: SessionCommand, out: &mut Outbox) {
        match command {
            SessionCommand::Audio(chunk) => self.on_audio(chunk, out),
            SessionCommand::Text(text) => self.on_text(text, out),
            SessionCommand::Control(c) => self.on_control(c, out),
            SessionCommand::ToolResult(r) => self.on_tool_result(r, out),
            SessionCommand::PlaybackStopped(p) => self.on_playback_stopped(p, out),
        }
    }

    fn on_close(&mut self, out: &mut Outbox) {
        tracing::debug!(target: "liveagent::openai", phase = ?self.phase, "connection closed");
        self.phase = Phase::Closed;
        self.user_speaking = false;
        self.input_bytes = 0;
        if self.response_requested {
            // Asked for, never started: ask again in the new session.
            self.response_requested = false;
            self.response_deferred = true;
        }
        if let Some(active) = self.active.take() {
            out.publish(ResponseDone {
                response_id: active.id.clone(),
                status: ResponseStatus::Failed,
                reason: Some("connection lost".to_owned()),
                usage: None,
            });
            // Its complete calls are real decisions of the model: run them; the outputs go
            // into the new session after the replayed calls.
            let calls: Vec<ToolCall> = active
                .calls
                .into_iter()
                .filter_map(|c| {
                    let raw = c.arguments?;
                    self.awaiting_outputs.insert(c.call_id.clone());
                    Some(ToolCall {
                        call_id: c.call_id.into(),
                        name: c.name.into(),
                        arguments: parse_arguments(&raw),
                        response_id: Some(active.id.clone()),
                    })
                })
                .collect();
            if !calls.is_empty() {
                out.publish(ToolCallRequested { calls });
            }
        }
        self.history.finish_all();
        for t in self.tracks.iter_mut() {
            t.odd_byte = None;
        }
    }

    fn input_sample_rate(&self) -> u32 {
        SAMPLE_RATE
    }

    fn is_idle(&self) -> bool {
        self.active.is_none()
            && !self.response_requested
            && !self.response_deferred
            && !self.user_speaking
            && self.awaiting_outputs.is_empty()
    }

    fn max_connection_age(&self) -> Option<Duration> {
        Some(self.config.max_connection_age)
    }
}
