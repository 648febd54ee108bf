//! One OpenAI Realtime session: input buffer + VAD, conversation items, responses.
//!
//! The session is one `OaSession` value driven by the loop in `run`; its methods are split by
//! concern, one file each:
//! - `config`: `session.update` validation and the effective session configuration;
//! - `input`: the input audio buffer, turn detection and commits;
//! - `items`: conversation items (create, truncate, wire form);
//! - `response`: planning, starting, pacing and ending responses;
//! - `output`: streaming one output item (audio/text/arguments deltas) and finishing it.

mod config;
mod input;
mod items;
mod output;
mod response;

use config::{default_session, derive_settings};
use items::{not_found, wire_item};
use output::split_words;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix_ws::{AggregatedMessage, AggregatedMessageStream};
use serde_json::Value;
use tokio::time::Instant;

use super::wire::*;
use crate::audio::{self, Pcm, WireAudio, INTERNAL_RATE};
use crate::brain::Step;
use crate::conn::{Conn, End};
use crate::input_audio::InputAudio;
use crate::items::{Item, ProtocolKind, SessionInfo};
use crate::registry::{Listed, SnapshotReceiver, Tracked};
use crate::server::{Selected, Shared};
use crate::tokens::Refusal;
use crate::vad::{Vad, VadConfig};

type R = Result<(), End>;

/// How far behind schedule paced audio may fall before the server stops catching up
/// (overdue chunks are sent back to back until then, so a short stall does not shift the
/// rest of the response).
const CATCH_UP: Duration = Duration::from_millis(500);

const SPS_MS: u64 = (INTERNAL_RATE / 1000) as u64; // samples per ms

/// Turn detection in force.
#[derive(Clone, Debug)]
struct TurnDetection {
    vad: VadConfig,
    create_response: bool,
    interrupt_response: bool,
    /// server_vad `idle_timeout_ms`: answer after this much silence following a response.
    idle_timeout: Option<Duration>,
}

/// Runtime settings derived from the effective session config.
#[derive(Clone, Debug)]
struct Settings {
    text_only: bool,
    turn: Option<TurnDetection>,
    transcription: bool,
    input_fmt: WireAudio,
    output_fmt: WireAudio,
}

/// A validation problem in a client event.
struct Invalid {
    code: &'static str,
    message: String,
    param: Option<String>,
}

impl From<super::schema::SchemaError> for Invalid {
    fn from(e: super::schema::SchemaError) -> Self {
        Invalid {
            code: e.code,
            message: e.message,
            param: e.param,
        }
    }
}

fn invalid(code: &'static str, message: impl Into<String>, param: Option<&str>) -> Invalid {
    Invalid {
        code,
        message: message.into(),
        param: param.map(str::to_owned),
    }
}

enum Cur {
    Say {
        item_id: String,
        idx: u32,
        audio: Pcm,
        pos: usize,
        text: Vec<char>,
        text_sent: usize,
        words: VecDeque<String>,
        drop_at: Option<usize>,
    },
    Call {
        item_id: String,
        idx: u32,
        call_id: String,
        name: String,
        args: String,
        pieces: VecDeque<String>,
        drop_mid: bool,
    },
}

struct Run {
    id: String,
    steps: VecDeque<Step>,
    cur: Option<Cur>,
    next_at: Instant,
    paced: bool,
    next_index: u32,
    output: Vec<WireItem>,
    text_only: bool,
    in_conversation: bool,
    slow: f32,
    sent_at_start: u64,
    drop_after_events: Option<u32>,
    turn: u32,
    calls: Vec<String>,
    out_audio_samples: usize,
    out_text_chars: usize,
    metadata: Option<Value>,
}

struct Pending {
    steps: VecDeque<Step>,
    call_ids: Vec<String>,
    outputs: HashMap<String, String>,
    turn: u32,
}

struct Speech {
    item_id: String,
    start_ms: u64,
}

struct OaSession {
    shared: Arc<Shared>,
    conn: Conn,
    sid: u64,
    selected: Selected,
    model: String,
    next_event: u64,
    config: Value,
    settings: Settings,
    items: Vec<Item>,
    /// The input audio buffer.
    input: InputAudio,
    vad: Vad,
    speech: Option<Speech>,
    run: Option<Run>,
    pending: Option<Pending>,
    unanswered: Option<String>,
    /// User audio item id -> (the voiced part to echo, its "[speech x s]" label).
    echo_audio: HashMap<String, (Pcm, String)>,
    /// A VAD turn ended while a response was running (interrupt_response off).
    deferred_response: bool,
    /// When the idle timeout fires (server_vad `idle_timeout_ms`).
    idle_at: Option<Instant>,
    conv_id: String,
    chunk: Duration,
    responses: u32,
    client_errors: u32,
    /// The last client data frame or the end of the last response (idle session timeout).
    last_activity: Instant,
    /// The frame just handled was a plain `input_audio_buffer.append` (fast path).
    plain_append: bool,
}

/// Runs a session until the client goes away or the server closes it.
pub(crate) async fn run(
    shared: Arc<Shared>,
    ws: actix_ws::Session,
    mut stream: AggregatedMessageStream,
    selected: Selected,
    model: String,
    authorized: Result<(), Refusal>,
    sock: Option<Arc<std::net::TcpStream>>,
) {
    let (mut s, mut asks) = Tracked::open(OaSession::new(shared, ws, selected, model, sock));
    let _ = s.main(&mut stream, authorized, &mut asks).await;
    s.conn.drop_now_quiet();
    s.conn.finish().await;
}

impl Listed for OaSession {
    fn shared(&self) -> &Shared {
        &self.shared
    }

    fn meta(&self, connected: bool) -> SessionInfo {
        SessionInfo {
            id: self.sid,
            protocol: ProtocolKind::OpenAi,
            model: self.model.clone(),
            scenario: self.selected.key.clone(),
            connected,
            items: Vec::new(),
            responses: self.responses,
            resumed_from: None,
            client_errors: self.client_errors,
            input_buffered_ms: audio::samples_to_ms(self.input.len(), INTERNAL_RATE),
        }
    }

    fn items(&self) -> &[Item] {
        &self.items
    }
}

impl OaSession {
    fn new(
        shared: Arc<Shared>,
        ws: actix_ws::Session,
        selected: Selected,
        model: String,
        sock: Option<Arc<std::net::TcpStream>>,
    ) -> Self {
        let sid = shared.new_session_id();
        let vad_cfg = shared.cfg.vad.clone();
        let chunk = Duration::from_millis(shared.cfg.effective_chunk_ms() as u64);
        let config = default_session(&shared, sid, &model);
        let settings = derive_settings(&config, &vad_cfg).unwrap_or(Settings {
            text_only: false,
            turn: Some(TurnDetection {
                vad: vad_cfg.clone(),
                create_response: true,
                interrupt_response: true,
                idle_timeout: None,
            }),
            transcription: false,
            input_fmt: WireAudio::Pcm(INTERNAL_RATE),
            output_fmt: WireAudio::Pcm(INTERNAL_RATE),
        });
        let conv_id = shared.new_id("conv");
        OaSession {
            conn: Conn::new(ws, shared.clone(), sock),
            shared,
            sid,
            selected,
            model,
            next_event: 1,
            config,
            settings,
            items: Vec::new(),
            input: InputAudio::default(),
            vad: Vad::new(vad_cfg),
            speech: None,
            run: None,
            pending: None,
            unanswered: None,
            echo_audio: HashMap::new(),
            deferred_response: false,
            idle_at: None,
            conv_id,
            chunk,
            responses: 0,
            client_errors: 0,
            last_activity: Instant::now(),
            plain_append: false,
        }
    }

    /// When the idle-session timeout fires, unless a response is running.
    fn idle_deadline(&self) -> Option<Instant> {
        let limit = self.shared.cfg.idle_timeout?;
        self.run.is_none().then(|| self.last_activity + limit)
    }

    /// Nothing from the client for the whole idle timeout: say so and close.
    async fn idle_close(&mut self) -> R {
        let limit = self.shared.cfg.idle_timeout.unwrap_or_default();
        tracing::info!("OpenAI session {}: idle for {limit:?}; closing", self.sid);
        self.shared
            .stats
            .idle_closed
            .fetch_add(1, Ordering::Relaxed);
        self.error_event(
            None,
            "invalid_request_error",
            "session_expired",
            &format!(
                "The session received no client events for {} s and has been closed (idle timeout).",
                limit.as_secs()
            ),
            None,
        )
        .await?;
        self.conn.close(1000, "idle timeout").await;
        Err(End::Closed)
    }

    async fn main(
        &mut self,
        stream: &mut AggregatedMessageStream,
        authorized: Result<(), Refusal>,
        asks: &mut SnapshotReceiver,
    ) -> R {
        self.publish(true);
        if let Err(refusal) = authorized {
            self.emit(ServerEvent::Error {
                error: ErrorBody {
                    kind: "invalid_request_error",
                    code: Some(refusal.code.into()),
                    message: refusal.message,
                    param: None,
                    event_id: None,
                },
            })
            .await?;
            self.conn.close(1008, refusal.code).await;
            return Err(End::Closed);
        }
        self.emit(ServerEvent::SessionCreated {
            session: self.config.clone(),
        })
        .await?;
        self.selected
            .state
            .connections
            .fetch_add(1, Ordering::SeqCst);
        let n = self.selected.state.connections.load(Ordering::SeqCst);
        if let Some(sc) = self.selected.brain.scenario() {
            for step in sc.connect_steps(n).unwrap_or_default() {
                self.simple_step(step).await?;
            }
        }
        loop {
            let before = (self.items.len(), self.run.is_some());
            let deadline = self.run.as_ref().map(|r| r.next_at);
            let idle = self.idle_deadline();
            tokio::select! {
                Some(ask) = asks.recv() => ask(self.snapshot(true)),
                msg = stream.recv() => match msg {
                    None => return Err(End::Closed),
                    Some(Ok(AggregatedMessage::Text(t))) => self.on_frame(&t).await?,
                    Some(Ok(AggregatedMessage::Binary(b))) => match std::str::from_utf8(&b) {
                        Ok(t) => self.on_frame(t).await?,
                        Err(_) => {
                            self.conn.received(&format!("<{} bytes of binary data>", b.len()));
                            self.client_error(None, "invalid_json", "Binary frames must hold UTF-8 JSON.", None).await?
                        }
                    },
                    Some(Ok(AggregatedMessage::Ping(p))) => self.conn.pong(&p).await?,
                    Some(Ok(AggregatedMessage::Pong(_))) => {}
                    Some(Ok(AggregatedMessage::Close(_))) => {
                                                self.conn.close(1000, "").await;
                        return Err(End::Closed);
                    }
                    Some(Err(e)) => {
                        tracing::warn!("OpenAI session {}: WebSocket protocol error: {e}", self.sid);
                        let _ = self.client_error(None, "invalid_frame", &format!("WebSocket protocol error: {e}"), None).await;
                        self.conn.close(1009, "frame too large or invalid").await;
                        return Err(End::Closed);
                    }
                },
                _ = sleep_until_opt(deadline), if deadline.is_some() => self.advance().await?,
                _ = sleep_until_opt(self.idle_at), if self.idle_at.is_some() && self.run.is_none() => self.idle_timeout().await?,
                _ = sleep_until_opt(idle), if idle.is_some() => return self.idle_close().await,
            }
            // A plain append (50 a second) that neither added an item nor started or ended a
            // response changed no kept audio: the budget walk is skipped for it.
            let plain = std::mem::take(&mut self.plain_append);
            if !plain || (self.items.len(), self.run.is_some()) != before {
                crate::items::keep_recent_audio(
                    &mut self.items,
                    self.shared.cfg.conversation_audio_samples(),
                );
            }
            if !self.conn.is_open() {
                return Err(End::Closed);
            }
        }
    }

    // ---------------------------------------------------------------- sending

    async fn emit(&mut self, event: ServerEvent) -> R {
        let id = format!("event_{}", self.next_event);
        self.next_event += 1;
        let envelope = Envelope {
            event_id: &id,
            event: &event,
        };
        match envelope.to_json() {
            Ok(text) => self.conn.send_text(text).await?,
            Err(e) => tracing::error!("cannot serialize a server frame: {e}"),
        }
        if let Some(run) = &self.run {
            if let Some(k) = run.drop_after_events {
                if self.conn.sent - run.sent_at_start >= k as u64 {
                    tracing::info!("scenario: dropping the connection after {k} response events");
                    self.conn.drop_now();
                    return Err(End::Closed);
                }
            }
        }
        Ok(())
    }

    async fn error_event(
        &mut self,
        client_event_id: Option<String>,
        kind: &'static str,
        code: &str,
        message: &str,
        param: Option<String>,
    ) -> R {
        self.emit(ServerEvent::Error {
            error: ErrorBody {
                kind,
                code: Some(code.to_owned()),
                message: message.to_owned(),
                param,
                event_id: client_event_id,
            },
        })
        .await
    }

    async fn client_error(
        &mut self,
        client_event_id: Option<String>,
        code: &str,
        message: &str,
        param: Option<String>,
    ) -> R {
        self.client_errors += 1;
        self.shared
            .stats
            .client_errors
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            "OpenAI session {}: client error {code}: {message}",
            self.sid
        );
        self.error_event(
            client_event_id,
            "invalid_request_error",
            code,
            message,
            param,
        )
        .await
    }

    // ---------------------------------------------------------------- receiving

    async fn on_frame(&mut self, text: &str) -> R {
        self.conn.received(text);
        self.last_activity = Instant::now();
        // Fast path for the frame that comes 50 times a second: a plain
        // `input_audio_buffer.append` is read with borrowed fields (no `Value` tree, no copy
        // of the base64 text). Anything else, or anything unusual about it (escapes, other
        // keys, duplicates, wrong types), takes the general path below, whose checks and
        // errors are the reference.
        if let Ok(frame) = serde_json::from_str::<AppendFrame>(text) {
            if frame.kind == "input_audio_buffer.append" {
                if let Err(inv) = self.append_b64(frame.audio).await? {
                    let event_id = frame.event_id.map(str::to_owned);
                    self.client_error(event_id, inv.code, &inv.message, inv.param)
                        .await?;
                }
                self.plain_append = true;
                // Only the counters can have changed: no metadata strings copied.
                self.shared.registry.update_counts(
                    self.sid,
                    self.responses,
                    self.client_errors,
                    audio::samples_to_ms(self.input.len(), INTERNAL_RATE),
                );
                return Ok(());
            }
        }
        let value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                return self
                    .client_error(
                        None,
                        "invalid_json",
                        &format!("The frame is not valid JSON: {e}"),
                        None,
                    )
                    .await
            }
        };
        let event_id = value
            .get("event_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if value.get("type").and_then(Value::as_str).is_none() {
            return self
                .client_error(
                    event_id,
                    "missing_required_parameter",
                    "Missing required parameter: 'type'.",
                    Some("type".into()),
                )
                .await;
        }
        let event: ClientEvent = match super::schema::parse_event(value) {
            Ok(e) => e,
            Err(e) => {
                return self
                    .client_error(event_id, e.code, &e.message, e.param)
                    .await;
            }
        };
        let result = self.on_event(event).await?;
        if let Err(inv) = result {
            self.client_error(event_id, inv.code, &inv.message, inv.param)
                .await?;
        }
        self.publish(true);
        Ok(())
    }

    /// `input_audio_buffer.append` with its base64 `audio`.
    async fn append_b64(&mut self, audio: &str) -> Result<Result<(), Invalid>, End> {
        let bytes = match audio::b64_decode(audio) {
            Ok(b) => b,
            Err(e) => {
                return Ok(Err(invalid(
                    "invalid_value",
                    format!("Invalid 'audio': not base64 ({e})."),
                    Some("audio"),
                )))
            }
        };
        let samples = self.settings.input_fmt.decode(&bytes);
        let cap_ms = self.shared.cfg.max_input_audio_ms;
        let cap = audio::ms_to_samples(cap_ms, INTERNAL_RATE);
        if self.input.len() + samples.len() > cap {
            return Ok(Err(invalid(
                "input_audio_buffer_full",
                format!(
                    "The input audio buffer holds at most {cap_ms} ms of audio and this append would exceed it; commit or clear the buffer first."
                ),
                None,
            )));
        }
        self.append(samples).await?;
        Ok(Ok(()))
    }

    async fn on_event(&mut self, event: ClientEvent) -> Result<Result<(), Invalid>, End> {
        match event {
            ClientEvent::SessionUpdate { session } => {
                match self.apply_update(session) {
                    Ok(()) => {
                        self.emit(ServerEvent::SessionUpdated {
                            session: self.config.clone(),
                        })
                        .await?
                    }
                    Err(e) => return Ok(Err(e)),
                }
            }
            ClientEvent::Append { audio } => return self.append_b64(&audio).await,
            ClientEvent::Commit {} => return self.manual_commit().await,
            ClientEvent::Clear {} => {
                self.input.clear();
                let _ = self.vad.flush();
                self.speech = None;
                self.emit(ServerEvent::Cleared {}).await?;
            }
            ClientEvent::ItemCreate {
                item,
                previous_item_id,
            } => return self.item_create(item, previous_item_id).await,
            ClientEvent::ItemRetrieve { item_id } => {
                let Some(item) = self.items.iter().find(|i| i.id == item_id) else {
                    return Ok(Err(not_found(&item_id)));
                };
                let item = wire_item(item, true, self.settings.output_fmt);
                self.emit(ServerEvent::ItemRetrieved { item }).await?;
            }
            ClientEvent::ItemTruncate {
                item_id,
                content_index,
                audio_end_ms,
            } => return self.truncate(item_id, content_index, audio_end_ms).await,
            ClientEvent::ItemDelete { item_id } => {
                let Some(pos) = self.items.iter().position(|i| i.id == item_id) else {
                    return Ok(Err(not_found(&item_id)));
                };
                self.items.remove(pos);
                self.echo_audio.remove(&item_id);
                if self.unanswered.as_deref() == Some(item_id.as_str()) {
                    self.unanswered = None;
                }
                self.emit(ServerEvent::ItemDeleted { item_id }).await?;
            }
            ClientEvent::ResponseCreate { response } => {
                if self.run.is_some() {
                    return Ok(Err(invalid(
                        "conversation_already_has_active_response",
                        "Conversation already has an active response in progress.",
                        None,
                    )));
                }
                self.start_response(response.unwrap_or_default()).await?;
            }
            ClientEvent::ResponseCancel { response_id } => {
                let active = self.run.as_ref().map(|r| r.id.clone());
                match (active, response_id) {
                    (Some(a), Some(r)) if a != r => {
                        return Ok(Err(invalid(
                            "response_cancel_not_active",
                            format!("Response '{r}' is not active."),
                            Some("response_id"),
                        )))
                    }
                    (Some(_), _) => self.cancel_run("client_cancelled").await?,
                    (None, _) => {
                        return Ok(Err(invalid(
                            "response_cancel_not_active",
                            "Cancellation failed: no active response found.",
                            None,
                        )))
                    }
                }
            }
            ClientEvent::OutputAudioBufferClear {} => {
                return Ok(Err(invalid(
                    "invalid_value",
                    "output_audio_buffer.clear is only supported for WebRTC and SIP sessions; over WebSocket the client owns playback.",
                    Some("type"),
                )))
            }
        }
        Ok(Ok(()))
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
