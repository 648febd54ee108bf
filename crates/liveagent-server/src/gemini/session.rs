//! One Gemini Live session: setup, realtime input with VAD or manual activity, client
//! content, tool calls, interruption, session resumption, goAway.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix_ws::{AggregatedMessage, AggregatedMessageStream};
use serde_json::Value;
use tokio::time::Instant;

use super::wire::*;
use crate::audio::{self, WireAudio, INTERNAL_RATE};
use crate::brain::{substitute, Plan, Step, TurnInput};
use crate::conn::{Conn, End};
use crate::items::{Content, Item, ItemKind, ProtocolKind, Role, SessionInfo};
use crate::registry::SnapshotReceiver;
use crate::server::{Selected, Shared};
use crate::vad::{Vad, VadEvent};
use crate::Pacing;

type R = Result<(), End>;

/// How far behind schedule paced audio may fall before the server stops catching up
/// (overdue chunks are sent back to back until then, so a short stall does not shift the
/// rest of the response).
const CATCH_UP: Duration = Duration::from_millis(500);

const SPS_MS: u64 = (INTERNAL_RATE / 1000) as u64;
const AUDIO_TOKENS_PER_S: u64 = 32;

struct Say {
    audio: Arc<Vec<i16>>,
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

struct GSession {
    shared: Arc<Shared>,
    conn: Conn,
    sid: u64,
    selected: Selected,
    explicit_scenario: bool,
    model: String,
    text_only: bool,
    auto_vad: bool,
    interrupts: bool,
    in_transcription: bool,
    out_transcription: bool,
    resumption: bool,
    resumed_from: Option<String>,
    items: Vec<Item>,
    buf: Vec<i16>,
    buf_start: u64,
    total_samples: u64,
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

impl Drop for GSession {
    /// Files the final snapshot and counts the session out, however the session ended.
    fn drop(&mut self) {
        let info = self.snapshot(false);
        self.shared.registry.closed(info);
        self.shared
            .stats
            .sessions_active
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs a session until the client goes away or the server closes it.
pub(crate) async fn run(
    shared: Arc<Shared>,
    ws: actix_ws::Session,
    mut stream: AggregatedMessageStream,
    selected: Selected,
    explicit_scenario: bool,
    authorized: bool,
    sock: Option<Arc<std::net::TcpStream>>,
) {
    shared.stats.sessions_total.fetch_add(1, Ordering::Relaxed);
    shared.stats.sessions_active.fetch_add(1, Ordering::Relaxed);
    let sid = shared.new_session_id();
    let mut s = GSession {
        conn: Conn::new(ws, shared.clone(), sock),
        sid,
        vad: Vad::new(shared.cfg.vad.clone()),
        chunk: Duration::from_millis(shared.cfg.effective_chunk_ms() as u64),
        paced: shared.cfg.pacing == Pacing::RealTime,
        shared: shared.clone(),
        selected,
        explicit_scenario,
        model: String::new(),
        text_only: false,
        auto_vad: true,
        interrupts: true,
        in_transcription: false,
        out_transcription: false,
        resumption: false,
        resumed_from: None,
        items: Vec::new(),
        buf: Vec::new(),
        buf_start: 0,
        total_samples: 0,
        speech_start: None,
        manual_active: false,
        run: None,
        unanswered: None,
        close_at: None,
        responses: 0,
        client_errors: 0,
        last_activity: Instant::now(),
    };
    let (ask, mut asks) = tokio::sync::mpsc::unbounded_channel();
    shared.registry.register(s.meta(true), ask);
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

impl GSession {
    /// The session's metadata, without its items (cheap).
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
            input_buffered_ms: audio::samples_to_ms(self.buf.len(), INTERNAL_RATE),
        }
    }

    /// A full snapshot, items included (built only on request).
    fn snapshot(&self, connected: bool) -> SessionInfo {
        let info = SessionInfo {
            items: self.items.iter().map(Item::info).collect(),
            ..self.meta(connected)
        };
        crate::registry::counted(&self.shared.stats, info)
    }

    /// Publishes the metadata (counters); the items are only copied on request.
    fn publish(&self, connected: bool) {
        self.shared.registry.update_meta(self.meta(connected));
    }

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
        authorized: bool,
        asks: &mut SnapshotReceiver,
    ) -> R {
        self.publish(true);
        if !authorized {
            self.conn
                .close(1008, "API key not valid. Please pass a valid API key.")
                .await;
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
        if !self.explicit_scenario {
            if let Ok(sel) = self.shared.select(None, Some(&self.model)) {
                self.selected = sel;
            }
        }
        if let Some(gc) = &setup.generation_config {
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
            .put(self.sid, handle.clone(), self.items.clone());
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

    async fn on_realtime_input(&mut self, ri: RealtimeInput) -> R {
        let mut blobs: Vec<Blob> = ri.media_chunks.unwrap_or_default();
        if let Some(a) = ri.audio {
            blobs.insert(0, a);
        }
        for blob in blobs {
            let mime = blob.mime_type.as_deref().unwrap_or("audio/pcm");
            if !mime.starts_with("audio/") {
                continue; // video frames and images are accepted and ignored
            }
            let bytes = match audio::b64_decode(&blob.data) {
                Ok(b) => b,
                Err(e) => {
                    return self
                        .reject(&format!("Invalid base64 audio data: {e}"))
                        .await
                }
            };
            let samples = WireAudio::Pcm(rate_of(Some(mime))).decode(&bytes);
            self.append(samples).await?;
        }
        if ri.activity_start.is_some() {
            if self.run.is_some() && self.interrupts {
                self.interrupt().await?;
            }
            self.manual_active = true;
            self.buf.clear();
            self.buf_start = self.total_samples;
        }
        if ri.activity_end.is_some() && self.manual_active {
            self.manual_active = false;
            let all = std::mem::take(&mut self.buf);
            self.buf_start = self.total_samples;
            let ms = audio::samples_to_ms(all.len(), INTERNAL_RATE);
            self.user_audio_turn(all.clone(), all, ms).await?;
        }
        if ri.audio_stream_end == Some(true) {
            if let Some(VadEvent::SpeechStopped {
                end_ms,
                last_voiced_ms,
            }) = self.vad.flush()
            {
                self.speech_stopped(end_ms, last_voiced_ms).await?;
            }
        }
        if let Some(text) = ri.text {
            if self.run.is_some() && self.interrupts {
                self.interrupt().await?;
            }
            self.push_item(Role::User, Content::InputText(text.clone()));
            self.user_turn(TurnInput { text, audio: None }).await?;
        }
        let _ = ri.video;
        Ok(())
    }

    async fn append(&mut self, samples: Vec<i16>) -> R {
        self.total_samples += samples.len() as u64;
        if !self.auto_vad && !self.manual_active {
            // Manual activity and no activityStart: nothing will ever commit this audio.
            self.buf_start = self.total_samples;
            return Ok(());
        }
        let cap_ms = self.shared.cfg.max_input_audio_ms;
        if self.buf.len() + samples.len() > audio::ms_to_samples(cap_ms, INTERNAL_RATE) {
            return self
                .reject(&format!(
                    "Input audio exceeds the {cap_ms} ms limit for one turn; end the activity sooner."
                ))
                .await;
        }
        self.buf.extend_from_slice(&samples);
        if !self.auto_vad {
            return Ok(());
        }
        for ev in self.vad.push(&samples) {
            match ev {
                VadEvent::SpeechStarted { start_ms } => {
                    self.shared
                        .stats
                        .turns_detected
                        .fetch_add(1, Ordering::Relaxed);
                    self.speech_start = Some(start_ms);
                    if self.run.is_some() && self.interrupts {
                        self.interrupt().await?;
                    }
                }
                VadEvent::SpeechStopped {
                    end_ms,
                    last_voiced_ms,
                } => self.speech_stopped(end_ms, last_voiced_ms).await?,
            }
        }
        if self.speech_start.is_none() && !self.manual_active {
            let keep = (self.vad.config().prefix_padding_ms as usize + 200) * SPS_MS as usize;
            if self.buf.len() > keep * 2 {
                let cut = self.buf.len() - keep;
                self.buf.drain(..cut);
                self.buf_start += cut as u64;
            }
        }
        Ok(())
    }

    async fn speech_stopped(&mut self, end_ms: u64, last_voiced_ms: u64) -> R {
        let Some(start_ms) = self.speech_start.take() else {
            return Ok(());
        };
        let from = start_ms.saturating_sub(self.vad.config().prefix_padding_ms as u64);
        let a = (from * SPS_MS).saturating_sub(self.buf_start) as usize;
        let b = ((end_ms * SPS_MS).saturating_sub(self.buf_start) as usize).min(self.buf.len());
        let all = if a < b {
            self.buf[a..b].to_vec()
        } else {
            Vec::new()
        };
        self.buf.drain(..b);
        self.buf_start += b as u64;
        let voiced = ((last_voiced_ms.saturating_sub(from)) * SPS_MS) as usize;
        let echo = all[..voiced.min(all.len())].to_vec();
        self.user_audio_turn(all, echo, last_voiced_ms.saturating_sub(start_ms))
            .await
    }

    async fn user_audio_turn(&mut self, all: Vec<i16>, echo: Vec<i16>, speech_ms: u64) -> R {
        if all.is_empty() {
            return Ok(());
        }
        let label = TurnInput::speech_label(speech_ms);
        self.push_item(
            Role::User,
            Content::InputAudio {
                audio: Arc::new(all),
                transcript: self.in_transcription.then(|| label.clone()),
            },
        );
        if self.in_transcription {
            self.content(ServerContent {
                input_transcription: Some(Transcription {
                    text: label.clone(),
                    finished: Some(true),
                }),
                ..Default::default()
            })
            .await?;
        }
        self.user_turn(TurnInput {
            text: label,
            audio: Some(Arc::new(echo)),
        })
        .await
    }

    fn push_item(&mut self, role: Role, content: Content) -> String {
        let id = self.shared.new_id("item");
        self.items.push(Item {
            id: id.clone(),
            kind: ItemKind::Message {
                role,
                content: vec![content],
            },
            status: "completed",
        });
        id
    }

    async fn on_client_content(&mut self, cc: ClientContent) -> R {
        if self.run.is_some() {
            self.interrupt().await?;
        }
        let mut last_user: Option<String> = None;
        for turn in cc.turns.unwrap_or_default() {
            let role = match turn.role.as_deref() {
                Some("model") => Role::Assistant,
                _ => Role::User,
            };
            for part in turn.parts.unwrap_or_default() {
                if let Some(t) = part.text {
                    if role == Role::User {
                        last_user = Some(t.clone());
                        self.push_item(role, Content::InputText(t));
                    } else {
                        self.push_item(role, Content::OutputText(t));
                    }
                } else if let Some(fc) = part.function_call {
                    let id = self.shared.new_id("item");
                    self.items.push(Item {
                        id,
                        kind: ItemKind::FunctionCall {
                            call_id: fc.id.unwrap_or_default(),
                            name: fc.name.unwrap_or_default(),
                            arguments: fc.args.unwrap_or(Value::Null).to_string(),
                        },
                        status: "completed",
                    });
                } else if let Some(fr) = part.function_response {
                    let id = self.shared.new_id("item");
                    self.items.push(Item {
                        id,
                        kind: ItemKind::FunctionCallOutput {
                            call_id: fr.id.unwrap_or_default(),
                            output: output_text(fr.response.as_ref()),
                        },
                        status: "completed",
                    });
                } else if let Some(blob) = part.inline_data {
                    if role == Role::User {
                        if let Ok(bytes) = audio::b64_decode(&blob.data) {
                            let samples =
                                WireAudio::Pcm(rate_of(blob.mime_type.as_deref())).decode(&bytes);
                            self.push_item(
                                role,
                                Content::InputAudio {
                                    audio: Arc::new(samples),
                                    transcript: None,
                                },
                            );
                        }
                    }
                }
            }
        }
        if cc.turn_complete == Some(true) {
            self.user_turn(TurnInput {
                text: last_user.unwrap_or_default(),
                audio: None,
            })
            .await?;
        }
        Ok(())
    }

    async fn on_tool_response(&mut self, tr: ToolResponse) -> R {
        for fr in tr.function_responses {
            let call_id = fr.id.clone().unwrap_or_default();
            let output = output_text(fr.response.as_ref());
            let id = self.shared.new_id("item");
            self.items.push(Item {
                id,
                kind: ItemKind::FunctionCallOutput {
                    call_id: call_id.clone(),
                    output: output.clone(),
                },
                status: "completed",
            });
            if let Some(run) = self.run.as_mut() {
                if let Some(p) = run.waiting.iter().position(|w| *w == call_id) {
                    run.waiting.remove(p);
                    run.outputs.push(output);
                }
            }
        }
        if let Some(run) = self.run.as_mut() {
            if run.waiting.is_empty() && !run.outputs.is_empty() {
                let out = std::mem::take(&mut run.outputs).join("\n");
                substitute(&mut run.steps, "{output}", &out);
                run.next_at = Instant::now();
            }
        }
        Ok(())
    }

    // ---------------------------------------------------------------- responses

    async fn user_turn(&mut self, input: TurnInput) -> R {
        if self.run.is_some() {
            // NO_INTERRUPTION: answer once the current turn is over.
            self.unanswered = Some(input);
            return Ok(());
        }
        let plan = self.selected.brain.plan(&self.selected.state, &input);
        self.start_run(plan);
        Ok(())
    }

    fn start_run(&mut self, plan: Plan) {
        self.responses += 1;
        self.shared.stats.responses.fetch_add(1, Ordering::Relaxed);
        self.run = Some(Run {
            steps: plan.steps,
            cur: None,
            next_at: Instant::now() + plan.delay.unwrap_or_default(),
            waiting: Vec::new(),
            outputs: Vec::new(),
            slow: 1.0,
            sent_at_start: self.conn.sent,
            drop_after_events: plan.drop_after_events,
            out_audio_samples: 0,
            out_text_chars: 0,
        });
    }

    async fn interrupt(&mut self) -> R {
        let Some(mut run) = self.run.take() else {
            return Ok(());
        };
        if let Some(say) = run.cur.take() {
            self.finalize_say(&say, true);
        }
        self.content(ServerContent {
            interrupted: Some(true),
            ..Default::default()
        })
        .await?;
        if !run.waiting.is_empty() {
            self.send(ServerMessage {
                tool_call_cancellation: Some(ToolCallCancellation {
                    ids: std::mem::take(&mut run.waiting),
                }),
                ..Default::default()
            })
            .await?;
        }
        self.content(ServerContent {
            turn_complete: Some(true),
            ..Default::default()
        })
        .await?;
        self.publish(true);
        Ok(())
    }

    async fn advance(&mut self) -> R {
        let Some(mut run) = self.run.take() else {
            return Ok(());
        };
        // Lend the drop settings while stepping.
        let r = self.step(&mut run).await;
        match r {
            Ok(true) => {
                self.run = Some(run);
                Ok(())
            }
            Ok(false) => {
                self.finish(run).await?;
                if let Some(input) = self.unanswered.take() {
                    self.user_turn(input).await?;
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn emit_in_run(&mut self, run: &Run, msg: ServerMessage) -> R {
        self.conn.send_json(&msg).await?;
        if let Some(k) = run.drop_after_events {
            if self.conn.sent - run.sent_at_start >= k as u64 {
                tracing::info!("scenario: dropping the connection after {k} response messages");
                self.conn.drop_now();
                return Err(End::Closed);
            }
        }
        Ok(())
    }

    /// One piece of work; Ok(false) when the turn is over.
    async fn step(&mut self, run: &mut Run) -> Result<bool, End> {
        let now = Instant::now();
        loop {
            if run.cur.is_none() {
                let Some(step) = run.steps.pop_front() else {
                    return Ok(false);
                };
                match step {
                    Step::Say {
                        text,
                        audio,
                        drop_after_ms,
                    } => {
                        let audio = if self.text_only {
                            Arc::new(Vec::new())
                        } else {
                            audio.unwrap_or_else(|| Arc::new(audio::synth_text(&text)))
                        };
                        let item_id = self.shared.new_id("item");
                        run.cur = Some(Say {
                            words: if self.text_only {
                                split_words(&text)
                            } else {
                                VecDeque::new()
                            },
                            audio,
                            pos: 0,
                            text: text.chars().collect(),
                            text_sent: 0,
                            drop_at: drop_after_ms
                                .map(|ms| audio::ms_to_samples(ms, INTERNAL_RATE)),
                            item_id,
                        });
                    }
                    Step::Call {
                        name,
                        args,
                        drop_mid_arguments,
                    } => {
                        if drop_mid_arguments {
                            tracing::info!("scenario: dropping the connection before the toolCall");
                            self.conn.drop_now();
                            return Err(End::Closed);
                        }
                        let mut calls = vec![(name, args)];
                        while let Some(Step::Call { .. }) = run.steps.front() {
                            if let Some(Step::Call { name, args, .. }) = run.steps.pop_front() {
                                calls.push((name, args));
                            }
                        }
                        let mut out = Vec::new();
                        for (name, args) in calls {
                            let id = self.shared.new_id("function-call");
                            self.items.push(Item {
                                id: self.shared.new_id("item"),
                                kind: ItemKind::FunctionCall {
                                    call_id: id.clone(),
                                    name: name.clone(),
                                    arguments: args.to_string(),
                                },
                                status: "completed",
                            });
                            run.waiting.push(id.clone());
                            out.push(FunctionCallOut { id, name, args });
                        }
                        self.emit_in_run(
                            run,
                            ServerMessage {
                                tool_call: Some(ToolCall {
                                    function_calls: out,
                                }),
                                ..Default::default()
                            },
                        )
                        .await?;
                        self.publish(true);
                        return Ok(true); // paused until the toolResponse
                    }
                    Step::Wait(d) => {
                        run.next_at = now + d;
                        return Ok(true);
                    }
                    Step::Slow(f) => run.slow = f,
                    other => {
                        let msg = self.simple_message(other);
                        match msg {
                            Ok(Some(m)) => self.emit_in_run(run, m).await?,
                            Ok(None) => {}
                            Err(step) => self.simple_step(step).await?,
                        }
                    }
                }
                continue;
            }
            let finished = self.tick(run, now).await?;
            let pace = self.chunk.mul_f32(run.slow);
            run.next_at = if self.paced {
                (run.next_at + pace).max(now - CATCH_UP)
            } else {
                now
            };
            if finished {
                if let Some(say) = run.cur.take() {
                    self.finalize_say(&say, false);
                }
            }
            return Ok(true);
        }
    }

    /// Sends one chunk; Ok(true) when the utterance is complete.
    async fn tick(&mut self, run: &mut Run, now: Instant) -> Result<bool, End> {
        let chunk_samples = audio::ms_to_samples(self.chunk.as_millis() as u64, INTERNAL_RATE);
        let late = now.saturating_duration_since(run.next_at).as_micros() as u64;
        let Some(say) = run.cur.as_mut() else {
            return Ok(true);
        };
        if self.text_only {
            let Some(w) = say.words.pop_front() else {
                return Ok(true);
            };
            let last = say.words.is_empty();
            run.out_text_chars += w.chars().count();
            self.shared.stats.chunk_sent(late);
            let msg = ServerMessage {
                server_content: Some(ServerContent {
                    model_turn: Some(ModelTurn {
                        role: "model",
                        parts: vec![OutPart {
                            text: Some(w),
                            inline_data: None,
                        }],
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            };
            self.emit_in_run(run, msg).await?;
            return Ok(last);
        }
        let len = say.audio.len();
        let from = say.pos;
        let end = (from + chunk_samples).min(len);
        say.pos = end;
        let drop_now = say.drop_at.is_some_and(|d| end >= d);
        let target = if end >= len {
            say.text.len()
        } else {
            say.text.len() * end / len.max(1)
        };
        let tdelta: String = if target > say.text_sent {
            let d = say.text[say.text_sent..target].iter().collect();
            say.text_sent = target;
            d
        } else {
            String::new()
        };
        let data = audio::b64_encode(&audio::pcm_to_bytes(&say.audio[from..end]));
        if end > from {
            run.out_audio_samples += end - from;
            self.shared.stats.chunk_sent(late);
            let msg = ServerMessage {
                server_content: Some(ServerContent {
                    model_turn: Some(ModelTurn {
                        role: "model",
                        parts: vec![OutPart {
                            text: None,
                            inline_data: Some(OutBlob {
                                mime_type: "audio/pcm;rate=24000",
                                data,
                            }),
                        }],
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            };
            self.emit_in_run(run, msg).await?;
        }
        if drop_now {
            tracing::info!("scenario: dropping the connection mid-audio");
            self.conn.drop_now();
            return Err(End::Closed);
        }
        if !tdelta.is_empty() {
            run.out_text_chars += tdelta.chars().count();
            if self.out_transcription {
                let msg = ServerMessage {
                    server_content: Some(ServerContent {
                        output_transcription: Some(Transcription {
                            text: tdelta,
                            finished: None,
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                self.emit_in_run(run, msg).await?;
            }
        }
        Ok(end >= len)
    }

    /// Records what was said (all of it, or up to the interruption) as a model item.
    fn finalize_say(&mut self, say: &Say, cut: bool) {
        let (audio, text): (Vec<i16>, String) = if cut {
            (
                say.audio[..say.pos.min(say.audio.len())].to_vec(),
                say.text[..say.text_sent].iter().collect(),
            )
        } else {
            (say.audio.to_vec(), say.text.iter().collect())
        };
        let content = if self.text_only {
            let n = say.text.len() - say.words.iter().map(|w| w.chars().count()).sum::<usize>();
            Content::OutputText(say.text[..n.min(say.text.len())].iter().collect())
        } else {
            Content::OutputAudio {
                audio: Arc::new(audio),
                transcript: text,
            }
        };
        self.items.push(Item {
            id: say.item_id.clone(),
            kind: ItemKind::Message {
                role: Role::Assistant,
                content: vec![content],
            },
            status: if cut { "incomplete" } else { "completed" },
        });
    }

    async fn finish(&mut self, run: Run) -> R {
        self.conn
            .send_json(&ServerMessage {
                server_content: Some(ServerContent {
                    generation_complete: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await?;
        let mut prompt_text = 0u64;
        let mut prompt_audio_ms = 0u64;
        for item in &self.items {
            prompt_text += (item.text().chars().count() as u64).div_ceil(4);
            if item.role() == Some(Role::User) {
                prompt_audio_ms += item.audio_ms();
            }
        }
        let prompt_audio = prompt_audio_ms * AUDIO_TOKENS_PER_S / 1000;
        let resp_text = (run.out_text_chars as u64).div_ceil(4);
        let resp_audio =
            audio::samples_to_ms(run.out_audio_samples, INTERNAL_RATE) * AUDIO_TOKENS_PER_S / 1000;
        let response_token_count = if self.text_only {
            resp_text
        } else {
            resp_audio
        };
        let prompt = prompt_text + prompt_audio;
        self.conn
            .send_json(&ServerMessage {
                server_content: Some(ServerContent {
                    turn_complete: Some(true),
                    ..Default::default()
                }),
                usage_metadata: Some(UsageMetadata {
                    prompt_token_count: prompt,
                    response_token_count,
                    total_token_count: prompt + response_token_count,
                    prompt_tokens_details: vec![
                        ModalityCount {
                            modality: "TEXT",
                            token_count: prompt_text,
                        },
                        ModalityCount {
                            modality: "AUDIO",
                            token_count: prompt_audio,
                        },
                    ],
                    response_tokens_details: vec![ModalityCount {
                        modality: if self.text_only { "TEXT" } else { "AUDIO" },
                        token_count: response_token_count,
                    }],
                }),
                ..Default::default()
            })
            .await?;
        self.resumption_update().await?;
        self.publish(true);
        self.last_activity = Instant::now();
        Ok(())
    }

    /// A step that maps to one message, or the step back when it is not a message.
    fn simple_message(&mut self, step: Step) -> Result<Option<ServerMessage>, Step> {
        match step {
            Step::GoAway(t) => {
                if let Some(ms) = parse_duration_ms(&t) {
                    self.close_at = Some(Instant::now() + Duration::from_millis(ms));
                }
                Ok(Some(ServerMessage {
                    go_away: Some(GoAway { time_left: t }),
                    ..Default::default()
                }))
            }
            other => Err(other),
        }
    }

    async fn simple_step(&mut self, step: Step) -> R {
        let step = match self.simple_message(step) {
            Ok(Some(m)) => return self.send(m).await,
            Ok(None) => return Ok(()),
            Err(step) => step,
        };
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
                let head = "{\"serverContent\":{\"outputTranscription\":{\"text\":\"";
                let pad = n.saturating_sub(head.len() + 4);
                self.conn
                    .send_text(format!("{head}{}\"}}}}", "x".repeat(pad)))
                    .await
            }
            Step::Error { message, .. } => {
                self.conn.close(1011, &message).await;
                Err(End::Closed)
            }
            other => {
                tracing::warn!("scenario: {other:?} only works inside a turn; skipped");
                Ok(())
            }
        }
    }
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
