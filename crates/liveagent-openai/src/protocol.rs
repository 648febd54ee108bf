//! [`OpenAiProtocol`]: the sans-IO state machine of one OpenAI Realtime conversation.
//!
//! # Handshake
//! `on_open` → wait for `session.created` → send `session.update` (and, after a reconnect,
//! the conversation history as `conversation.item.create` items) → on `session.updated`
//! signal [`ProtocolSignal::Ready`](liveagent_core::ProtocolSignal::Ready). The first time it also publishes `SessionOpened` and
//! `SessionUpdated`; after a reconnect nothing is published again.
//!
//! # Barge-in
//! When the server reports `input_audio_buffer.speech_started` and the turn detection
//! interrupts responses, the protocol publishes `SpeechStarted` and, if a response is running
//! or audio was produced that the player has not reported as finished, `Interrupted`: the
//! player flushes its queue and reports `PlaybackStopped { interrupted: true, played_ms }`.
//! Audio deltas of the interrupted response that still arrive are dropped, but counted as
//! audio the provider produced for the item. The protocol then sends
//! `conversation.item.truncate` so the model's memory matches what the user heard, and cuts
//! its own history copy of the transcript proportionally (see
//! [`HistoryItem::replay_text`](crate::HistoryItem::replay_text)).
//!
//! ## The truncate rule
//! Audio the provider produced for an item that the listener did not hear (dropped as late,
//! flushed by the player, never played) is unheard. With `heard` = the player's `played_ms`
//! capped at the audio handed to the player, and `produced` = all audio the provider sent
//! for the item (late deltas included), a truncate to `audio_end_ms = heard` is sent, once
//! per item, when the player reports the item stopped by a barge-in, or when late audio of
//! an interrupted response arrives for an item whose playback was already reported, and:
//! - `heard < produced`, or the item's audio is not complete yet (`output_audio.done` not
//!   seen: the provider may hold more than we saw);
//! - the item has audio (`produced > 0`): the API rejects truncating an item without audio;
//! - the item was produced on the current connection and the session is ready: after a
//!   reconnect the provider does not know the item (only our history copy is cut);
//! - `audio_end_ms <= produced` always holds (the API rejects a position past the audio).
//!
//! # Tool calls
//! Calls are collected from `response.function_call_arguments.done`, `output_item.done` and
//! `response.done`; one `ToolCallRequested` with every call of the response is published when
//! `response.done` arrives (calls of a cancelled or failed response are dropped). Each call's
//! output is sent exactly once; `response.create` follows when the result asks for it, deferred
//! until no response is running.
//!
//! # Layout
//! The state (this struct and the small records it keeps) and the [`RealtimeProtocol`] entry
//! points live here; the behaviour is split by concern:
//! - `session`: session lifecycle: the connect URL, the handshake
//!   (`session.created` → `session.update` → `session.updated`), the session configuration,
//!   and `error` events ([`classify_error`]).
//! - `events`: the one `match` over server events, handing each to its concern.
//! - `turns`: responses: `response.created`/`response.done`, when `response.create` is sent,
//!   user text and the control commands.
//! - `items`: conversation items and the history copy kept for replay (user audio, assistant
//!   text and transcripts).
//! - `audio`: microphone audio in, model audio out, barge-in and truncation.
//! - `tools`: function calls collected per response, their results ([`parse_arguments`]).

mod audio;
mod events;
mod items;
mod session;
mod tools;
mod turns;

pub use session::classify_error;
use session::encode_query;
pub(crate) use session::websocket_base;
pub use tools::parse_arguments;

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use liveagent_core::limits::{ItemTextCaps, RecentIds};
use liveagent_core::{
    ConnectRequest, ErrorKind, Id, LiveError, Outbox, RealtimeProtocol, ResponseDone,
    ResponseStatus, RestoreSnapshot, RestoreTurn, Secret, SessionCommand, SessionSetup,
    TextDropped, ToolCall, ToolCallRequested, WireFrame,
};

use crate::config::RealtimeConfig;
use crate::history::{History, HistoryItem};
use crate::resample::LinearResampler;
use crate::wire::{ClientEvent, ServerEvent, TypeOnly};

const PROVIDER: &str = "openai";
/// PCM16 mono at 24 kHz: bytes per millisecond.
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
    /// Audio the provider produced for the item (late deltas dropped after a barge-in too).
    bytes: u64,
    /// Audio handed to the player (published as `SynthesizedAudio`).
    delivered: u64,
    /// What the player reported as played, once it did.
    heard_ms: Option<u64>,
    /// A truncate was sent for the item on this connection.
    truncated: bool,
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
    /// `call_id` → index in `calls`: one lookup per function-call event, so a response
    /// with tens of thousands of calls is handled in linear time.
    call_index: HashMap<String, usize>,
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
    /// Byte caps per item on transcripts and text.
    text_caps: ItemTextCaps,
    /// When the last `TextDropped` for the history bound was published.
    trim_reported_at: Option<std::time::Instant>,
    /// Calls whose arguments arrived and whose output was not sent yet (an id leaves when its
    /// output is sent or its response is cancelled, so this holds only calls in flight).
    known_calls: HashSet<String>,
    /// The most recent calls whose output was sent (bounded), to drop duplicate results.
    outputs_sent: RecentIds,
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

impl OpenAiProtocol {
    /// A protocol for one conversation. Prefer [`RealtimeConfig::protocol`], which validates
    /// the configuration and resolves the key.
    pub fn new(config: RealtimeConfig, setup: SessionSetup, key: Secret) -> Self {
        let history = History::new(config.history_limit).with_max_bytes(config.history_max_bytes);
        let text_caps = ItemTextCaps::new(config.max_item_text_bytes);
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
            text_caps,
            trim_reported_at: None,
            known_calls: HashSet::new(),
            outputs_sent: RecentIds::default(),
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

    /// How many call ids the protocol tracks: calls in flight (arguments received, output not
    /// sent) plus the most recent answered calls remembered to drop duplicate results (at most
    /// [`DEFAULT_MAX_REMEMBERED_IDS`](liveagent_core::limits::DEFAULT_MAX_REMEMBERED_IDS)).
    /// Bounded however many calls a provider sends over a conversation's life.
    pub fn tracked_call_ids(&self) -> usize {
        self.known_calls.len() + self.outputs_sent.len() + self.awaiting_outputs.len()
    }

    fn send(&self, out: &mut Outbox, event: &ClientEvent) {
        out.send_text(event.to_json());
    }

    /// Provider-supplied `text` with the API key redacted, for logs.
    fn redact(&self, text: &str) -> String {
        self.key.redact(text)
    }

    /// Publishes a `TextDropped` event when the history bounds dropped items.
    fn report_trimmed(&mut self, out: &mut Outbox) {
        // At most one report a second: a flood of tool outputs trims one item per output.
        let now = std::time::Instant::now();
        if self
            .trim_reported_at
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        if let Some((items, bytes)) = self.history.take_trimmed() {
            self.trim_reported_at = Some(now);
            tracing::debug!(target: "liveagent::openai", items, bytes, "oldest history items dropped");
            out.publish(TextDropped {
                source: PROVIDER.into(),
                item_id: None,
                items,
                bytes: bytes as u64,
                reason: format!(
                    "the history kept to restore the session passed its bound ({} items, {} bytes); its oldest items were dropped",
                    self.config.history_limit, self.config.history_max_bytes
                ),
            });
        }
    }

    fn error(&self, out: &mut Outbox, kind: ErrorKind, message: String) {
        let message = self.key.redact(&message);
        tracing::warn!(target: "liveagent::openai", "{message}");
        out.error(PROVIDER, LiveError::new(kind, message));
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
        // Most frames of a conversation are audio deltas: their fields are found in the text
        // without a JSON parser and the base64 is decoded straight from the frame. Whatever
        // the scan is not certain of, and a delta that does not decode, takes the one full
        // parse below (and its errors); other events are parsed once.
        if let WireFrame::Text(text) = &frame {
            if let Some(d) = crate::wire::AudioDeltaFrame::scan(text) {
                if let Ok(bytes) = base64_simd::STANDARD.decode_to_vec(d.delta) {
                    return self.on_audio_bytes(d.response_id, d.item_id, bytes, out);
                }
            }
        }
        match parse_frame::<ServerEvent>(&frame) {
            Ok(ServerEvent::Unknown) => {
                let kind = parse_frame::<TypeOnly>(&frame).ok().and_then(|t| t.kind);
                let event = self.redact(kind.as_deref().unwrap_or("?"));
                tracing::debug!(target: "liveagent::openai", %event, "server event ignored");
            }
            Ok(event) => {
                self.handle_event(event, out);
                self.report_trimmed(out);
            }
            Err(e) => {
                let kind = parse_frame::<TypeOnly>(&frame).ok().and_then(|t| t.kind);
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
        self.report_trimmed(out);
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
                text: None,
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
        self.config.input_format.sample_rate()
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

    /// Seeds the replay history: the first `session.created` replays it as after a drop.
    /// OpenAI has no resumption handle; one in the snapshot is ignored.
    fn restore(&mut self, snapshot: &RestoreSnapshot) -> Result<(), LiveError> {
        for turn in &snapshot.turns {
            let item = match turn {
                RestoreTurn::User(text) => HistoryItem::UserText { text: text.clone() },
                RestoreTurn::Assistant {
                    item_id,
                    text,
                    audio_ms,
                    heard_ms,
                } => HistoryItem::Assistant {
                    item_id: item_id.clone(),
                    text: text.clone(),
                    done: true,
                    audio_ms: *audio_ms,
                    heard_ms: *heard_ms,
                },
                RestoreTurn::ToolCall {
                    call_id,
                    name,
                    arguments,
                } => {
                    self.known_calls.insert(call_id.clone());
                    HistoryItem::FunctionCall {
                        call_id: call_id.clone(),
                        name: name.clone(),
                        arguments: match arguments {
                            serde_json::Value::String(raw) => raw.clone(),
                            v => v.to_string(),
                        },
                    }
                }
                RestoreTurn::ToolResult(result) => {
                    let call_id = result.call_id.to_string();
                    self.known_calls.remove(&call_id);
                    self.outputs_sent.insert(call_id.clone());
                    HistoryItem::FunctionCallOutput {
                        call_id,
                        output: result.output_text(),
                    }
                }
            };
            self.history.push(item);
        }
        Ok(())
    }
}

/// Parses a server frame: a text frame as the `str` it already is (its UTF-8 was checked
/// once, when it was read), a binary frame as bytes (serde checks its strings).
fn parse_frame<'a, T: serde::Deserialize<'a>>(frame: &'a WireFrame) -> serde_json::Result<T> {
    match frame {
        WireFrame::Text(text) => serde_json::from_str(text),
        WireFrame::Binary(bytes) => serde_json::from_slice(bytes),
    }
}
