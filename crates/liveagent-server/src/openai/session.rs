//! One OpenAI Realtime session: input buffer + VAD, conversation items, responses.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix_ws::{AggregatedMessage, AggregatedMessageStream};
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use super::wire::*;
use crate::audio::{self, WireAudio, INTERNAL_RATE};
use crate::brain::{substitute, Plan, Step, TurnInput};
use crate::conn::{Conn, End};
use crate::items::{Content, Item, ItemKind, ProtocolKind, Role, SessionInfo};
use crate::server::{Selected, Shared};
use crate::vad::{Vad, VadConfig, VadEvent};
use crate::Pacing;

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
        audio: Arc<Vec<i16>>,
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
    buf: Vec<i16>,
    buf_start: u64,
    total_samples: u64,
    vad: Vad,
    speech: Option<Speech>,
    run: Option<Run>,
    pending: Option<Pending>,
    unanswered: Option<String>,
    /// User audio item id -> (the voiced part to echo, its "[speech x s]" label).
    echo_audio: HashMap<String, (Arc<Vec<i16>>, String)>,
    /// A VAD turn ended while a response was running (interrupt_response off).
    deferred_response: bool,
    /// When the idle timeout fires (server_vad `idle_timeout_ms`).
    idle_at: Option<Instant>,
    conv_id: String,
    chunk: Duration,
    responses: u32,
    client_errors: u32,
}

/// Runs a session until the client goes away or the server closes it.
pub(crate) async fn run(
    shared: Arc<Shared>,
    ws: actix_ws::Session,
    mut stream: AggregatedMessageStream,
    selected: Selected,
    model: String,
    authorized: bool,
) {
    shared.stats.sessions_total.fetch_add(1, Ordering::Relaxed);
    shared.stats.sessions_active.fetch_add(1, Ordering::Relaxed);
    let mut s = OaSession::new(shared.clone(), ws, selected, model);
    let _ = s.main(&mut stream, authorized).await;
    s.conn.drop_now_quiet();
    s.publish(false);
    shared.stats.sessions_active.fetch_sub(1, Ordering::Relaxed);
}

impl OaSession {
    fn new(shared: Arc<Shared>, ws: actix_ws::Session, selected: Selected, model: String) -> Self {
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
            conn: Conn::new(ws, shared.clone()),
            shared,
            sid,
            selected,
            model,
            next_event: 1,
            config,
            settings,
            items: Vec::new(),
            buf: Vec::new(),
            buf_start: 0,
            total_samples: 0,
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
        }
    }

    fn publish(&self, connected: bool) {
        self.shared.update_session(SessionInfo {
            id: self.sid,
            protocol: ProtocolKind::OpenAi,
            model: self.model.clone(),
            scenario: self.selected.key.clone(),
            connected,
            items: self.items.iter().map(Item::info).collect(),
            responses: self.responses,
            resumed_from: None,
            client_errors: self.client_errors,
        });
    }

    async fn main(&mut self, stream: &mut AggregatedMessageStream, authorized: bool) -> R {
        self.publish(true);
        if !authorized {
            self.emit(ServerEvent::Error {
                error: ErrorBody {
                    kind: "invalid_request_error",
                    code: Some("invalid_api_key".into()),
                    message: "Incorrect API key provided.".into(),
                    param: None,
                    event_id: None,
                },
            })
            .await?;
            self.conn.close(1008, "invalid_api_key").await;
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
            let deadline = self.run.as_ref().map(|r| r.next_at);
            tokio::select! {
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
                    Some(Ok(AggregatedMessage::Ping(p))) => self.conn.pong(&p).await,
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
        self.conn
            .send_json(&Envelope {
                event_id: &id,
                event: &event,
            })
            .await?;
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
        let Some(kind) = value.get("type").and_then(Value::as_str).map(str::to_owned) else {
            return self
                .client_error(
                    event_id,
                    "missing_required_parameter",
                    "Missing required parameter: 'type'.",
                    Some("type".into()),
                )
                .await;
        };
        let event: ClientEvent = match serde_json::from_value(value) {
            Ok(e) => e,
            Err(e) => {
                let msg = e.to_string();
                let code = if msg.starts_with("unknown variant") {
                    "invalid_value"
                } else {
                    "invalid_request"
                };
                return self
                    .client_error(
                        event_id,
                        code,
                        &format!("Invalid '{kind}' event: {msg}"),
                        Some("type".into()),
                    )
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
            ClientEvent::Append { audio } => {
                let bytes = match audio::b64_decode(&audio) {
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
                self.append(samples).await?;
            }
            ClientEvent::Commit {} => return self.manual_commit().await,
            ClientEvent::Clear {} => {
                self.buf.clear();
                self.buf_start = self.total_samples;
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

    // ---------------------------------------------------------------- session config

    fn apply_update(&mut self, update: Value) -> Result<(), Invalid> {
        let Value::Object(update) = update else {
            return Err(invalid(
                "invalid_type",
                "'session' must be an object.",
                Some("session"),
            ));
        };
        match update.get("type").and_then(Value::as_str) {
            Some("realtime") => {}
            Some(other) => {
                return Err(invalid(
                    "invalid_value",
                    format!(
                        "Invalid value: '{other}'. This server supports session.type 'realtime'."
                    ),
                    Some("session.type"),
                ))
            }
            None => {
                return Err(invalid(
                    "missing_required_parameter",
                    "Missing required parameter: 'session.type'.",
                    Some("session.type"),
                ))
            }
        }
        let mut next = self.config.clone();
        for (k, v) in update {
            match k.as_str() {
                "model" | "type" => {}
                "audio" => {
                    let Value::Object(audio) = v else {
                        return Err(invalid(
                            "invalid_type",
                            "'audio' must be an object.",
                            Some("session.audio"),
                        ));
                    };
                    for (dir, fields) in audio {
                        let Value::Object(fields) = fields else {
                            return Err(invalid(
                                "invalid_type",
                                format!("'audio.{dir}' must be an object."),
                                Some(&format!("session.audio.{dir}")),
                            ));
                        };
                        let slot = &mut next["audio"][dir.as_str()];
                        if !slot.is_object() {
                            *slot = Value::Object(Map::new());
                        }
                        for (fk, fv) in fields {
                            slot[fk.as_str()] = fv;
                        }
                    }
                }
                _ => {
                    next[k.as_str()] = v;
                }
            }
        }
        fill_turn_detection(&mut next, &self.shared.cfg.vad);
        let settings = derive_settings(&next, &self.shared.cfg.vad)?;
        if let Some(td) = &settings.turn {
            self.vad.set_config(td.vad.clone());
        }
        self.config = next;
        self.settings = settings;
        Ok(())
    }

    // ---------------------------------------------------------------- input audio

    async fn append(&mut self, samples: Vec<i16>) -> R {
        self.total_samples += samples.len() as u64;
        self.buf.extend_from_slice(&samples);
        let Some(td) = self.settings.turn.clone() else {
            return Ok(());
        };
        for ev in self.vad.push(&samples) {
            match ev {
                VadEvent::SpeechStarted { start_ms } => {
                    self.shared
                        .stats
                        .turns_detected
                        .fetch_add(1, Ordering::Relaxed);
                    let item_id = self.shared.new_id("item");
                    self.idle_at = None;
                    self.speech = Some(Speech {
                        item_id: item_id.clone(),
                        start_ms,
                    });
                    self.emit(ServerEvent::SpeechStarted {
                        audio_start_ms: start_ms,
                        item_id,
                    })
                    .await?;
                    if td.interrupt_response && self.run.is_some() {
                        self.cancel_run("turn_detected").await?;
                    }
                }
                VadEvent::SpeechStopped {
                    end_ms,
                    last_voiced_ms,
                } => {
                    let Some(speech) = self.speech.take() else {
                        continue;
                    };
                    self.emit(ServerEvent::SpeechStopped {
                        audio_end_ms: end_ms,
                        item_id: speech.item_id.clone(),
                    })
                    .await?;
                    let from = speech
                        .start_ms
                        .saturating_sub(td.vad.prefix_padding_ms as u64);
                    let all = self.take_range(from * SPS_MS, end_ms * SPS_MS);
                    let voiced = ((last_voiced_ms.saturating_sub(from)) * SPS_MS) as usize;
                    let label =
                        TurnInput::speech_label(last_voiced_ms.saturating_sub(speech.start_ms));
                    self.commit_audio(speech.item_id, all, voiced, label)
                        .await?;
                    if td.create_response {
                        if self.run.is_none() {
                            self.start_response(ResponseParams::default()).await?;
                        } else {
                            // interrupt_response is off: answer once the current one ends.
                            self.deferred_response = true;
                        }
                    }
                }
            }
        }
        if self.speech.is_none() {
            // Keep only the prefix padding while nobody speaks.
            let keep = (td.vad.prefix_padding_ms as usize + 200) * SPS_MS as usize;
            if self.buf.len() > keep * 2 {
                let cut = self.buf.len() - keep;
                self.buf.drain(..cut);
                self.buf_start += cut as u64;
            }
        }
        Ok(())
    }

    /// Removes samples `[from, to)` (session timeline) from the buffer and returns them;
    /// everything before `to` is dropped.
    fn take_range(&mut self, from: u64, to: u64) -> Vec<i16> {
        let a = from.saturating_sub(self.buf_start) as usize;
        let b = (to.saturating_sub(self.buf_start) as usize).min(self.buf.len());
        let out = if a < b {
            self.buf[a..b].to_vec()
        } else {
            Vec::new()
        };
        self.buf.drain(..b);
        self.buf_start += b as u64;
        out
    }

    async fn manual_commit(&mut self) -> Result<Result<(), Invalid>, End> {
        let ms = audio::samples_to_ms(self.buf.len(), INTERNAL_RATE);
        if ms < 100 {
            return Ok(Err(invalid(
                "input_audio_buffer_commit_empty",
                format!("Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, but buffer only has {ms}.00ms of audio."),
                None,
            )));
        }
        let item_id = match self.speech.take() {
            Some(s) => s.item_id,
            None => self.shared.new_id("item"),
        };
        let _ = self.vad.flush();
        let all = std::mem::take(&mut self.buf);
        self.buf_start = self.total_samples;
        let n = all.len();
        self.commit_audio(item_id, all, n, TurnInput::speech_label(ms))
            .await?;
        Ok(Ok(()))
    }

    async fn commit_audio(
        &mut self,
        item_id: String,
        all: Vec<i16>,
        voiced: usize,
        label: String,
    ) -> R {
        let prev = self.items.last().map(|i| i.id.clone());
        let mut echo = all.clone();
        echo.truncate(voiced.max(1).min(all.len()));
        let item = Item {
            id: item_id.clone(),
            kind: ItemKind::Message {
                role: Role::User,
                content: vec![Content::InputAudio {
                    audio: Arc::new(all),
                    transcript: None,
                }],
            },
            status: "completed",
        };
        self.items.push(item);
        self.unanswered = Some(item_id.clone());
        self.echo_audio
            .insert(item_id.clone(), (Arc::new(echo), label.clone()));
        self.emit(ServerEvent::Committed {
            previous_item_id: prev.clone(),
            item_id: item_id.clone(),
        })
        .await?;
        let wi = wire_item(
            self.items.last().expect("just pushed"),
            false,
            self.settings.output_fmt,
        );
        self.emit(ServerEvent::ItemAdded {
            previous_item_id: prev.clone(),
            item: wi,
        })
        .await?;
        if self.settings.transcription {
            if let Some(Item {
                kind: ItemKind::Message { content, .. },
                ..
            }) = self.items.last_mut()
            {
                if let Some(Content::InputAudio { transcript, .. }) = content.first_mut() {
                    *transcript = Some(label.clone());
                }
            }
        }
        let wi = wire_item(
            self.items.last().expect("just pushed"),
            false,
            self.settings.output_fmt,
        );
        self.emit(ServerEvent::ItemDone {
            previous_item_id: prev,
            item: wi,
        })
        .await?;
        if self.settings.transcription {
            let ms = self.items.last().map(Item::audio_ms).unwrap_or(0);
            self.emit(ServerEvent::TranscriptionCompleted {
                item_id,
                content_index: 0,
                transcript: label,
                usage: TranscriptionUsage {
                    kind: "duration",
                    seconds: ms as f64 / 1000.0,
                },
            })
            .await?;
        }
        Ok(())
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn not_found(item_id: &str) -> Invalid {
    invalid(
        "item_not_found",
        format!("Item with item_id not found: {item_id}"),
        Some("item_id"),
    )
}

fn default_session(shared: &Shared, sid: u64, model: &str) -> Value {
    let v = &shared.cfg.vad;
    json!({
        "type": "realtime",
        "object": "realtime.session",
        "id": format!("sess_local_{sid:04}"),
        "model": model,
        "output_modalities": ["audio"],
        "instructions": "",
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": null,
                "noise_reduction": null,
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": v.threshold,
                    "prefix_padding_ms": v.prefix_padding_ms,
                    "silence_duration_ms": v.silence_duration_ms,
                    "idle_timeout_ms": null,
                    "create_response": true,
                    "interrupt_response": true
                }
            },
            "output": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "voice": "marin",
                "speed": 1.0
            }
        },
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "truncation": "auto",
        "expires_at": 0
    })
}

/// Fills the defaults of a replaced `turn_detection` object.
fn fill_turn_detection(cfg: &mut Value, defaults: &VadConfig) {
    let td = &mut cfg["audio"]["input"]["turn_detection"];
    let Value::Object(map) = td else { return };
    let kind = map
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("server_vad")
        .to_owned();
    let mut put = |k: &str, v: Value| {
        map.entry(k.to_owned()).or_insert(v);
    };
    put("type", json!(kind));
    put("create_response", json!(true));
    put("interrupt_response", json!(true));
    if kind == "server_vad" {
        put("threshold", json!(defaults.threshold));
        put("prefix_padding_ms", json!(defaults.prefix_padding_ms));
        put("silence_duration_ms", json!(defaults.silence_duration_ms));
        put("idle_timeout_ms", Value::Null);
    } else {
        put("eagerness", json!("auto"));
    }
}

fn parse_format(v: &Value, param: &str) -> Result<WireAudio, Invalid> {
    match v.get("type").and_then(Value::as_str) {
        Some("audio/pcm") => {
            let rate = v.get("rate").and_then(Value::as_u64).unwrap_or(24000);
            if rate != 24000 {
                return Err(invalid(
                    "invalid_value",
                    format!("Invalid 'rate': {rate}. Only 24000 is supported for audio/pcm."),
                    Some(&format!("{param}.rate")),
                ));
            }
            Ok(WireAudio::Pcm(24000))
        }
        Some("audio/pcmu") => Ok(WireAudio::Pcmu),
        Some("audio/pcma") => Ok(WireAudio::Pcma),
        None if v.is_null() => Ok(WireAudio::Pcm(24000)),
        other => Err(invalid(
            "invalid_value",
            format!(
                "Invalid value: {}. Supported values are: 'audio/pcm', 'audio/pcmu', and 'audio/pcma'.",
                other.map(|s| format!("'{s}'")).unwrap_or_else(|| v.to_string())
            ),
            Some(param),
        )),
    }
}

fn derive_settings(cfg: &Value, defaults: &VadConfig) -> Result<Settings, Invalid> {
    let modalities: Vec<String> = match cfg.get("output_modalities") {
        None | Some(Value::Null) => vec!["audio".into()],
        Some(v) => serde_json::from_value(v.clone()).map_err(|_| {
            invalid(
                "invalid_type",
                "'output_modalities' must be an array of strings.",
                Some("session.output_modalities"),
            )
        })?,
    };
    let text_only = match modalities.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["audio"] | [] => false,
        ["text"] => true,
        _ => {
            return Err(invalid(
                "invalid_value",
                "Invalid 'output_modalities': use either ['audio'] or ['text'].",
                Some("session.output_modalities"),
            ))
        }
    };
    let input = &cfg["audio"]["input"];
    let input_fmt = parse_format(&input["format"], "session.audio.input.format")?;
    let output_fmt = parse_format(
        &cfg["audio"]["output"]["format"],
        "session.audio.output.format",
    )?;
    let transcription = input.get("transcription").is_some_and(|t| t.is_object());
    let td = &input["turn_detection"];
    let turn = match td {
        Value::Null => None,
        Value::Object(m) => {
            let kind = m
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("server_vad");
            let flag = |k: &str| m.get(k).and_then(Value::as_bool).unwrap_or(true);
            let mut vad = defaults.clone();
            match kind {
                "server_vad" => {
                    if let Some(t) = m.get("threshold").and_then(Value::as_f64) {
                        if !(0.0..=1.0).contains(&t) {
                            return Err(invalid(
                                "invalid_value",
                                format!("Invalid 'threshold': {t}. Expected a value between 0 and 1."),
                                Some("session.audio.input.turn_detection.threshold"),
                            ));
                        }
                        vad.threshold = t as f32;
                    }
                    if let Some(p) = m.get("prefix_padding_ms").and_then(Value::as_u64) {
                        vad.prefix_padding_ms = p as u32;
                    }
                    if let Some(p) = m.get("silence_duration_ms").and_then(Value::as_u64) {
                        vad.silence_duration_ms = p as u32;
                    }
                }
                "semantic_vad" => {
                    vad.silence_duration_ms =
                        match m.get("eagerness").and_then(Value::as_str).unwrap_or("auto") {
                            "high" => 300,
                            "low" => 1000,
                            _ => 500,
                        };
                }
                other => {
                    return Err(invalid(
                        "invalid_value",
                        format!("Invalid value: '{other}'. Supported values are: 'server_vad' and 'semantic_vad'."),
                        Some("session.audio.input.turn_detection.type"),
                    ))
                }
            }
            Some(TurnDetection {
                vad,
                create_response: flag("create_response"),
                interrupt_response: flag("interrupt_response"),
                idle_timeout: m
                    .get("idle_timeout_ms")
                    .and_then(Value::as_u64)
                    .filter(|_| kind == "server_vad")
                    .map(Duration::from_millis),
            })
        }
        _ => {
            return Err(invalid(
                "invalid_type",
                "'turn_detection' must be an object or null.",
                Some("session.audio.input.turn_detection"),
            ))
        }
    };
    Ok(Settings {
        text_only,
        turn,
        transcription,
        input_fmt,
        output_fmt,
    })
}

/// The wire form of an item (audio bytes only when `with_audio`).
fn wire_item(item: &Item, with_audio: bool, fmt: WireAudio) -> WireItem {
    let enc = |a: &Arc<Vec<i16>>| with_audio.then(|| audio::b64_encode(&fmt.encode(a)));
    let base = WireItem {
        id: item.id.clone(),
        kind: "message",
        object: "realtime.item",
        status: item.status,
        role: None,
        content: None,
        call_id: None,
        name: None,
        arguments: None,
        output: None,
    };
    match &item.kind {
        ItemKind::Message { role, content } => WireItem {
            role: Some(role.as_str()),
            content: Some(
                content
                    .iter()
                    .map(|c| match c {
                        Content::InputText(t) => WireContent::InputText { text: t.clone() },
                        Content::InputAudio { audio, transcript } => WireContent::InputAudio {
                            audio: enc(audio),
                            transcript: transcript.clone(),
                        },
                        Content::OutputText(t) => WireContent::OutputText { text: t.clone() },
                        Content::OutputAudio { audio, transcript } => WireContent::OutputAudio {
                            audio: enc(audio),
                            transcript: transcript.clone(),
                        },
                    })
                    .collect(),
            ),
            ..base
        },
        ItemKind::FunctionCall {
            call_id,
            name,
            arguments,
        } => WireItem {
            kind: "function_call",
            call_id: Some(call_id.clone()),
            name: Some(name.clone()),
            arguments: Some(arguments.clone()),
            ..base
        },
        ItemKind::FunctionCallOutput { call_id, output } => WireItem {
            kind: "function_call_output",
            call_id: Some(call_id.clone()),
            output: Some(output.clone()),
            ..base
        },
    }
}

// ==================================================================== items and responses

impl OaSession {
    async fn item_create(
        &mut self,
        item: ClientItem,
        previous_item_id: Option<String>,
    ) -> Result<Result<(), Invalid>, End> {
        let new_item = match self.convert_item(item) {
            Ok(i) => i,
            Err(e) => return Ok(Err(e)),
        };
        if self.items.iter().any(|i| i.id == new_item.id) {
            return Ok(Err(invalid(
                "item_already_exists",
                format!("Item with id '{}' already exists.", new_item.id),
                Some("item.id"),
            )));
        }
        let pos = match previous_item_id.as_deref() {
            None => self.items.len(),
            Some("root") => 0,
            Some(prev) => match self.items.iter().position(|i| i.id == prev) {
                Some(p) => p + 1,
                None => {
                    return Ok(Err(invalid(
                        "previous_item_not_found",
                        format!("Previous item with id '{prev}' not found."),
                        Some("previous_item_id"),
                    )))
                }
            },
        };
        let prev = pos.checked_sub(1).map(|p| self.items[p].id.clone());
        let id = new_item.id.clone();
        if let ItemKind::FunctionCallOutput { call_id, output } = &new_item.kind {
            if let Some(p) = self.pending.as_mut() {
                if p.call_ids.contains(call_id) {
                    p.outputs.insert(call_id.clone(), output.clone());
                }
            }
        }
        if new_item.role() == Some(Role::User) {
            self.unanswered = Some(id.clone());
            if let ItemKind::Message { content, .. } = &new_item.kind {
                for c in content {
                    if let Content::InputAudio { audio, transcript } = c {
                        let label = transcript.clone().unwrap_or_else(|| {
                            TurnInput::speech_label(audio::samples_to_ms(
                                audio.len(),
                                INTERNAL_RATE,
                            ))
                        });
                        self.echo_audio.insert(id.clone(), (audio.clone(), label));
                    }
                }
            }
        }
        self.items.insert(pos, new_item);
        let wi = wire_item(&self.items[pos], false, self.settings.output_fmt);
        self.emit(ServerEvent::ItemAdded {
            previous_item_id: prev.clone(),
            item: wi.clone(),
        })
        .await?;
        self.emit(ServerEvent::ItemDone {
            previous_item_id: prev,
            item: wi,
        })
        .await?;
        Ok(Ok(()))
    }

    fn convert_item(&self, item: ClientItem) -> Result<Item, Invalid> {
        let fresh = |id: Option<String>| id.unwrap_or_else(|| self.shared.new_id("item"));
        let fmt = self.settings.input_fmt;
        Ok(match item {
            ClientItem::Message { id, role, content } => {
                let role = match role.as_str() {
                    "user" => Role::User,
                    "assistant" => Role::Assistant,
                    "system" => Role::System,
                    other => {
                        return Err(invalid(
                            "invalid_value",
                            format!("Invalid value: '{other}'. Supported values are: 'user', 'assistant', and 'system'."),
                            Some("item.role"),
                        ))
                    }
                };
                let mut parts = Vec::new();
                for c in content {
                    let part = match (role, c) {
                        (Role::User | Role::System, ClientContent::InputText { text }) => {
                            Content::InputText(text)
                        }
                        (Role::User, ClientContent::InputImage {}) => {
                            Content::InputText("[image]".into())
                        }
                        (Role::User, ClientContent::InputAudio { audio, transcript }) => {
                            let bytes = match audio.as_deref().map(audio::b64_decode) {
                                Some(Ok(b)) => b,
                                Some(Err(e)) => {
                                    return Err(invalid(
                                        "invalid_value",
                                        format!("Invalid 'audio': not base64 ({e})."),
                                        Some("item.content.audio"),
                                    ))
                                }
                                None => Vec::new(),
                            };
                            Content::InputAudio {
                                audio: Arc::new(fmt.decode(&bytes)),
                                transcript,
                            }
                        }
                        (Role::Assistant, ClientContent::OutputText { text }) => {
                            Content::OutputText(text)
                        }
                        (Role::Assistant, ClientContent::OutputAudio { audio, transcript }) => {
                            if audio.is_some() {
                                return Err(invalid(
                                    "invalid_value",
                                    "Assistant audio cannot be added to the conversation; send its transcript instead.",
                                    Some("item.content.audio"),
                                ));
                            }
                            Content::OutputAudio {
                                audio: Arc::new(Vec::new()),
                                transcript: transcript.unwrap_or_default(),
                            }
                        }
                        (role, other) => {
                            return Err(invalid(
                                "invalid_value",
                                format!(
                                    "Content {other:?} is not allowed in a {} message.",
                                    role.as_str()
                                ),
                                Some("item.content"),
                            ))
                        }
                    };
                    parts.push(part);
                }
                Item {
                    id: fresh(id),
                    kind: ItemKind::Message {
                        role,
                        content: parts,
                    },
                    status: "completed",
                }
            }
            ClientItem::FunctionCall {
                id,
                call_id,
                name,
                arguments,
            } => Item {
                id: fresh(id),
                kind: ItemKind::FunctionCall {
                    call_id: call_id.unwrap_or_else(|| self.shared.new_id("call")),
                    name,
                    arguments,
                },
                status: "completed",
            },
            ClientItem::FunctionCallOutput {
                id,
                call_id,
                output,
            } => Item {
                id: fresh(id),
                kind: ItemKind::FunctionCallOutput { call_id, output },
                status: "completed",
            },
        })
    }

    async fn truncate(
        &mut self,
        item_id: String,
        content_index: u32,
        audio_end_ms: u64,
    ) -> Result<Result<(), Invalid>, End> {
        let streaming = matches!(&self.run, Some(Run { cur: Some(Cur::Say { item_id: i, .. }), .. }) if *i == item_id);
        if streaming {
            self.cancel_run("client_cancelled").await?;
        }
        let Some(item) = self.items.iter_mut().find(|i| i.id == item_id) else {
            return Ok(Err(not_found(&item_id)));
        };
        let ItemKind::Message {
            role: Role::Assistant,
            content,
        } = &mut item.kind
        else {
            return Ok(Err(invalid(
                "invalid_value",
                "Only assistant messages with audio can be truncated.",
                Some("item_id"),
            )));
        };
        let Some(Content::OutputAudio { audio, transcript }) =
            content.get_mut(content_index as usize)
        else {
            return Ok(Err(invalid(
                "invalid_value",
                format!("Content index {content_index} is not audio."),
                Some("content_index"),
            )));
        };
        let dur = audio::samples_to_ms(audio.len(), INTERNAL_RATE);
        if audio_end_ms > dur {
            return Ok(Err(invalid(
                "invalid_value",
                format!("Audio content of {dur}ms is shorter than {audio_end_ms}ms."),
                Some("audio_end_ms"),
            )));
        }
        let keep = audio::ms_to_samples(audio_end_ms, INTERNAL_RATE).min(audio.len());
        let chars: Vec<char> = transcript.chars().collect();
        let keep_chars = if dur == 0 {
            0
        } else {
            chars.len() * audio_end_ms as usize / dur as usize
        };
        *transcript = chars[..keep_chars.min(chars.len())].iter().collect();
        *audio = Arc::new(audio[..keep].to_vec());
        item.status = "incomplete";
        self.emit(ServerEvent::ItemTruncated {
            item_id,
            content_index,
            audio_end_ms,
        })
        .await?;
        Ok(Ok(()))
    }

    fn turn_input(&mut self, item_id: &str) -> TurnInput {
        // Each user turn is answered once, so its echo copy can go.
        if let Some((audio, label)) = self.echo_audio.remove(item_id) {
            return TurnInput {
                text: label,
                audio: (!audio.is_empty()).then_some(audio),
            };
        }
        let text = self
            .items
            .iter()
            .find(|i| i.id == item_id)
            .map(Item::text)
            .unwrap_or_default();
        TurnInput { text, audio: None }
    }

    fn next_plan(&mut self) -> Plan {
        if let Some(p) = self.pending.take() {
            if !p.outputs.is_empty() && self.unanswered.is_none() {
                let output = p
                    .call_ids
                    .iter()
                    .filter_map(|c| p.outputs.get(c).cloned())
                    .collect::<Vec<_>>()
                    .join("\n");
                let mut steps = p.steps;
                substitute(&mut steps, "{output}", &output);
                return Plan {
                    steps,
                    drop_after_events: None,
                    delay: None,
                    turn: p.turn,
                };
            }
            if p.outputs.is_empty() && self.unanswered.is_none() {
                // response.create with no tool output yet: keep waiting for it.
                self.pending = Some(p);
                return Plan::default();
            }
        }
        let input = match self.unanswered.take() {
            Some(id) => self.turn_input(&id),
            None => TurnInput::default(),
        };
        self.selected.brain.plan(&self.selected.state, &input)
    }

    async fn start_response(&mut self, params: ResponseParams) -> R {
        let text_only = match params.output_modalities.as_deref() {
            Some([m]) if m == "text" => true,
            Some([m]) if m == "audio" => false,
            _ => self.settings.text_only,
        };
        let in_conversation = params.conversation.as_deref() != Some("none");
        let plan = self.next_plan();
        self.idle_at = None;
        self.responses += 1;
        self.shared.stats.responses.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let run = Run {
            id: self.shared.new_id("resp"),
            steps: plan.steps,
            cur: None,
            next_at: now + plan.delay.unwrap_or_default(),
            paced: self.shared.cfg.pacing == Pacing::RealTime,
            next_index: 0,
            output: Vec::new(),
            text_only,
            in_conversation,
            slow: 1.0,
            sent_at_start: self.conn.sent,
            drop_after_events: plan.drop_after_events,
            turn: plan.turn,
            calls: Vec::new(),
            out_audio_samples: 0,
            out_text_chars: 0,
            metadata: params.metadata,
        };
        let response = self.wire_response(&run, "in_progress", None, false);
        self.run = Some(run);
        self.emit(ServerEvent::ResponseCreated { response }).await?;
        self.emit(ServerEvent::RateLimits {
            rate_limits: vec![
                RateLimit {
                    name: "requests",
                    limit: 1000,
                    remaining: 999,
                    reset_seconds: 60.0,
                },
                RateLimit {
                    name: "tokens",
                    limit: 50000,
                    remaining: 49000,
                    reset_seconds: 1.2,
                },
            ],
        })
        .await
    }

    fn wire_response(
        &self,
        run: &Run,
        status: &'static str,
        details: Option<StatusDetails>,
        with_usage: bool,
    ) -> WireResponse {
        WireResponse {
            object: "realtime.response",
            id: run.id.clone(),
            status,
            status_details: details,
            output: run.output.clone(),
            conversation_id: run.in_conversation.then(|| self.conv_id.clone()),
            output_modalities: vec![if run.text_only { "text" } else { "audio" }],
            max_output_tokens: json!("inf"),
            usage: with_usage.then(|| self.usage(run)),
            metadata: run.metadata.clone(),
        }
    }

    /// Token-like counts: text 1 token per 4 characters, input audio 10 tokens/s, output
    /// audio 20 tokens/s (documented in docs/local-server.md).
    fn usage(&self, run: &Run) -> Usage {
        let mut in_text = 0u64;
        let mut in_audio_ms = 0u64;
        for item in &self.items {
            in_text += (item.text().chars().count() as u64).div_ceil(4);
            if item.role() == Some(Role::User) {
                in_audio_ms += item.audio_ms();
            }
        }
        let in_audio = in_audio_ms / 100;
        let out_text = (run.out_text_chars as u64).div_ceil(4);
        let out_audio = audio::samples_to_ms(run.out_audio_samples, INTERNAL_RATE) / 50;
        Usage {
            total_tokens: in_text + in_audio + out_text + out_audio,
            input_tokens: in_text + in_audio,
            output_tokens: out_text + out_audio,
            input_token_details: InputTokenDetails {
                text_tokens: in_text,
                audio_tokens: in_audio,
                image_tokens: 0,
                cached_tokens: 0,
            },
            output_token_details: OutputTokenDetails {
                text_tokens: out_text,
                audio_tokens: out_audio,
            },
        }
    }

    async fn advance(&mut self) -> R {
        let Some(mut run) = self.run.take() else {
            return Ok(());
        };
        // Put the run back at once so that emit() sees its drop settings.
        let id = run.id.clone();
        let keep = {
            let r = self.step_run(&mut run).await;
            match r {
                Ok(k) => k,
                Err(e) => {
                    return Err(e);
                }
            }
        };
        if keep && self.run.is_none() {
            self.run = Some(run);
        } else if keep {
            tracing::warn!("response {id} replaced while running");
        } else if self.deferred_response && self.run.is_none() {
            self.deferred_response = false;
            self.start_response(ResponseParams::default()).await?;
        }
        Ok(())
    }

    /// Does the run's next piece of work. Ok(false) when the response finished.
    async fn step_run(&mut self, run: &mut Run) -> Result<bool, End> {
        let now = Instant::now();
        loop {
            if run.cur.is_none() {
                let Some(step) = run.steps.pop_front() else {
                    self.finish_run(run, "completed", None).await?;
                    return Ok(false);
                };
                match step {
                    Step::Say {
                        text,
                        audio,
                        drop_after_ms,
                    } => self.start_say(run, text, audio, drop_after_ms).await?,
                    Step::Call {
                        name,
                        args,
                        drop_mid_arguments,
                    } => self.start_call(run, name, args, drop_mid_arguments).await?,
                    Step::Wait(d) => {
                        run.next_at = now + d;
                        return Ok(true);
                    }
                    Step::Slow(f) => run.slow = f,
                    other => self.simple_step_in_run(run, other).await?,
                }
                continue;
            }
            let finished = self.tick(run, now).await?;
            let pace = self.chunk.mul_f32(run.slow);
            if run.paced {
                run.next_at = (run.next_at + pace).max(now - CATCH_UP);
            } else {
                run.next_at = now;
            }
            if finished {
                run.cur = None;
                if let Some(Step::Call { .. }) = run.steps.front() {
                    return Ok(true);
                }
                if !run.calls.is_empty() {
                    // The rest of the turn waits for the tool outputs.
                    self.finish_run(run, "completed", None).await?;
                    return Ok(false);
                }
            }
            return Ok(true);
        }
    }

    async fn simple_step_in_run(&mut self, run: &mut Run, step: Step) -> R {
        // emit() checks self.run for drop_after_events; lend it the settings.
        self.run = Some(Run {
            id: run.id.clone(),
            steps: VecDeque::new(),
            cur: None,
            next_at: run.next_at,
            paced: run.paced,
            next_index: 0,
            output: Vec::new(),
            text_only: run.text_only,
            in_conversation: run.in_conversation,
            slow: run.slow,
            sent_at_start: run.sent_at_start,
            drop_after_events: run.drop_after_events,
            turn: run.turn,
            calls: Vec::new(),
            out_audio_samples: 0,
            out_text_chars: 0,
            metadata: None,
        });
        let r = self.simple_step(step).await;
        self.run = None;
        r
    }

    async fn start_say(
        &mut self,
        run: &mut Run,
        text: String,
        audio: Option<Arc<Vec<i16>>>,
        drop_after_ms: Option<u64>,
    ) -> R {
        let audio = if run.text_only {
            Arc::new(Vec::new())
        } else {
            audio.unwrap_or_else(|| Arc::new(audio::synth_text(&text)))
        };
        let item_id = self.shared.new_id("item");
        let idx = run.next_index;
        run.next_index += 1;
        let item = Item {
            id: item_id.clone(),
            kind: ItemKind::Message {
                role: Role::Assistant,
                content: Vec::new(),
            },
            status: "in_progress",
        };
        self.add_output_item(run, idx, item).await?;
        let part = if run.text_only {
            Part {
                kind: "text",
                transcript: None,
                text: Some(String::new()),
            }
        } else {
            Part {
                kind: "audio",
                transcript: Some(String::new()),
                text: None,
            }
        };
        self.with_run(
            run,
            ServerEvent::ContentPartAdded {
                response_id: run.id.clone(),
                item_id: item_id.clone(),
                output_index: idx,
                content_index: 0,
                part,
            },
        )
        .await?;
        let words = if run.text_only {
            split_words(&text)
        } else {
            VecDeque::new()
        };
        run.cur = Some(Cur::Say {
            item_id,
            idx,
            drop_at: drop_after_ms.map(|ms| audio::ms_to_samples(ms, INTERNAL_RATE)),
            audio,
            pos: 0,
            text: text.chars().collect(),
            text_sent: 0,
            words,
        });
        Ok(())
    }

    async fn start_call(&mut self, run: &mut Run, name: String, args: Value, drop_mid: bool) -> R {
        let item_id = self.shared.new_id("item");
        let call_id = self.shared.new_id("call");
        let idx = run.next_index;
        run.next_index += 1;
        let args = serde_json::to_string(&args).unwrap_or_else(|_| "{}".into());
        let item = Item {
            id: item_id.clone(),
            kind: ItemKind::FunctionCall {
                call_id: call_id.clone(),
                name: name.clone(),
                arguments: String::new(),
            },
            status: "in_progress",
        };
        self.add_output_item(run, idx, item).await?;
        let chars: Vec<char> = args.chars().collect();
        let piece = chars.len().div_ceil(3).max(1);
        let pieces = chars.chunks(piece).map(|c| c.iter().collect()).collect();
        run.cur = Some(Cur::Call {
            item_id,
            idx,
            call_id,
            name,
            args,
            pieces,
            drop_mid,
        });
        Ok(())
    }

    /// Emits with `run` lent to `self.run` so drop_after_events applies.
    /// Announces a new output item of the response (`response.output_item.added`) and, for
    /// in-conversation responses, adds it to the conversation (`conversation.item.added`).
    async fn add_output_item(&mut self, run: &Run, idx: u32, item: Item) -> R {
        let wi = wire_item(&item, false, self.settings.output_fmt);
        self.with_run(
            run,
            ServerEvent::OutputItemAdded {
                response_id: run.id.clone(),
                output_index: idx,
                item: wi.clone(),
            },
        )
        .await?;
        if run.in_conversation {
            let prev = self.items.last().map(|i| i.id.clone());
            self.items.push(item);
            self.with_run(
                run,
                ServerEvent::ItemAdded {
                    previous_item_id: prev,
                    item: wi,
                },
            )
            .await?;
        }
        Ok(())
    }

    async fn with_run(&mut self, run: &Run, event: ServerEvent) -> R {
        if let Some(k) = run.drop_after_events {
            let r = self.emit(event).await;
            if r.is_ok() && self.conn.sent - run.sent_at_start >= k as u64 {
                tracing::info!("scenario: dropping the connection after {k} response events");
                self.conn.drop_now();
                return Err(End::Closed);
            }
            return r;
        }
        self.emit(event).await
    }

    /// Sends one chunk of the current item. Ok(true) when the item is finished.
    async fn tick(&mut self, run: &mut Run, now: Instant) -> Result<bool, End> {
        let fmt = self.settings.output_fmt;
        let chunk_samples = audio::ms_to_samples(self.chunk.as_millis() as u64, INTERNAL_RATE);
        let rid = run.id.clone();
        let Some(cur) = run.cur.as_mut() else {
            return Ok(true);
        };
        match cur {
            Cur::Say {
                item_id,
                idx,
                audio: samples,
                pos,
                text,
                text_sent,
                words,
                drop_at,
            } => {
                let (item_id, idx) = (item_id.clone(), *idx);
                if run.text_only {
                    if let Some(w) = words.pop_front() {
                        run.out_text_chars += w.chars().count();
                        let ev = ServerEvent::TextDelta {
                            response_id: rid.clone(),
                            item_id: item_id.clone(),
                            output_index: idx,
                            content_index: 0,
                            delta: w,
                        };
                        let late = now.saturating_duration_since(run.next_at);
                        self.shared.stats.chunk_sent(late.as_micros() as u64);
                        self.with_run(run, ev).await?;
                        let Some(Cur::Say { words, .. }) = run.cur.as_ref() else {
                            return Ok(true);
                        };
                        if !words.is_empty() {
                            return Ok(false);
                        }
                    }
                    self.finish_say(run, false).await?;
                    return Ok(true);
                }
                let len = samples.len();
                let end = (*pos + chunk_samples).min(len);
                let drop_now = drop_at.is_some_and(|d| end >= d);
                let from = *pos;
                *pos = end;
                let target = if end >= len {
                    text.len()
                } else {
                    text.len() * end / len.max(1)
                };
                let tdelta: String = if target > *text_sent {
                    let d = text[*text_sent..target].iter().collect();
                    *text_sent = target;
                    d
                } else {
                    String::new()
                };
                let samples = samples.clone();
                if end > from {
                    run.out_audio_samples += end - from;
                    let late = now.saturating_duration_since(run.next_at);
                    self.shared.stats.chunk_sent(late.as_micros() as u64);
                    self.with_run(
                        run,
                        ServerEvent::AudioDelta {
                            response_id: rid.clone(),
                            item_id: item_id.clone(),
                            output_index: idx,
                            content_index: 0,
                            delta: audio::b64_encode(&fmt.encode(&samples[from..end])),
                        },
                    )
                    .await?;
                }
                if drop_now {
                    tracing::info!("scenario: dropping the connection mid-audio");
                    self.conn.drop_now();
                    return Err(End::Closed);
                }
                if !tdelta.is_empty() {
                    run.out_text_chars += tdelta.chars().count();
                    self.with_run(
                        run,
                        ServerEvent::TranscriptDelta {
                            response_id: rid,
                            item_id,
                            output_index: idx,
                            content_index: 0,
                            delta: tdelta,
                        },
                    )
                    .await?;
                }
                if end >= len {
                    self.finish_say(run, false).await?;
                    return Ok(true);
                }
                Ok(false)
            }
            Cur::Call {
                item_id,
                idx,
                call_id,
                pieces,
                drop_mid,
                ..
            } => {
                let (item_id, idx, call_id, drop_mid) =
                    (item_id.clone(), *idx, call_id.clone(), *drop_mid);
                if let Some(p) = pieces.pop_front() {
                    self.with_run(
                        run,
                        ServerEvent::ArgsDelta {
                            response_id: rid,
                            item_id,
                            output_index: idx,
                            call_id,
                            delta: p,
                        },
                    )
                    .await?;
                    if drop_mid {
                        tracing::info!(
                            "scenario: dropping the connection mid function-call arguments"
                        );
                        self.conn.drop_now();
                        return Err(End::Closed);
                    }
                    let Some(Cur::Call { pieces, .. }) = run.cur.as_ref() else {
                        return Ok(true);
                    };
                    if !pieces.is_empty() {
                        return Ok(false);
                    }
                }
                self.finish_call(run, false).await?;
                Ok(true)
            }
        }
    }

    /// Completes (or, when `cancelled`, cuts short) the current message item.
    async fn finish_say(&mut self, run: &mut Run, cancelled: bool) -> R {
        let Some(Cur::Say {
            item_id,
            idx,
            audio: samples,
            pos,
            text,
            text_sent,
            ..
        }) = run.cur.take()
        else {
            return Ok(());
        };
        let rid = run.id.clone();
        let status = if cancelled { "incomplete" } else { "completed" };
        let full: String = text.iter().collect();
        let said: String = if cancelled {
            text[..text_sent].iter().collect()
        } else {
            full.clone()
        };
        let content = if run.text_only {
            Content::OutputText(said.clone())
        } else {
            Content::OutputAudio {
                audio: Arc::new(samples[..pos.min(samples.len())].to_vec()),
                transcript: said.clone(),
            }
        };
        let item = Item {
            id: item_id.clone(),
            kind: ItemKind::Message {
                role: Role::Assistant,
                content: vec![content],
            },
            status,
        };
        if !cancelled {
            if run.text_only {
                self.with_run(
                    run,
                    ServerEvent::TextDone {
                        response_id: rid.clone(),
                        item_id: item_id.clone(),
                        output_index: idx,
                        content_index: 0,
                        text: said.clone(),
                    },
                )
                .await?;
            } else {
                self.with_run(
                    run,
                    ServerEvent::AudioDone {
                        response_id: rid.clone(),
                        item_id: item_id.clone(),
                        output_index: idx,
                        content_index: 0,
                    },
                )
                .await?;
                self.with_run(
                    run,
                    ServerEvent::TranscriptDone {
                        response_id: rid.clone(),
                        item_id: item_id.clone(),
                        output_index: idx,
                        content_index: 0,
                        transcript: said.clone(),
                    },
                )
                .await?;
            }
        }
        let part = if run.text_only {
            Part {
                kind: "text",
                transcript: None,
                text: Some(said),
            }
        } else {
            Part {
                kind: "audio",
                transcript: Some(said),
                text: None,
            }
        };
        self.with_run(
            run,
            ServerEvent::ContentPartDone {
                response_id: rid.clone(),
                item_id: item_id.clone(),
                output_index: idx,
                content_index: 0,
                part,
            },
        )
        .await?;
        self.finish_item(run, item, idx).await
    }

    async fn finish_call(&mut self, run: &mut Run, cancelled: bool) -> R {
        let Some(Cur::Call {
            item_id,
            idx,
            call_id,
            name,
            args,
            ..
        }) = run.cur.take()
        else {
            return Ok(());
        };
        if !cancelled {
            self.with_run(
                run,
                ServerEvent::ArgsDone {
                    response_id: run.id.clone(),
                    item_id: item_id.clone(),
                    output_index: idx,
                    call_id: call_id.clone(),
                    name: name.clone(),
                    arguments: args.clone(),
                },
            )
            .await?;
            run.calls.push(call_id.clone());
        }
        let item = Item {
            id: item_id,
            kind: ItemKind::FunctionCall {
                call_id,
                name,
                arguments: args,
            },
            status: if cancelled { "incomplete" } else { "completed" },
        };
        self.finish_item(run, item, idx).await
    }

    async fn finish_item(&mut self, run: &mut Run, item: Item, idx: u32) -> R {
        let wi = wire_item(&item, false, self.settings.output_fmt);
        run.output.push(wi.clone());
        self.with_run(
            run,
            ServerEvent::OutputItemDone {
                response_id: run.id.clone(),
                output_index: idx,
                item: wi.clone(),
            },
        )
        .await?;
        if run.in_conversation {
            let pos = self.items.iter().position(|i| i.id == item.id);
            let prev = pos
                .and_then(|p| p.checked_sub(1))
                .map(|p| self.items[p].id.clone());
            match pos {
                Some(p) => self.items[p] = item,
                None => self.items.push(item),
            }
            self.with_run(
                run,
                ServerEvent::ItemDone {
                    previous_item_id: prev,
                    item: wi,
                },
            )
            .await?;
        }
        Ok(())
    }

    async fn finish_run(
        &mut self,
        run: &mut Run,
        status: &'static str,
        reason: Option<&'static str>,
    ) -> R {
        let details = reason.map(|r| StatusDetails {
            kind: status,
            reason: Some(r),
        });
        let response = self.wire_response(run, status, details, true);
        if status == "completed" && !run.calls.is_empty() {
            self.pending = Some(Pending {
                steps: std::mem::take(&mut run.steps),
                call_ids: run.calls.clone(),
                outputs: HashMap::new(),
                turn: run.turn,
            });
        }
        let r = self
            .with_run(run, ServerEvent::ResponseDone { response })
            .await;
        self.publish(true);
        // The idle timeout counts from the end of the response's audio (sent in real time).
        self.idle_at = self
            .settings
            .turn
            .as_ref()
            .and_then(|t| t.idle_timeout)
            .map(|d| Instant::now() + d);
        r
    }

    /// server_vad `idle_timeout_ms` ran out: report it, commit what was heard, answer.
    async fn idle_timeout(&mut self) -> R {
        self.idle_at = None;
        if self.speech.is_some() {
            return Ok(());
        }
        let item_id = self.shared.new_id("item");
        let start_ms = self.buf_start / SPS_MS;
        let end_ms = self.total_samples / SPS_MS;
        self.emit(ServerEvent::TimeoutTriggered {
            audio_start_ms: start_ms,
            audio_end_ms: end_ms,
            item_id: item_id.clone(),
        })
        .await?;
        let all = std::mem::take(&mut self.buf);
        self.buf_start = self.total_samples;
        let idle = self
            .settings
            .turn
            .as_ref()
            .and_then(|t| t.idle_timeout)
            .unwrap_or_default();
        let label = format!("[no speech for {:.1} s]", idle.as_secs_f64());
        self.commit_audio(item_id.clone(), all, 0, label.clone())
            .await?;
        // Answer with words, not with the recorded silence.
        self.echo_audio
            .insert(item_id, (Arc::new(Vec::new()), label));
        self.start_response(ResponseParams::default()).await
    }

    async fn cancel_run(&mut self, reason: &'static str) -> R {
        let Some(mut run) = self.run.take() else {
            return Ok(());
        };
        match run.cur {
            Some(Cur::Say { .. }) => self.finish_say(&mut run, true).await?,
            Some(Cur::Call { .. }) => self.finish_call(&mut run, true).await?,
            None => {}
        }
        run.steps.clear();
        run.calls.clear();
        self.pending = None;
        self.finish_run(&mut run, "cancelled", Some(reason)).await
    }

    /// Steps that only send or change connection state.
    async fn simple_step(&mut self, step: Step) -> R {
        let step = match self
            .conn
            .transport_step(&self.selected.state.refuse, step)
            .await
        {
            Ok(r) => return r,
            Err(step) => step,
        };
        match step {
            Step::SendOversized(n) => {
                let event_id = format!("event_{}", self.next_event);
                self.next_event += 1;
                let head = format!(
                    "{{\"type\":\"rate_limits.updated\",\"event_id\":\"{event_id}\",\"rate_limits\":[],\"padding\":\""
                );
                let pad = n.saturating_sub(head.len() + 2);
                let text = format!("{head}{}\"}}", "x".repeat(pad));
                self.conn.send_text(text).await
            }
            Step::Error { message, code } => {
                self.error_event(
                    None,
                    "server_error",
                    code.as_deref().unwrap_or("server_error"),
                    &message,
                    None,
                )
                .await
            }
            Step::GoAway(_) => {
                tracing::debug!("scenario: go_away is a Gemini message; skipped on OpenAI");
                Ok(())
            }
            other => {
                tracing::warn!("scenario: {other:?} only works inside a turn; skipped");
                Ok(())
            }
        }
    }
}

/// Splits text into words keeping their leading spaces, for word-by-word text deltas.
fn split_words(text: &str) -> VecDeque<String> {
    let mut out = VecDeque::new();
    let mut cur = String::new();
    for ch in text.chars() {
        if ch == ' ' && !cur.trim().is_empty() {
            out.push_back(std::mem::take(&mut cur));
        }
        cur.push(ch);
    }
    if !cur.is_empty() {
        out.push_back(cur);
    }
    out
}
