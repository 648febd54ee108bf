//! One Gemini Live session: setup, realtime input with VAD or manual activity, client
//! content, tool calls, interruption, session resumption, goAway.
//!
//! Layout: this file holds the session state ([`GSession`]), its lifecycle (the main loop,
//! frame dispatch, `setup`, resumption updates) and small helpers; [`input`] handles what
//! the client sends (realtime audio and VAD, client content, tool responses); [`response`]
//! plays the brain's plans back (runs: steps, paced audio, interruption, turn completion).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix_ws::{AggregatedMessage, AggregatedMessageStream};
use serde_json::Value;
use tokio::time::Instant;

use super::wire::*;
use crate::audio::{self, Pcm, WireAudio, INTERNAL_RATE};
use crate::brain::{substitute, Plan, Step, TurnInput};
use crate::conn::{Conn, End};
use crate::input_audio::InputAudio;
use crate::items::{Content, Item, ItemKind, ProtocolKind, Role, SessionInfo};
use crate::registry::{Listed, SnapshotReceiver, Tracked};
use crate::server::{Selected, Shared};
use crate::tokens::Refusal;
use crate::vad::{Vad, VadEvent};
use crate::Pacing;

mod input;
mod response;

type R = Result<(), End>;

/// How far behind schedule paced audio may fall before the server stops catching up
/// (overdue chunks are sent back to back until then, so a short stall does not shift the
/// rest of the response).
const CATCH_UP: Duration = Duration::from_millis(500);

const SPS_MS: u64 = (INTERNAL_RATE / 1000) as u64;
const AUDIO_TOKENS_PER_S: u64 = 32;

struct Say {
    audio: Pcm,
    pos: usize,
    text: Vec<char>,
    text_sent: usize,
    words: VecDeque<String>,
    drop_at: Option<usize>,
    item_id: String,
}

struct Run {
    steps: VecDeque<Step>,
    cur: Option<Say>,
    next_at: Instant,
    /// Tool calls awaiting a toolResponse (the run is paused while non-empty).
    waiting: Vec<String>,
    outputs: Vec<String>,
    slow: f32,
    sent_at_start: u64,
    drop_after_events: Option<u32>,
    out_audio_samples: usize,
    out_text_chars: usize,
}

/// Thinking tokens the fake model reports per turn when thinking is on.
const THINKING_TOKENS: u64 = 24;

/// `projects/{p}/locations/{l}/publishers/google/models/{m}`, every part non-empty.
fn vertex_model_ok(model: &str) -> bool {
    let parts: Vec<&str> = model.split('/').collect();
    parts.len() == 8
        && parts[0] == "projects"
        && parts[2] == "locations"
        && parts[4] == "publishers"
        && parts[5] == "google"
        && parts[6] == "models"
        && [parts[1], parts[3], parts[7]].iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
        })
}

struct GSession {
    shared: Arc<Shared>,
    conn: Conn,
    sid: u64,
    selected: Selected,
    explicit_scenario: bool,
    model: String,
    /// Opened on the Vertex AI path (the model must be a full resource name).
    vertex: bool,
    text_only: bool,
    /// Thinking tokens reported per turn (`thinkingConfig` with a budget other than 0).
    thinking: Option<u64>,
    auto_vad: bool,
    interrupts: bool,
    in_transcription: bool,
    out_transcription: bool,
    resumption: bool,
    resumed_from: Option<String>,
    items: Vec<Item>,
    /// The input audio buffer.
    input: InputAudio,
    vad: Vad,
    speech_start: Option<u64>,
    manual_active: bool,
    run: Option<Run>,
    unanswered: Option<TurnInput>,
    chunk: Duration,
    paced: bool,
    close_at: Option<Instant>,
    responses: u32,
    client_errors: u32,
    /// The last client data frame or the end of the last turn (idle session timeout).
    last_activity: Instant,
}

/// Runs a session until the client goes away or the server closes it.
#[allow(clippy::too_many_arguments)] // one call site, each argument a distinct fact of the connection
pub(crate) async fn run(
    shared: Arc<Shared>,
    ws: actix_ws::Session,
    mut stream: AggregatedMessageStream,
    selected: Selected,
    explicit_scenario: bool,
    authorized: Result<(), Refusal>,
    vertex: bool,
    sock: Option<Arc<std::net::TcpStream>>,
) {
    let sid = shared.new_session_id();
    let (mut s, mut asks) = Tracked::open(GSession {
        conn: Conn::new(ws, shared.clone(), sock),
        sid,
        vad: Vad::new(shared.cfg.vad.clone()),
        chunk: Duration::from_millis(shared.cfg.effective_chunk_ms() as u64),
        paced: shared.cfg.pacing == Pacing::RealTime,
        shared: shared.clone(),
        selected,
        explicit_scenario,
        model: String::new(),
        vertex,
        text_only: false,
        thinking: None,
        auto_vad: true,
        interrupts: true,
        in_transcription: false,
        out_transcription: false,
        resumption: false,
        resumed_from: None,
        items: Vec::new(),
        input: InputAudio::default(),
        speech_start: None,
        manual_active: false,
        run: None,
        unanswered: None,
        close_at: None,
        responses: 0,
        client_errors: 0,
        last_activity: Instant::now(),
    });
    let _ = s.main(&mut stream, authorized, &mut asks).await;
    s.conn.drop_now_quiet();
    s.conn.finish().await;
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Parses `audio/pcm;rate=16000` (default 16 kHz).
fn rate_of(mime: Option<&str>) -> u32 {
    mime.and_then(|m| {
        m.split(';')
            .filter_map(|p| p.trim().strip_prefix("rate="))
            .next()
            .and_then(|r| r.parse().ok())
    })
    .filter(|r| (4000..=192_000).contains(r))
    .unwrap_or(16000)
}

impl Listed for GSession {
    fn shared(&self) -> &Shared {
        &self.shared
    }

    fn meta(&self, connected: bool) -> SessionInfo {
        SessionInfo {
            id: self.sid,
            protocol: ProtocolKind::Gemini,
            model: self.model.clone(),
            scenario: self.selected.key.clone(),
            connected,
            items: Vec::new(),
            responses: self.responses,
            resumed_from: self.resumed_from.clone(),
            client_errors: self.client_errors,
            input_buffered_ms: audio::samples_to_ms(self.input.len(), INTERNAL_RATE),
        }
    }

    fn items(&self) -> &[Item] {
        &self.items
    }
}

impl GSession {
    /// When the idle-session timeout fires, unless a turn is running.
    fn idle_deadline(&self) -> Option<Instant> {
        let limit = self.shared.cfg.idle_timeout?;
        self.run.is_none().then(|| self.last_activity + limit)
    }

    async fn send(&mut self, msg: ServerMessage) -> R {
        self.conn.send_json(&msg).await?;
        if let Some(run) = &self.run {
            if let Some(k) = run.drop_after_events {
                if self.conn.sent - run.sent_at_start >= k as u64 {
                    tracing::info!("scenario: dropping the connection after {k} response messages");
                    self.conn.drop_now();
                    return Err(End::Closed);
                }
            }
        }
        Ok(())
    }

    async fn content(&mut self, c: ServerContent) -> R {
        self.send(ServerMessage {
            server_content: Some(c),
            ..Default::default()
        })
        .await
    }

    /// Closes with 1007 (invalid payload) and a reason: Gemini's answer to a bad frame.
    async fn reject(&mut self, reason: &str) -> R {
        self.client_errors += 1;
        self.shared
            .stats
            .client_errors
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            "Gemini session {}: rejecting a client frame: {reason}",
            self.sid
        );
        self.conn.close(1007, reason).await;
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
            self.conn.close(1008, &refusal.message).await;
            return Err(End::Closed);
        }
        let mut setup_done = false;
        loop {
            let deadline = match (self.run.as_ref(), self.close_at) {
                (Some(r), Some(c)) if r.waiting.is_empty() => Some(r.next_at.min(c)),
                (Some(r), None) if r.waiting.is_empty() => Some(r.next_at),
                (_, c) => c,
            };
            let idle = self.idle_deadline();
            tokio::select! {
                Some(ask) = asks.recv() => ask(self.snapshot(true)),
                msg = stream.recv() => {
                    let text = match msg {
                        None => return Err(End::Closed),
                        Some(Ok(AggregatedMessage::Text(t))) => t.to_string(),
                        Some(Ok(AggregatedMessage::Binary(b))) => match String::from_utf8(b.to_vec()) {
                            Ok(t) => t,
                            Err(_) => {
                                self.conn.received(&format!("<{} bytes of binary data>", b.len()));
                                return self.reject("Binary frames must hold UTF-8 JSON.").await;
                            }
                        },
                        Some(Ok(AggregatedMessage::Ping(p))) => { self.conn.pong(&p).await?; continue; }
                        Some(Ok(AggregatedMessage::Pong(_))) => continue,
                        Some(Ok(AggregatedMessage::Close(_))) => {
                                                        self.conn.close(1000, "").await;
                            return Err(End::Closed);
                        }
                        Some(Err(e)) => {
                            tracing::warn!("Gemini session {}: WebSocket protocol error: {e}", self.sid);
                            self.conn.close(1009, "frame too large or invalid").await;
                            return Err(End::Closed);
                        }
                    };
                    self.conn.received(&text);
                    self.last_activity = Instant::now();
                    self.on_frame(&text, &mut setup_done).await?;
                    self.publish(true);
                }
                _ = sleep_until_opt(idle), if idle.is_some() => {
                    let limit = self.shared.cfg.idle_timeout.unwrap_or_default();
                    tracing::info!("Gemini session {}: idle for {limit:?}; closing", self.sid);
                    self.shared.stats.idle_closed.fetch_add(1, Ordering::Relaxed);
                    self.conn.close(1000, &format!("Session idle for {} s (no client messages); closed.", limit.as_secs())).await;
                    return Err(End::Closed);
                }
                _ = sleep_until_opt(deadline), if deadline.is_some() => {
                    if self.close_at.is_some_and(|c| Instant::now() >= c) {
                        self.conn.close(1001, "goAway: connection time limit reached").await;
                        return Err(End::Closed);
                    }
                    self.advance().await?;
                }
            }
            crate::items::keep_recent_audio(
                &mut self.items,
                self.shared.cfg.conversation_audio_samples(),
            );
            if !self.conn.is_open() {
                return Err(End::Closed);
            }
        }
    }

    async fn on_frame(&mut self, text: &str, setup_done: &mut bool) -> R {
        let value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => return self.reject(&format!("Invalid JSON payload: {e}")).await,
        };
        let value = camelize(value);
        let Value::Object(map) = value else {
            return self.reject("A message must be a JSON object.").await;
        };
        if map.len() != 1 {
            return self
                .reject("A message must carry exactly one of setup, clientContent, realtimeInput, toolResponse.")
                .await;
        }
        let Some((key, body)) = map.into_iter().next() else {
            return self.reject("Empty message.").await;
        };
        if !*setup_done && key != "setup" {
            return self.reject("The first message must be setup.").await;
        }
        match key.as_str() {
            "setup" => {
                if *setup_done {
                    return self.reject("setup may only be sent once.").await;
                }
                let setup: Setup = match serde_json::from_value(body) {
                    Ok(s) => s,
                    Err(e) => return self.reject(&format!("Invalid setup: {e}")).await,
                };
                self.on_setup(setup).await?;
                *setup_done = true;
            }
            "realtimeInput" => {
                let ri: RealtimeInput = match serde_json::from_value(body) {
                    Ok(s) => s,
                    Err(e) => return self.reject(&format!("Invalid realtimeInput: {e}")).await,
                };
                self.on_realtime_input(ri).await?;
            }
            "clientContent" => {
                let cc: ClientContent = match serde_json::from_value(body) {
                    Ok(s) => s,
                    Err(e) => return self.reject(&format!("Invalid clientContent: {e}")).await,
                };
                self.on_client_content(cc).await?;
            }
            "toolResponse" => {
                let tr: ToolResponse = match serde_json::from_value(body) {
                    Ok(s) => s,
                    Err(e) => return self.reject(&format!("Invalid toolResponse: {e}")).await,
                };
                self.on_tool_response(tr).await?;
            }
            "contextUpdate" => {
                tracing::debug!(
                    "Gemini session {}: contextUpdate accepted (ignored)",
                    self.sid
                );
            }
            other => {
                return self
                    .reject(&format!("Unknown message field '{other}'."))
                    .await
            }
        }
        Ok(())
    }

    async fn on_setup(&mut self, setup: Setup) -> R {
        self.model = setup.model.clone().unwrap_or_default();
        if self.vertex && !vertex_model_ok(&self.model) {
            let msg = "Invalid argument: the model must be \
                       projects/{p}/locations/{l}/publishers/google/models/{m}."
                .to_owned();
            return self.reject(&msg).await;
        }
        if !self.explicit_scenario {
            if let Ok(sel) = self.shared.select(None, Some(&self.model)) {
                self.selected = sel;
            }
        }
        if let Some(gc) = &setup.generation_config {
            // A fixed, budget-capped amount of "thinking" per turn (-1: dynamic budget).
            self.thinking = gc
                .thinking_config
                .as_ref()
                .and_then(|t| match t.thinking_budget {
                    Some(0) => None,
                    Some(b) if b > 0 => Some((b as u64).min(THINKING_TOKENS)),
                    _ => Some(THINKING_TOKENS),
                });
            if let Some(m) = &gc.response_modalities {
                match m.iter().map(String::as_str).collect::<Vec<_>>()[..] {
                    ["TEXT"] => self.text_only = true,
                    ["AUDIO"] | [] => self.text_only = false,
                    _ => {
                        return self
                            .reject("responseModalities must be [\"AUDIO\"] or [\"TEXT\"].")
                            .await
                    }
                }
            }
        }
        if let Some(ric) = &setup.realtime_input_config {
            if let Some(aad) = &ric.automatic_activity_detection {
                self.auto_vad = !aad.disabled.unwrap_or(false);
                let mut cfg = self.shared.cfg.vad.clone();
                match aad.start_of_speech_sensitivity.as_deref() {
                    Some("START_SENSITIVITY_HIGH") => {
                        cfg.threshold = (cfg.threshold - 0.1).max(0.0)
                    }
                    Some("START_SENSITIVITY_LOW") => cfg.threshold = (cfg.threshold + 0.1).min(1.0),
                    _ => {}
                }
                match aad.end_of_speech_sensitivity.as_deref() {
                    Some("END_SENSITIVITY_HIGH") => {
                        cfg.silence_duration_ms = cfg.silence_duration_ms * 3 / 4
                    }
                    Some("END_SENSITIVITY_LOW") => {
                        cfg.silence_duration_ms = cfg.silence_duration_ms * 3 / 2
                    }
                    _ => {}
                }
                if let Some(p) = aad.prefix_padding_ms {
                    cfg.prefix_padding_ms = p;
                }
                if let Some(s) = aad.silence_duration_ms {
                    cfg.silence_duration_ms = s;
                }
                self.vad.set_config(cfg);
            }
            self.interrupts = ric.activity_handling.as_deref() != Some("NO_INTERRUPTION");
        }
        self.in_transcription = setup.input_audio_transcription.is_some();
        self.out_transcription = setup.output_audio_transcription.is_some();
        if let Some(sr) = &setup.session_resumption {
            self.resumption = true;
            if let Some(handle) = &sr.handle {
                let state = self.shared.resumption.get(handle);
                match state {
                    Some(items) => {
                        self.items = items;
                        self.resumed_from = Some(handle.clone());
                    }
                    None => {
                        return self
                            .reject("Session resumption handle is invalid or expired.")
                            .await
                    }
                }
            }
        }
        self.send(ServerMessage {
            setup_complete: Some(Empty {}),
            ..Default::default()
        })
        .await?;
        self.resumption_update().await?;
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
        Ok(())
    }

    async fn resumption_update(&mut self) -> R {
        if !self.resumption {
            return Ok(());
        }
        let handle = format!("{}-s{}", self.shared.new_id("resume"), self.sid);
        let stored = self
            .shared
            .resumption
            .put(self.sid, handle.clone(), &self.items);
        if !stored {
            tracing::warn!(
                "Gemini session {}: the conversation is over the resumption budget; not resumable",
                self.sid
            );
        }
        self.send(ServerMessage {
            session_resumption_update: Some(ResumptionUpdate {
                new_handle: if stored { handle } else { String::new() },
                resumable: stored,
            }),
            ..Default::default()
        })
        .await
    }

    // ---------------------------------------------------------------- input
}

/// The text form of a function response: a lone string under `output`/`result`, else JSON.
fn output_text(response: Option<&Value>) -> String {
    match response {
        Some(Value::Object(m)) if m.len() == 1 => match m.iter().next() {
            Some((k, Value::String(s))) if k == "output" || k == "result" => s.clone(),
            _ => Value::Object(m.clone()).to_string(),
        },
        Some(v) => v.to_string(),
        None => String::new(),
    }
}

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
