//! The WebSocket actor pair every transport uses, like the sound-card peers of
//! `liveagent-audio`:
//!
//! - [`RemoteRecorder`] owns the connection: it reads the socket, decodes each message with
//!   the transport's [`Decoder`], publishes microphone audio as `RecordedAudio` (resampled to
//!   the session's input rate), turns text and DTMF into `UserText`, starts the
//!   conversation when the remote side is ready and ends everything when the remote side
//!   leaves, misbehaves or idles.
//! - [`RemotePlayer`] consumes `SynthesizedAudio` / `Interrupted` (and whatever events the
//!   [`Encoder`] forwards), writes them with the encoder, and publishes
//!   `AudioPlaybackStarted` when the remote side first reports hearing an item and
//!   `PlaybackStopped` with the milliseconds the remote listener actually heard, from the
//!   remote side's own reports (the page's played-sample counts, Twilio's mark echoes).
//!
//! Both write through one bounded queue to a writer task that owns the socket's send half.
//! A remote side that stops reading fills the queue and is disconnected; nothing grows
//! without bound.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, ProtocolError, Session};
use bytes::Bytes;
use liveagent_audio::convert::{f32_to_pcm16, MonoResampler};
use liveagent_core::events::Id;
use liveagent_core::{
    AudioChunk, AudioPlaybackStarted, ConversationContext, ErrorEvent, ErrorKind, EventFilter,
    Interrupted, LiveError, LiveEvent, PlaybackStopped, RecordedAudio, ResponseDone, SessionClosed,
    Subscribe, SubscriberId, SynthesizedAudio, UserText,
};
use tokio::sync::mpsc;

use liveagent::{LiveAgent, RunOptions};
use liveagent_store::{resume, ConversationId, ResumeToken};

use crate::codec::{
    CallStart, Decoder, Encoder, FrameError, Inbound, OutFrame, PlayState, ResumeRequest, WireIn,
};
use crate::hub::{CloseConnection, Hub};
use crate::limits::Permit;

/// What a DTMF digit does in the conversation.
pub(crate) type DtmfHook = std::sync::Arc<dyn Fn(&str, &ConversationContext) + Send + Sync>;

/// How long the player waits for the remote side's final played position after an
/// interruption before it reports the last position it knew.
const CUT_REPORT_TIMEOUT: Duration = Duration::from_millis(500);

/// Items whose playback the player remembers.
const MAX_TRACKS: usize = 32;

// ------------------------------------------------------------------ writer

enum WsOut {
    Frame(OutFrame),
    Pong(Bytes),
    Close(CloseReason),
}

/// How long a closing connection's writer may still take to get its close frame out before
/// it is dropped, with whatever it still queues (a remote side that does not read would
/// otherwise hold the queue and the socket forever).
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The sending side of a connection: a bounded queue drained by a writer task.
#[derive(Clone)]
pub(crate) struct WsTx {
    tx: mpsc::Sender<WsOut>,
    writer: tokio::task::AbortHandle,
}

/// Why a frame could not be queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SendError {
    /// The remote side does not read: the queue is full.
    Full,
    /// The connection is gone.
    Closed,
}

impl WsTx {
    /// Starts the writer task for `session` with room for `capacity` frames.
    pub(crate) fn spawn(mut session: Session, capacity: usize) -> WsTx {
        let (tx, mut rx) = mpsc::channel::<WsOut>(capacity.max(8));
        let writer = actix::spawn(async move {
            while let Some(out) = rx.recv().await {
                let sent = match out {
                    WsOut::Frame(OutFrame::Text(t)) => session.text(t).await,
                    WsOut::Frame(OutFrame::Binary(b)) => session.binary(b).await,
                    WsOut::Pong(p) => session.pong(&p).await,
                    WsOut::Close(reason) => {
                        let _ = session.close(Some(reason)).await;
                        return;
                    }
                };
                if sent.is_err() {
                    return;
                }
            }
        });
        WsTx {
            tx,
            writer: writer.abort_handle(),
        }
    }

    pub(crate) fn send(&self, frame: OutFrame) -> Result<(), SendError> {
        self.tx.try_send(WsOut::Frame(frame)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SendError::Full,
            mpsc::error::TrySendError::Closed(_) => SendError::Closed,
        })
    }

    fn pong(&self, payload: Bytes) {
        let _ = self.tx.try_send(WsOut::Pong(payload));
    }

    /// Queues the close frame, waiting for room (the last thing a connection sends); after
    /// [`CLOSE_GRACE`] the writer is dropped with its queue and the socket's send half,
    /// whether or not the remote side read it all.
    fn close(&self, code: u16, reason: &str) {
        let (tx, writer) = (self.tx.clone(), self.writer.clone());
        let reason = CloseReason {
            code: CloseCode::from(code),
            description: Some(truncate(reason, 120)),
        };
        actix::spawn(async move {
            let deadline = tokio::time::Instant::now() + CLOSE_GRACE;
            let _ = tokio::time::timeout_at(deadline, tx.send(WsOut::Close(reason))).await;
            drop(tx);
            tokio::time::sleep_until(deadline).await;
            writer.abort();
        });
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

// ------------------------------------------------------------------ recorder

/// What a connection needs to know about its transport.
pub(crate) struct PeerSetup<D: Decoder, E: Encoder> {
    /// Label for logs and error sources (`browser`, `twilio`).
    pub label: &'static str,
    pub decoder: D,
    pub encoder: E,
    /// Start the conversation right away (browser) or on the remote side's `Start`
    /// (Twilio).
    pub start_now: Option<CallStart>,
    /// A frame that carries an error message to the remote side, if the protocol has one.
    pub error_frame: fn(&str, &str) -> Option<OutFrame>,
    /// What a DTMF digit becomes in the conversation.
    pub on_dtmf: Option<DtmfHook>,
}

/// Reads one remote side (a page or a phone call) and publishes what it says into a
/// conversation it starts in the transport's [`LiveAgentSystem`](liveagent::LiveAgentSystem).
/// Created by the transports' WebSocket handlers; lives as long as the connection.
pub struct RemoteRecorder<D: Decoder, E: Encoder> {
    id: u64,
    label: &'static str,
    hub: Hub,
    decoder: D,
    encoder: Option<E>,
    error_frame: fn(&str, &str) -> Option<OutFrame>,
    on_dtmf: Option<DtmfHook>,
    tx: WsTx,
    context: Option<ConversationContext>,
    player: Option<Addr<RemotePlayer<E>>>,
    resampler: Option<MonoResampler>,
    opened: Instant,
    last_rx: Instant,
    audio_started: Option<Instant>,
    audio_us: u64,
    pending_start: Option<CallStart>,
    resume: Option<ResumeRequest>,
    launching: bool,
    closing: bool,
    _permit: Permit,
}

/// A stored conversation's id and token, for the encoder.
struct StoredIds {
    id: String,
    token: Option<String>,
    resumed: bool,
}

impl<D: Decoder, E: Encoder> RemoteRecorder<D, E> {
    /// Starts the connection's actors for an upgraded WebSocket.
    pub(crate) fn start(
        hub: Hub,
        permit: Permit,
        setup: PeerSetup<D, E>,
        session: Session,
        stream: actix_ws::MessageStream,
    ) {
        let limits = hub.limits.clone();
        let tx = WsTx::spawn(session, limits.max_queued_frames);
        let stream = stream
            .max_frame_size(limits.max_frame_bytes)
            .aggregate_continuations()
            .max_continuation_size(limits.max_frame_bytes);
        let id = hub.next_id();
        let now = Instant::now();
        let recorder = RemoteRecorder {
            id,
            label: setup.label,
            hub: hub.clone(),
            decoder: setup.decoder,
            encoder: Some(setup.encoder),
            error_frame: setup.error_frame,
            on_dtmf: setup.on_dtmf,
            tx,
            context: None,
            player: None,
            resampler: None,
            opened: now,
            last_rx: now,
            audio_started: None,
            audio_us: 0,
            pending_start: setup.start_now,
            resume: None,
            launching: false,
            closing: false,
            _permit: permit,
        };
        let addr = RemoteRecorder::create(move |ctx| {
            ctx.add_stream(stream);
            recorder
        });
        hub.register(id, addr.recipient());
    }

    fn launch(&mut self, start: CallStart, ctx: &mut Context<Self>) {
        if self.context.is_some() || self.launching {
            self.fail(
                FrameError::OutOfOrder("the conversation already started".into()),
                ctx,
            );
            return;
        }
        let agent = match self.hub.agent.make(&start) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(transport = self.label, error = %e, "cannot start the conversation");
                self.close_with_error(1011, "conversation_failed", &e.to_string(), ctx);
                return;
            }
        };
        let store = self.hub.store.clone().or_else(|| agent.store().cloned());
        match (self.resume.take(), store) {
            (Some(_), None) => self.close_with_error(
                1003,
                "resume_unsupported",
                "this server does not resume conversations (no conversation store)",
                ctx,
            ),
            (Some(request), Some(store)) => {
                // Load and check before anything else is handled: `wait` holds the socket's
                // frames until the conversation runs.
                self.launching = true;
                let loader = store.clone();
                let fut = async move {
                    let id = &request.conversation_id;
                    resume::load_for_resume(&*loader, id, request.token.expose()).await
                };
                ctx.wait(fut.into_actor(self).map(move |res, act, ctx| {
                    act.launching = false;
                    if act.closing {
                        return;
                    }
                    match res {
                        Ok(state) => {
                            tracing::info!(transport = act.label, connection = act.id, conversation = %state.id, "resuming a stored conversation");
                            let stored = StoredIds {
                                id: state.id.to_string(),
                                token: state.resume_token.as_ref().map(|t| t.expose().to_owned()),
                                resumed: true,
                            };
                            let options = RunOptions::new().store(store).resume(state);
                            act.run(start, agent, options, Some(stored), ctx);
                        }
                        Err(resume::ResumeError::Unknown) => {
                            tracing::warn!(transport = act.label, connection = act.id, "resume refused: unknown or expired conversation, or a wrong token");
                            act.close_with_error(
                                1008,
                                "resume_failed",
                                "unknown or expired conversation",
                                ctx,
                            );
                        }
                        Err(resume::ResumeError::Store(e)) => {
                            tracing::warn!(transport = act.label, connection = act.id, error = %e, "resume failed: the conversation store is unavailable");
                            act.close_with_error(
                                1013,
                                "resume_unavailable",
                                "the conversation store is unavailable; try again",
                                ctx,
                            );
                        }
                    }
                }));
            }
            (None, Some(store)) => {
                let id = ConversationId::generate();
                let token = ResumeToken::generate();
                let stored = StoredIds {
                    id: id.to_string(),
                    token: Some(token.expose().to_owned()),
                    resumed: false,
                };
                let options = RunOptions::new()
                    .store(store)
                    .conversation_id(id)
                    .resume_token(token);
                self.run(start, agent, options, Some(stored), ctx);
            }
            (None, None) => self.run(start, agent, RunOptions::new(), None, ctx),
        }
    }

    /// Starts the conversation and its player.
    fn run(
        &mut self,
        start: CallStart,
        agent: LiveAgent,
        options: RunOptions,
        stored: Option<StoredIds>,
        ctx: &mut Context<Self>,
    ) {
        let Some(mut encoder) = self.encoder.take() else {
            return;
        };
        encoder.on_start(&start);
        if let Some(s) = &stored {
            encoder.set_conversation(&s.id, s.token.as_deref(), s.resumed);
        }
        let context = match self.hub.system.run_with(&agent, options) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(transport = self.label, error = %e, "cannot start the conversation");
                self.close_with_error(1011, "conversation_failed", &e.to_string(), ctx);
                return;
            }
        };
        tracing::info!(transport = self.label, connection = self.id, call = %start.call_sid, conversation = stored.as_ref().map(|s| s.id.as_str()).unwrap_or(""), "conversation started");
        let player = RemotePlayer::start(
            context.clone(),
            encoder,
            self.tx.clone(),
            ctx.address().recipient(),
            self.label,
            self.hub.audio_out_latency.clone(),
        );
        self.context = Some(context);
        self.player = Some(player);
    }

    fn on_inbound(&mut self, item: Inbound, ctx: &mut Context<Self>) {
        match item {
            Inbound::Audio(chunk) => self.on_audio(chunk, ctx),
            Inbound::Hello {
                input_rate,
                output_rate,
                resume,
            } => {
                self.resume = resume;
                self.resampler = None;
                if let Some(p) = &self.player {
                    p.do_send(SetRates(input_rate, output_rate));
                } else if let Some(e) = self.encoder.as_mut() {
                    e.set_rates(input_rate, output_rate);
                }
            }
            Inbound::Start(start) => self.launch(start, ctx),
            Inbound::Played {
                item_id,
                played_ms,
                state,
            } => {
                if let Some(p) = &self.player {
                    p.do_send(Played {
                        item_id,
                        played_ms,
                        state,
                    });
                }
            }
            Inbound::Mark(name) => {
                if let Some(p) = &self.player {
                    p.do_send(MarkEcho(name));
                }
            }
            Inbound::Text(text) => match &self.context {
                Some(c) if !text.trim().is_empty() => c.publish(UserText {
                    text: text.into(),
                    respond: true,
                }),
                Some(_) => {}
                None => self.fail(FrameError::OutOfOrder("text before the start".into()), ctx),
            },
            Inbound::Dtmf(digit) => {
                if let Some(c) = &self.context {
                    tracing::info!(transport = self.label, %digit, "DTMF");
                    match &self.on_dtmf {
                        Some(hook) => hook(&digit, c),
                        None => c.publish(UserText {
                            text: format!("[The caller pressed {digit} on the keypad]").into(),
                            respond: true,
                        }),
                    }
                }
            }
            Inbound::End => self.close(1000, "conversation ended by the remote side", ctx),
            Inbound::Ignore => {}
        }
    }

    fn on_audio(&mut self, chunk: AudioChunk, ctx: &mut Context<Self>) {
        let Some(context) = &self.context else {
            self.fail(FrameError::OutOfOrder("audio before the start".into()), ctx);
            return;
        };
        if chunk.is_empty() {
            return;
        }
        // Pace check: a peer may burst, but not stream faster than real time for long.
        let now = Instant::now();
        let started = *self.audio_started.get_or_insert(now);
        self.audio_us += chunk.duration_us();
        let allowed_us = (now.duration_since(started).as_micros() as f64
            * self.hub.limits.max_audio_pace) as u64
            + 2_000_000;
        if self.audio_us > allowed_us {
            self.close_with_error(
                1008,
                "audio_too_fast",
                "microphone audio arrives faster than real time",
                ctx,
            );
            return;
        }
        let target = context.input_sample_rate();
        let audio = if chunk.sample_rate == target {
            chunk
        } else {
            let rs = match &mut self.resampler {
                Some(rs) if rs.in_rate() == chunk.sample_rate => rs,
                slot => match MonoResampler::new(chunk.sample_rate, target) {
                    Ok(rs) => slot.insert(rs),
                    Err(e) => {
                        self.fail(FrameError::BadAudio(e.to_string()), ctx);
                        return;
                    }
                },
            };
            let mut out =
                Vec::with_capacity(chunk.len() * target as usize / chunk.sample_rate as usize + 64);
            rs.process_i16(&chunk.samples, &mut out);
            if out.is_empty() {
                return;
            }
            AudioChunk::new(
                out.into_iter().map(f32_to_pcm16).collect::<Vec<_>>(),
                target,
            )
        };
        context.publish(RecordedAudio {
            audio: audio.with_origin(now),
        });
    }

    /// A frame the remote side should not have sent: say why, then close.
    fn fail(&mut self, error: FrameError, ctx: &mut Context<Self>) {
        tracing::warn!(transport = self.label, connection = self.id, error = %error, "bad frame from the remote side; closing");
        if let Some(c) = &self.context {
            c.publish(ErrorEvent::fatal(
                self.label,
                LiveError::new(ErrorKind::Protocol, format!("{}: {error}", self.label)),
            ));
        }
        let code = error.close_code();
        self.close_with_error(code, "bad_frame", &error.to_string(), ctx);
    }

    fn close_with_error(&mut self, code: u16, kind: &str, message: &str, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        if let Some(frame) = (self.error_frame)(kind, message) {
            let _ = self.tx.send(frame);
        }
        self.close(code, message, ctx);
    }

    /// Ends the connection and its conversation (idempotent).
    fn close(&mut self, code: u16, reason: &str, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        self.closing = true;
        tracing::info!(
            transport = self.label,
            connection = self.id,
            code,
            reason,
            "connection closing"
        );
        if let Some(p) = self.player.take() {
            p.do_send(StopPlayer);
        }
        if let Some(c) = self.context.take() {
            let system = self.hub.system.clone();
            actix::spawn(async move { system.stop_conversation(&c).await });
        }
        self.tx.close(code, reason);
        ctx.stop();
    }

    fn check_timeouts(&mut self, ctx: &mut Context<Self>) {
        let limits = &self.hub.limits;
        if self.context.is_none() && self.opened.elapsed() > limits.start_timeout {
            self.close_with_error(1008, "start_timeout", "the remote side never started", ctx);
        } else if self.last_rx.elapsed() > limits.idle_timeout {
            self.close_with_error(1000, "idle_timeout", "nothing received for too long", ctx);
        }
    }
}

impl<D: Decoder, E: Encoder> Actor for RemoteRecorder<D, E> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(start) = self.pending_start.take() {
            self.launch(start, ctx);
        }
        ctx.run_interval(Duration::from_millis(250), |this, ctx| {
            this.check_timeouts(ctx)
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.hub.unregister(self.id);
        if !self.closing {
            if let Some(p) = self.player.take() {
                p.do_send(StopPlayer);
            }
            if let Some(c) = self.context.take() {
                let system = self.hub.system.clone();
                actix::spawn(async move { system.stop_conversation(&c).await });
            }
            self.tx.close(1001, "going away");
        }
    }
}

impl<D: Decoder, E: Encoder> StreamHandler<Result<AggregatedMessage, ProtocolError>>
    for RemoteRecorder<D, E>
{
    fn handle(&mut self, msg: Result<AggregatedMessage, ProtocolError>, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        self.last_rx = Instant::now();
        let decoded = match msg {
            Ok(AggregatedMessage::Text(t)) => self.decoder.decode(WireIn::Text(&t)),
            Ok(AggregatedMessage::Binary(b)) => self.decoder.decode(WireIn::Binary(&b)),
            Ok(AggregatedMessage::Ping(p)) => {
                self.tx.pong(p);
                return;
            }
            Ok(AggregatedMessage::Pong(_)) => return,
            Ok(AggregatedMessage::Close(reason)) => {
                let why = reason
                    .and_then(|r| r.description)
                    .unwrap_or_else(|| "closed by the remote side".into());
                self.close(1000, &why, ctx);
                return;
            }
            Err(ProtocolError::Overflow) => {
                self.close_with_error(1009, "frame_too_large", "message too large", ctx);
                return;
            }
            Err(e) => {
                self.close_with_error(
                    1002,
                    "protocol_error",
                    &format!("websocket protocol error: {e}"),
                    ctx,
                );
                return;
            }
        };
        match decoded {
            Ok(items) => {
                for item in items {
                    if self.closing {
                        break;
                    }
                    self.on_inbound(item, ctx);
                }
            }
            Err(e) => self.fail(e, ctx),
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        self.close(1000, "connection closed", ctx);
    }
}

impl<D: Decoder, E: Encoder> Handler<CloseConnection> for RemoteRecorder<D, E> {
    type Result = ();
    fn handle(&mut self, msg: CloseConnection, ctx: &mut Context<Self>) {
        self.close_with_error(msg.code, "closing", &msg.reason, ctx);
    }
}

// ------------------------------------------------------------------ player

#[derive(Message)]
#[rtype(result = "()")]
struct Played {
    item_id: Option<Id>,
    played_ms: u64,
    state: PlayState,
}

#[derive(Message)]
#[rtype(result = "()")]
struct MarkEcho(String);

#[derive(Message)]
#[rtype(result = "()")]
struct SetRates(u32, u32);

#[derive(Message)]
#[rtype(result = "()")]
struct StopPlayer;

#[derive(Debug)]
struct Track {
    item: Id,
    response_id: Option<Id>,
    sent_samples: u64,
    played_ms: u64,
    reported: bool,
    /// `AudioPlaybackStarted` was published (the remote side reported hearing some of it).
    announced: bool,
}

/// Plays the conversation's speech on the remote side and reports what was heard. Started
/// by the [`RemoteRecorder`] when the conversation starts; stops with it.
pub struct RemotePlayer<E: Encoder> {
    label: &'static str,
    context: ConversationContext,
    encoder: E,
    tx: WsTx,
    recorder: Recipient<CloseConnection>,
    resampler: Option<MonoResampler>,
    current: Option<Id>,
    tracks: VecDeque<Track>,
    waiting_cut: Option<SpawnHandle>,
    sub: Option<SubscriberId>,
    frames: Vec<OutFrame>,
    stuck: bool,
    latency: std::sync::Arc<std::sync::Mutex<liveagent_core::LatencySamples>>,
}

impl<E: Encoder> RemotePlayer<E> {
    fn start(
        context: ConversationContext,
        mut encoder: E,
        tx: WsTx,
        recorder: Recipient<CloseConnection>,
        label: &'static str,
        latency: std::sync::Arc<std::sync::Mutex<liveagent_core::LatencySamples>>,
    ) -> Addr<Self> {
        let ctx: Context<Self> = Context::new();
        // Subscribe before the session can say anything.
        let filter = EventFilter::of::<SynthesizedAudio>()
            .or::<Interrupted>()
            .or::<ResponseDone>()
            .or::<SessionClosed>()
            .union(encoder.events());
        let sub = context
            .subscribe_with(Subscribe::filtered(filter, ctx.address().recipient()).label(label));
        let mut frames = Vec::new();
        encoder.started(&context, &mut frames);
        let mut player = RemotePlayer {
            label,
            context,
            encoder,
            tx,
            recorder,
            resampler: None,
            current: None,
            tracks: VecDeque::new(),
            waiting_cut: None,
            sub: Some(sub),
            frames: Vec::new(),
            stuck: false,
            latency,
        };
        player.frames = frames;
        player.flush_frames();
        ctx.run(player)
    }

    fn flush_frames(&mut self) {
        if !self.frames.is_empty() {
            tracing::trace!(
                transport = self.label,
                frames = self.frames.len(),
                "sending"
            );
        }
        for frame in self.frames.drain(..) {
            match self.tx.send(frame) {
                Ok(()) => {}
                Err(SendError::Closed) => break,
                Err(SendError::Full) => {
                    if !self.stuck {
                        self.stuck = true;
                        tracing::warn!(
                            transport = self.label,
                            "remote side does not read; closing"
                        );
                        self.recorder.do_send(CloseConnection {
                            code: 1008,
                            reason: "the remote side does not read (outgoing buffer full)".into(),
                        });
                    }
                    break;
                }
            }
        }
        self.frames.clear();
    }

    fn track(&mut self, item: &Id) -> &mut Track {
        if let Some(i) = self.tracks.iter().position(|t| t.item == *item) {
            return &mut self.tracks[i];
        }
        if self.tracks.len() >= MAX_TRACKS {
            self.tracks.pop_front();
        }
        self.tracks.push_back(Track {
            item: item.clone(),
            response_id: None,
            sent_samples: 0,
            played_ms: 0,
            reported: false,
            announced: false,
        });
        self.tracks.back_mut().expect("just pushed")
    }

    fn sent_ms(&self, t: &Track) -> u64 {
        t.sent_samples * 1000 / self.encoder.output_rate().max(1) as u64
    }

    /// Ends the current item: pushes out the resampler's tail and whatever the encoder holds.
    fn end_item(&mut self) {
        let Some(item) = self.current.take() else {
            return;
        };
        if let Some(rs) = self.resampler.as_mut() {
            let mut tail = Vec::new();
            rs.flush(&mut tail);
            if !tail.is_empty() {
                let samples: Vec<i16> = tail.into_iter().map(f32_to_pcm16).collect();
                self.track(&item).sent_samples += samples.len() as u64;
                self.encoder.audio(&item, None, &samples, &mut self.frames);
            }
        }
        self.encoder.item_done(&mut self.frames);
    }

    fn on_audio(&mut self, a: SynthesizedAudio) {
        tracing::trace!(transport = self.label, item = %a.item_id, samples = a.audio.len(), rate = a.audio.sample_rate, "agent audio");
        if self.current.as_ref() != Some(&a.item_id) {
            self.end_item();
            self.current = Some(a.item_id.clone());
        }
        let out_rate = self.encoder.output_rate();
        // At the remote side's rate the chunk's own samples are encoded as they are (no copy).
        let resampled: Vec<i16>;
        let samples: &[i16] = if a.audio.sample_rate == out_rate {
            &a.audio.samples
        } else {
            let rs = match &mut self.resampler {
                Some(rs) if rs.in_rate() == a.audio.sample_rate && rs.out_rate() == out_rate => rs,
                slot => match MonoResampler::new(a.audio.sample_rate, out_rate) {
                    Ok(rs) => slot.insert(rs),
                    Err(e) => {
                        self.context.publish(ErrorEvent::new(self.label, e));
                        return;
                    }
                },
            };
            let mut out = Vec::new();
            rs.process_i16(&a.audio.samples, &mut out);
            resampled = out.into_iter().map(f32_to_pcm16).collect();
            &resampled
        };
        let track = self.track(&a.item_id);
        track.sent_samples += samples.len() as u64;
        track.reported = false;
        if track.response_id.is_none() {
            track.response_id = a.response_id.clone();
        }
        if !samples.is_empty() {
            self.encoder.audio(
                &a.item_id,
                a.response_id.as_ref(),
                samples,
                &mut self.frames,
            );
        }
    }

    fn on_interrupted(&mut self, i: &Interrupted, ctx: &mut Context<Self>) {
        self.current = None;
        if let Some(rs) = self.resampler.as_mut() {
            rs.reset();
        }
        self.encoder
            .interrupted(i.item_id.as_ref(), &mut self.frames);
        self.flush_frames();
        if self.encoder.immediate_cut() {
            self.resolve_cut();
        } else if self.waiting_cut.is_none() {
            self.waiting_cut = Some(ctx.run_later(CUT_REPORT_TIMEOUT, |this, _| {
                this.waiting_cut = None;
                tracing::debug!(
                    transport = this.label,
                    "no played report after the cut; using the last known position"
                );
                this.resolve_cut();
            }));
        }
    }

    /// Reports every item that was cut short with the position the listener reached.
    fn resolve_cut(&mut self) {
        let rate = self.encoder.output_rate().max(1) as u64;
        let mut reports = Vec::new();
        for t in self
            .tracks
            .iter_mut()
            .filter(|t| !t.reported && t.sent_samples > 0)
        {
            t.reported = true;
            let sent_ms = t.sent_samples * 1000 / rate;
            reports.push(PlaybackStopped {
                item_id: t.item.clone(),
                played_ms: t.played_ms.min(sent_ms),
                interrupted: true,
            });
        }
        for r in reports {
            tracing::debug!(transport = self.label, item = %r.item_id, played_ms = r.played_ms, "playback cut");
            self.context.publish(r);
        }
    }

    fn on_played(
        &mut self,
        item: Option<Id>,
        played_ms: u64,
        state: PlayState,
        ctx: &mut Context<Self>,
    ) {
        if let Some(item) = item {
            let known = self.tracks.iter().any(|t| t.item == item);
            if known {
                let t = self.track(&item);
                t.played_ms = t.played_ms.max(played_ms);
                let started = (t.played_ms > 0 && !t.announced).then(|| {
                    // The remote listener has heard the first of this item.
                    t.announced = true;
                    AudioPlaybackStarted {
                        item_id: item.clone(),
                        response_id: t.response_id.clone(),
                    }
                });
                if let Some(started) = started {
                    self.context.publish(started);
                }
                let reported = self.track(&item).reported;
                if state == PlayState::Drained && !reported && self.current.as_ref() != Some(&item)
                {
                    let t = self.track(&item);
                    t.reported = true;
                    let stopped = PlaybackStopped {
                        item_id: item.clone(),
                        played_ms: t.played_ms,
                        interrupted: false,
                    };
                    self.context.publish(stopped);
                }
            }
        }
        if state == PlayState::Flushed {
            if let Some(h) = self.waiting_cut.take() {
                ctx.cancel_future(h);
            }
            self.resolve_cut();
        }
    }
}

impl<E: Encoder> Actor for RemotePlayer<E> {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Context<Self>) {
        if let Some(id) = self.sub.take() {
            self.context.unsubscribe(id);
        }
        // The remote side left mid-answer: what it heard is all it will hear.
        self.resolve_cut();
    }
}

impl<E: Encoder> Handler<LiveEvent> for RemotePlayer<E> {
    type Result = ();
    fn handle(&mut self, event: LiveEvent, ctx: &mut Context<Self>) {
        match event {
            LiveEvent::SynthesizedAudio(a) => {
                let origin = a.audio.origin;
                self.on_audio(a);
                self.flush_frames();
                if let (Some(origin), Ok(mut l)) = (origin, self.latency.lock()) {
                    l.record(origin.elapsed());
                }
            }
            LiveEvent::Interrupted(i) => {
                self.on_interrupted(&i, ctx);
                self.encoder
                    .event(&LiveEvent::Interrupted(i), &mut self.frames);
            }
            LiveEvent::ResponseDone(r) => {
                self.end_item();
                self.encoder
                    .event(&LiveEvent::ResponseDone(r), &mut self.frames);
            }
            LiveEvent::SessionClosed(c) => {
                self.end_item();
                let error = c.error.clone();
                self.encoder
                    .event(&LiveEvent::SessionClosed(c), &mut self.frames);
                self.flush_frames();
                let (code, reason) = match error {
                    Some(e) => (1011, format!("the agent's session ended: {e}")),
                    None => (1000, "the agent's session ended".to_owned()),
                };
                self.recorder.do_send(CloseConnection { code, reason });
            }
            other => self.encoder.event(&other, &mut self.frames),
        }
        self.flush_frames();
    }
}

impl<E: Encoder> Handler<Played> for RemotePlayer<E> {
    type Result = ();
    fn handle(&mut self, p: Played, ctx: &mut Context<Self>) {
        self.on_played(p.item_id, p.played_ms, p.state, ctx);
    }
}

impl<E: Encoder> Handler<MarkEcho> for RemotePlayer<E> {
    type Result = ();
    fn handle(&mut self, m: MarkEcho, ctx: &mut Context<Self>) {
        if let Some((item, ms, drained)) = self.encoder.mark(&m.0) {
            let state = if drained {
                PlayState::Drained
            } else {
                PlayState::Playing
            };
            self.on_played(Some(item), ms, state, ctx);
        }
    }
}

impl<E: Encoder> Handler<SetRates> for RemotePlayer<E> {
    type Result = ();
    fn handle(&mut self, r: SetRates, _: &mut Context<Self>) {
        if self.encoder.set_rates(r.0, r.1) {
            self.resampler = None;
        }
    }
}

impl<E: Encoder> Handler<StopPlayer> for RemotePlayer<E> {
    type Result = ();
    fn handle(&mut self, _: StopPlayer, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl<E: Encoder> RemotePlayer<E> {
    /// Milliseconds of `item` sent so far (for tests and stats).
    pub fn sent_ms_of(&self, item: &str) -> Option<u64> {
        self.tracks
            .iter()
            .find(|t| &*t.item == item)
            .map(|t| self.sent_ms(t))
    }
}
