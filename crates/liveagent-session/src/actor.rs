//! [`SessionActor`]: the supervised actor between a provider protocol and the event bus.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix::io::WriteHandler;
use actix::prelude::*;
use actix_http::ws::Item;
use awc::error::WsProtocolError;
use awc::ws::{CloseCode, CloseReason, Frame, Message as WsMessage};
use bytes::BytesMut;
use futures_util::stream::{SplitSink, StreamExt};
use liveagent_core::{
    AudioDropped, ByteString, ConversationContext, ErrorEvent, LatencySamples, LiveError,
    LiveEvent, ModelMessageChunk, Outbox, PlaybackStopped, ProtocolSignal, ProtocolTask,
    RealtimeProtocol, RecordedAudio, SessionClosed, SessionCommand, SessionControl,
    SessionReconnected, SessionReconnecting, SubscriberId, TaskId, ToolResult, UserText, WireFrame,
};

use liveagent_core::probe::{MicProbe, MicStage};

use crate::buffer::PendingCommands;
use crate::connect::{connect, WsFramed};
use crate::keepalive::{spawn_ticker, CountingSink, Liveness, Tick};
use crate::writer::FrameWriter;
use crate::SessionOptions;

type Writer = FrameWriter<WsMessage, CountingSink<SplitSink<WsFramed, WsMessage>>>;

/// How to end a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CloseHow {
    /// We close: send Close, wait for the provider's Close (at most `close_timeout`).
    Handshake,
    /// The provider sent Close: answer it, then drop the socket once it is written.
    Answer,
    /// The connection is broken or dead: drop it now.
    Abort,
}

/// Where a session is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// Waiting before a (re)connection attempt.
    Waiting,
    /// Opening the socket.
    Connecting,
    /// Socket open, provider handshake in progress.
    Handshaking,
    /// Commands flow.
    Ready,
    /// Ended for good (stopped, or a fatal error).
    Closed,
}

/// A snapshot of a session, from [`SessionHandle::status`](crate::SessionHandle::status).
#[derive(Clone, Debug)]
pub struct SessionStatus {
    /// The current state.
    pub state: SessionState,
    /// Connections that became ready after a drop.
    pub reconnects: u32,
    /// Commands waiting for the session to be ready.
    pub pending_commands: usize,
    /// Frames received.
    pub frames_in: u64,
    /// Frames sent.
    pub frames_out: u64,
    /// The error that closed the session, if any.
    pub error: Option<LiveError>,
    /// Microphone audio from capture until its frame was handed to the socket writer (only
    /// with [`SessionOptions::latency_samples`](crate::SessionOptions::latency_samples)).
    pub mic_to_socket: LatencySamples,
}

/// Ends the session: closes the socket and publishes `SessionClosed`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopSession;

impl std::fmt::Debug for StopSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StopSession")
    }
}

#[derive(Message)]
#[rtype(result = "SessionStatus")]
pub(crate) struct GetStatus;

/// The provider session actor. Start it with [`start_session`](crate::start_session).
pub struct SessionActor {
    protocol: Box<dyn RealtimeProtocol>,
    context: ConversationContext,
    options: SessionOptions,
    state: SessionState,
    writer: Option<Writer>,
    connected: bool,
    pending: PendingCommands,
    /// Consecutive failed attempts since the session was last ready.
    attempt: u32,
    starts: u64,
    has_been_ready: bool,
    reconnects: u32,
    outage_started: Option<Instant>,
    connected_at: Option<Instant>,
    renewal: Option<(String, Instant)>,
    last_drop_reason: String,
    fatal: Option<LiveError>,
    stopping: bool,
    subscriptions: Vec<SubscriberId>,
    fragments: Option<(bool, BytesMut)>,
    frames_in: u64,
    frames_out: u64,
    stop_when_flushed: bool,
    mic_to_socket: LatencySamples,
    liveness: Option<Liveness>,
    /// We sent Close and wait for the provider's (then the actor stops).
    closing: bool,
    /// The provider sent Close on the current connection.
    peer_closed: bool,
    /// The secret of the current connection, to redact what the provider sends.
    secret: Option<liveagent_core::Secret>,
    /// Callers of `stop_and_wait`, answered once the close handshake is over.
    stop_waiters: Vec<tokio::sync::oneshot::Sender<()>>,
    /// The protocol's running tasks (see `ProtocolTask`).
    tasks: HashMap<TaskId, SpawnHandle>,
    /// What the model said in the response in progress (`ResponseDone::text`).
    response_words: String,
    /// True while a mailbox handler runs: frames written then need no wake-up of the
    /// actor (see [`FrameWriter::write_in_mailbox`]).
    in_mailbox: bool,
}

impl SessionActor {
    pub(crate) fn new(
        protocol: Box<dyn RealtimeProtocol>,
        context: ConversationContext,
        options: SessionOptions,
        subscriptions: Vec<SubscriberId>,
    ) -> Self {
        let pending = PendingCommands::new(options.max_buffered_audio);
        let mic_to_socket = LatencySamples::new(options.latency_samples);
        SessionActor {
            protocol,
            context,
            options,
            state: SessionState::Waiting,
            writer: None,
            connected: false,
            pending,
            attempt: 0,
            starts: 0,
            has_been_ready: false,
            reconnects: 0,
            outage_started: None,
            connected_at: None,
            renewal: None,
            last_drop_reason: String::new(),
            fatal: None,
            stopping: false,
            subscriptions,
            fragments: None,
            frames_in: 0,
            frames_out: 0,
            stop_when_flushed: false,
            mic_to_socket,
            liveness: None,
            closing: false,
            peer_closed: false,
            secret: None,
            stop_waiters: Vec::new(),
            tasks: HashMap::new(),
            response_words: String::new(),
            in_mailbox: false,
        }
    }

    fn source(&self) -> &'static str {
        self.protocol.provider()
    }

    fn open_connection(&mut self, ctx: &mut Context<Self>) {
        if self.stopping || self.fatal.is_some() {
            return;
        }
        if !self.protocol.uses_socket() {
            // No session socket (the cascade): the protocol does its I/O through tasks.
            self.connected_at = Some(Instant::now());
            self.state = SessionState::Handshaking;
            let mut out = Outbox::new();
            self.protocol.on_open(self.has_been_ready, &mut out);
            return self.flush(out, ctx);
        }
        let request = match self.protocol.connect_request() {
            Ok(r) => r,
            Err(e) => return self.fail(e, ctx),
        };
        self.state = SessionState::Connecting;
        self.secret = request.secret.clone();
        tracing::debug!(provider = self.source(), request = ?request, "connecting");
        let fut = connect(
            request,
            self.options.connect_timeout,
            self.options.max_frame_size,
            self.options.tls_roots.clone(),
            self.options.tcp_nodelay,
        );
        ctx.spawn(fut.into_actor(self).map(|result, act, ctx| match result {
            Ok(framed) => act.on_connected(framed, ctx),
            Err(e) if e.is_permanent() => act.fail(e, ctx),
            Err(e) => {
                tracing::warn!(provider = act.source(), error = %e, "connection attempt failed");
                act.context
                    .publish(ErrorEvent::new(act.source(), e.clone()));
                act.last_drop_reason = format!("connect failed: {}", e.message);
                ctx.stop(); // the supervisor restarts us; `started` backs off and retries
            }
        }));
    }

    fn on_connected(&mut self, framed: WsFramed, ctx: &mut Context<Self>) {
        if self.stopping || self.fatal.is_some() {
            return;
        }
        let (sink, stream) = framed.split();
        let flushed = std::rc::Rc::new(std::cell::Cell::new(0));
        self.liveness = Some(Liveness::new(flushed.clone()));
        self.closing = false;
        self.peer_closed = false;
        self.writer = Some(FrameWriter::new(CountingSink::new(sink, flushed), ctx));
        ctx.add_stream(stream);
        self.connected = true;
        self.connected_at = Some(Instant::now());
        self.state = SessionState::Handshaking;
        tracing::info!(
            provider = self.source(),
            reconnect = self.has_been_ready,
            "connected"
        );
        let mut out = Outbox::new();
        self.protocol.on_open(self.has_been_ready, &mut out);
        self.flush(out, ctx);
    }

    /// Sends frames, publishes events (through the middleware) and acts on signals.
    fn flush(&mut self, out: Outbox, ctx: &mut Context<Self>) {
        let Outbox {
            frames,
            events,
            signals,
            tasks,
            cancelled,
        } = out;
        for id in cancelled {
            if let Some(handle) = self.tasks.remove(&id) {
                ctx.cancel_future(handle);
            }
        }
        for task in tasks {
            self.start_task(task, ctx);
        }
        for frame in frames {
            self.write(frame);
        }
        for event in events {
            // What the model says arrives as `ModelMessageChunk` in every output mode: the
            // transcript of its speech is mirrored there, marked as a transcript.
            let words = match &event {
                LiveEvent::OutputTranscriptChunk(t) => ModelMessageChunk::from_transcript(t),
                _ => None,
            };
            let mut event = event;
            match &mut event {
                // Belt and braces: whatever a protocol put in an error, the key never leaves.
                LiveEvent::ErrorEvent(e) if self.secret.is_some() => {
                    e.error.message = self.redact(&e.error.message);
                    if let Some(code) = e.error.code.as_mut() {
                        *code = self.redact(code);
                    }
                }
                LiveEvent::ModelMessageChunk(c) => push_words(&mut self.response_words, &c.text),
                LiveEvent::ResponseDone(done) => {
                    let said = std::mem::take(&mut self.response_words);
                    if done.text.is_none() && !said.trim().is_empty() {
                        done.text = Some(said.into());
                    }
                }
                _ => {}
            }
            if let Some(w) = &words {
                push_words(&mut self.response_words, &w.text);
            }
            self.publish(event);
            if let Some(words) = words {
                self.publish(words.into());
            }
        }
        for signal in signals {
            match signal {
                ProtocolSignal::Ready { resumed } => self.on_ready(resumed, ctx),
                ProtocolSignal::Reconnect { reason } => {
                    tracing::info!(provider = self.source(), %reason, "provider asked for a new connection");
                    if self.renewal.is_none() {
                        self.renewal = Some((reason, Instant::now()));
                    }
                    self.check_renewal(ctx);
                }
                ProtocolSignal::Fatal(e) => self.fail(e, ctx),
            }
        }
    }

    /// Runs a protocol task on this actor's context: its items and its end go back to the
    /// protocol, and what the protocol answers is flushed like any other step.
    fn start_task(&mut self, task: ProtocolTask, ctx: &mut Context<Self>) {
        use actix::fut::{ActorFutureExt, ActorStreamExt};
        let ProtocolTask { id, stream } = task;
        if let Some(old) = self.tasks.remove(&id) {
            ctx.cancel_future(old);
        }
        let fut = actix::fut::wrap_stream::<_, Self>(stream)
            .map(move |item, act, ctx| {
                let mut out = Outbox::new();
                act.protocol.on_task_item(id, item, &mut out);
                act.flush(out, ctx);
            })
            .finish()
            .map(move |_, act, ctx| {
                act.tasks.remove(&id);
                let mut out = Outbox::new();
                act.protocol.on_task_end(id, &mut out);
                act.flush(out, ctx);
            });
        let handle = ctx.spawn(fut);
        self.tasks.insert(id, handle);
    }

    fn publish(&self, event: LiveEvent) {
        let mut event = Some(event);
        for mw in &self.options.middleware {
            event = event.and_then(|e| mw.on_event(e));
        }
        if let Some(event) = event {
            self.context.publish(event);
        }
    }

    fn write(&mut self, frame: WireFrame) {
        if self.writer.is_none() || self.closing {
            tracing::debug!(
                provider = self.protocol.provider(),
                "frame dropped: not connected"
            );
            return;
        }
        let msg = match frame {
            WireFrame::Text(text) => WsMessage::Text(text),
            WireFrame::Binary(bytes) => WsMessage::Binary(bytes),
        };
        if self.send_ws(msg) {
            self.frames_out += 1;
        } else {
            tracing::debug!(
                provider = self.protocol.provider(),
                "frame dropped: socket closing"
            );
        }
    }

    /// Hands one WebSocket message to the writer; false when the socket is closing.
    fn send_ws(&mut self, msg: WsMessage) -> bool {
        let Some(writer) = self.writer.as_mut() else {
            return false;
        };
        let written = if self.in_mailbox {
            writer.write_in_mailbox(msg)
        } else {
            writer.write(msg)
        };
        if written.is_err() {
            return false;
        }
        if let Some(liveness) = self.liveness.as_mut() {
            liveness.on_write();
        }
        true
    }

    /// `text` (something the provider sent) with the API key redacted.
    fn redact(&self, text: &str) -> String {
        match &self.secret {
            Some(secret) => secret.redact(text),
            None => text.to_owned(),
        }
    }

    fn on_ready(&mut self, resumed: bool, ctx: &mut Context<Self>) {
        let was_ready_before = self.has_been_ready;
        self.state = SessionState::Ready;
        self.has_been_ready = true;
        if was_ready_before {
            if let Some(started) = self.outage_started.take() {
                self.reconnects += 1;
                self.context.publish(SessionReconnected {
                    attempt: self.attempt.max(1),
                    resumed,
                    outage_ms: started.elapsed().as_millis() as u64,
                });
            }
        }
        self.attempt = 0;
        self.report_dropped_audio();
        let pending: Vec<SessionCommand> = self.pending.drain().collect();
        if !pending.is_empty() {
            tracing::debug!(
                provider = self.source(),
                count = pending.len(),
                "sending commands held while not ready"
            );
        }
        for command in pending {
            if self.state != SessionState::Ready {
                // The connection went away while replaying: keep the rest for the next one.
                self.pending.push(command);
                continue;
            }
            let mut out = Outbox::new();
            self.protocol.on_command(command, &mut out);
            self.flush(out, ctx);
        }
    }

    fn report_dropped_audio(&mut self) {
        let dropped_us = self.pending.take_dropped_us();
        if dropped_us > 0 {
            tracing::warn!(
                provider = self.source(),
                dropped_ms = dropped_us / 1000,
                "microphone audio dropped while not connected"
            );
            self.context.publish(AudioDropped {
                source: self.source().into(),
                dropped_ms: dropped_us / 1000,
                reason: format!(
                    "the session was not connected and more than {} ms of microphone audio was waiting",
                    self.options.max_buffered_audio.as_millis()
                ),
            });
        }
    }

    fn command(&mut self, command: SessionCommand, ctx: &mut Context<Self>) {
        let mut command = Some(command);
        for mw in &self.options.middleware {
            command = command.and_then(|c| mw.on_command(c));
        }
        let Some(command) = command else { return };
        match self.state {
            SessionState::Ready => {
                let origin = match &command {
                    SessionCommand::Audio(chunk) => chunk.origin,
                    _ => None,
                };
                let mut out = Outbox::new();
                self.protocol.on_command(command, &mut out);
                self.flush(out, ctx);
                if let Some(origin) = origin {
                    self.mic_to_socket.record(origin.elapsed());
                }
            }
            SessionState::Closed => {
                if matches!(command, SessionCommand::ToolResult(_)) {
                    tracing::error!(
                        provider = self.source(),
                        ?command,
                        "tool result arrived after the session closed; it cannot be delivered"
                    );
                }
            }
            _ => self.pending.push(command),
        }
    }

    /// The socket is gone (closed by the peer, failed, or dropped by us), or we end it
    /// (`how`) to reconnect.
    fn connection_lost(&mut self, reason: String, ctx: &mut Context<Self>) {
        self.connection_ended(reason, CloseHow::Abort, ctx);
    }

    fn connection_ended(&mut self, reason: String, how: CloseHow, ctx: &mut Context<Self>) {
        if !self.connected {
            return;
        }
        self.connected = false;
        if self.state == SessionState::Ready {
            self.outage_started = Some(Instant::now());
        }
        tracing::warn!(provider = self.source(), %reason, "connection lost");
        self.last_drop_reason = reason;
        let mut out = Outbox::new();
        self.protocol.on_close(&mut out);
        out.frames.clear();
        self.flush(out, ctx);
        if self.state != SessionState::Closed {
            self.state = SessionState::Waiting;
            // The supervisor restarts us once the socket is closed; `started` reconnects.
            self.close_socket(how, ctx);
        }
    }

    /// Ends the session with an error retrying cannot fix.
    fn fail(&mut self, error: LiveError, ctx: &mut Context<Self>) {
        if self.state == SessionState::Closed {
            return;
        }
        tracing::error!(provider = self.source(), error = %error, "session failed");
        self.fatal = Some(error.clone());
        self.state = SessionState::Closed;
        self.unsubscribe();
        self.context
            .publish(ErrorEvent::fatal(self.source(), error.clone()));
        self.context.publish(SessionClosed {
            reason: error.to_string(),
            error: Some(error),
        });
        if self.connected {
            let mut out = Outbox::new();
            self.protocol.on_close(&mut out);
            out.frames.clear();
            out.signals.clear();
            self.flush(out, ctx);
            self.connected = false;
            self.close_socket(CloseHow::Handshake, ctx);
        } else {
            ctx.stop();
        }
    }

    /// Ends the socket `how`, then stops the actor (the supervisor restarts it unless the
    /// session is over):
    ///
    /// - [`CloseHow::Handshake`]: sends Close and keeps reading until the provider's Close
    ///   (or the end of the stream), at most [`SessionOptions::close_timeout`];
    /// - [`CloseHow::Answer`]: answers the provider's Close and stops once it is written
    ///   (at most `close_timeout`);
    /// - [`CloseHow::Abort`]: stops at once.
    fn close_socket(&mut self, how: CloseHow, ctx: &mut Context<Self>) {
        self.connected = false;
        let how = match how {
            CloseHow::Handshake if self.peer_closed => CloseHow::Answer,
            how => how,
        };
        if how == CloseHow::Abort || self.writer.is_none() {
            if let Some(mut writer) = self.writer.take() {
                writer.close();
            }
            ctx.stop();
            return;
        }
        let close = WsMessage::Close(Some(CloseReason::from(CloseCode::Normal)));
        if !self.send_ws(close) {
            self.writer = None;
            ctx.stop();
            return;
        }
        match how {
            CloseHow::Answer => {
                // Not `FrameWriter::close`: actix-codec's `Framed::close` flushes the socket
                // but not the frames still in its own write buffer, so the Close queued just
                // above was never sent (the provider saw a bare EOF). Instead: stop once
                // everything handed to the writer is flushed.
                self.stop_when_flushed = true;
                ctx.run_interval(Duration::from_millis(5), |act, ctx| {
                    let flushed = act.liveness.as_ref().is_none_or(Liveness::all_flushed);
                    if act.stop_when_flushed && flushed {
                        act.finish_close(ctx);
                    }
                });
            }
            _ => self.closing = true,
        }
        ctx.run_later(self.options.close_timeout, |act, ctx| {
            if act.closing || act.stop_when_flushed {
                tracing::debug!(
                    provider = act.source(),
                    "the provider did not complete the close handshake in time"
                );
                act.finish_close(ctx);
            }
        });
    }

    /// The close handshake is over (or timed out): drop the socket and stop.
    fn finish_close(&mut self, ctx: &mut Context<Self>) {
        self.closing = false;
        self.stop_when_flushed = false;
        self.writer = None;
        ctx.stop();
    }

    fn unsubscribe(&mut self) {
        for id in self.subscriptions.drain(..) {
            self.context.unsubscribe(id);
        }
    }

    fn check_renewal(&mut self, ctx: &mut Context<Self>) {
        if self.state != SessionState::Ready {
            return;
        }
        if self.renewal.is_none() {
            if let (Some(age), Some(at)) = (self.protocol.max_connection_age(), self.connected_at) {
                if at.elapsed() >= age {
                    self.renewal = Some(("connection age limit".into(), Instant::now()));
                }
            }
        }
        let Some((reason, since)) = self.renewal.clone() else {
            return;
        };
        if self.protocol.is_idle() || since.elapsed() >= self.options.max_renewal_wait {
            self.renewal = None;
            tracing::info!(provider = self.source(), %reason, "renewing the connection");
            self.connection_ended(
                format!("renewing the connection: {reason}"),
                CloseHow::Handshake,
                ctx,
            );
        }
    }

    /// How often [`tick`](Self::tick) checks the deadlines: a quarter of the shortest one,
    /// between 50 ms and 1 s (1 s with the default options: one timer wake-up per session
    /// per second instead of four).
    fn tick_period(&self) -> Duration {
        let o = &self.options;
        let shortest = [
            o.ping_interval,
            o.idle_timeout,
            o.write_timeout,
            o.handshake_timeout,
        ]
        .into_iter()
        .filter(|d| !d.is_zero())
        .min()
        .unwrap_or(Duration::from_secs(1));
        (shortest / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.connected && !self.closing {
            if let Some(liveness) = self.liveness.as_mut() {
                let dead = liveness.check(self.options.idle_timeout, self.options.write_timeout);
                let ping = dead.is_none() && liveness.ping_due(self.options.ping_interval);
                if let Some(dead) = dead {
                    let reason = dead.reason();
                    tracing::warn!(provider = self.source(), %reason, "connection is dead");
                    self.context.publish(ErrorEvent::new(
                        self.source(),
                        LiveError::connection(reason.clone()),
                    ));
                    return self.connection_lost(reason, ctx);
                }
                if ping {
                    self.send_ws(WsMessage::Ping(bytes::Bytes::from_static(b"liveagent")));
                }
            }
        }
        match self.state {
            SessionState::Handshaking => {
                if self
                    .connected_at
                    .is_some_and(|at| at.elapsed() > self.options.handshake_timeout)
                {
                    let reason = format!(
                        "the provider did not complete the handshake within {} ms",
                        self.options.handshake_timeout.as_millis()
                    );
                    self.context.publish(ErrorEvent::new(
                        self.source(),
                        LiveError::connection(reason.clone()),
                    ));
                    self.connection_lost(reason, ctx);
                }
            }
            SessionState::Ready => self.check_renewal(ctx),
            _ => self.report_dropped_audio(),
        }
    }

    fn on_frame(&mut self, frame: WireFrame, ctx: &mut Context<Self>) {
        self.frames_in += 1;
        let read_at = Instant::now();
        let mut out = Outbox::new();
        self.protocol.on_frame(frame, &mut out);
        for event in &mut out.events {
            if let LiveEvent::SynthesizedAudio(a) = event {
                a.audio.origin.get_or_insert(read_at);
            }
        }
        self.flush(out, ctx);
    }

    fn on_fragment(&mut self, item: Item, ctx: &mut Context<Self>) {
        let (last, bytes) = match item {
            Item::FirstText(b) => {
                self.fragments = Some((true, BytesMut::new()));
                (false, b)
            }
            Item::FirstBinary(b) => {
                self.fragments = Some((false, BytesMut::new()));
                (false, b)
            }
            Item::Continue(b) => (false, b),
            Item::Last(b) => (true, b),
        };
        let max = self.options.max_frame_size;
        let Some((_, buf)) = self.fragments.as_mut() else {
            let error = LiveError::protocol("continuation frame without a first fragment");
            self.publish(ErrorEvent::new(self.source(), error).into());
            return;
        };
        if buf.len() + bytes.len() > max {
            self.fragments = None;
            let reason = format!("fragmented message larger than {max} bytes");
            self.publish(
                ErrorEvent::new(self.source(), LiveError::protocol(reason.clone())).into(),
            );
            return self.connection_lost(reason, ctx);
        }
        buf.extend_from_slice(&bytes);
        if last {
            if let Some((is_text, buf)) = self.fragments.take() {
                if is_text {
                    self.on_text(buf.freeze(), ctx);
                } else {
                    self.on_frame(WireFrame::Binary(buf.freeze()), ctx);
                }
            }
        }
    }

    /// A text frame: its bytes stay in the buffer they were read into (no copy); their
    /// UTF-8 is checked here, once (the protocol parses the `str` without checking again).
    fn on_text(&mut self, bytes: bytes::Bytes, ctx: &mut Context<Self>) {
        match ByteString::try_from(bytes) {
            Ok(text) => self.on_frame(WireFrame::Text(text), ctx),
            Err(_) => {
                let error = LiveError::protocol("received a text frame that is not UTF-8");
                self.publish(ErrorEvent::new(self.source(), error).into());
            }
        }
    }
}

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.stopping || self.fatal.is_some() {
            self.state = SessionState::Closed;
            return;
        }
        ctx.set_mailbox_capacity(256);
        if self.starts == 0 {
            // Once per session: the ticker outlives the supervisor's restarts.
            spawn_ticker(ctx.address().downgrade(), self.tick_period());
        }
        self.starts += 1;
        if self.starts == 1 {
            self.open_connection(ctx);
            return;
        }
        self.attempt += 1;
        if self.options.reconnect.exhausted(self.attempt) {
            let error = LiveError::connection(format!(
                "gave up reconnecting after {} attempts; last problem: {}",
                self.attempt - 1,
                self.last_drop_reason
            ));
            return self.fail(error, ctx);
        }
        let delay = self.options.reconnect.delay(self.attempt);
        if self.outage_started.is_none() {
            self.outage_started = Some(Instant::now());
        }
        self.state = SessionState::Waiting;
        self.context.publish(SessionReconnecting {
            attempt: self.attempt,
            reason: self.last_drop_reason.clone(),
            delay_ms: delay.as_millis() as u64,
        });
        ctx.run_later(delay, |act, ctx| act.open_connection(ctx));
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        if self.stopping || self.fatal.is_some() {
            self.answer_stop_waiters();
        }
    }
}

impl Handler<Tick> for SessionActor {
    type Result = ();
    fn handle(&mut self, _: Tick, ctx: &mut Context<Self>) {
        self.in_mailbox(|act| act.tick(ctx));
    }
}

impl SessionActor {
    /// Runs `f` as (part of) a mailbox handler: the frames it writes are handed to the
    /// socket in the same poll of the actor, without waking it again.
    fn in_mailbox<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        self.in_mailbox = true;
        let result = f(self);
        self.in_mailbox = false;
        result
    }

    fn answer_stop_waiters(&mut self) {
        for waiter in self.stop_waiters.drain(..) {
            let _ = waiter.send(());
        }
    }
}

impl Supervised for SessionActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        // The old context dropped its futures, tasks included.
        self.tasks.clear();
        self.writer = None;
        self.connected = false;
        self.fragments = None;
        self.stop_when_flushed = false;
        self.closing = false;
        self.liveness = None;
    }
}

impl WriteHandler<WsProtocolError> for SessionActor {
    fn error(&mut self, err: WsProtocolError, _: &mut Context<Self>) -> Running {
        tracing::warn!(provider = self.source(), error = %err, "websocket write failed");
        Running::Continue
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        if self.stop_when_flushed {
            self.finish_close(ctx);
        }
    }
}

impl StreamHandler<Result<Frame, WsProtocolError>> for SessionActor {
    fn handle(&mut self, item: Result<Frame, WsProtocolError>, ctx: &mut Context<Self>) {
        if !self.connected {
            // After our Close, only the provider's Close (or an error) matters.
            if self.closing && matches!(item, Ok(Frame::Close(_)) | Err(_)) {
                self.finish_close(ctx);
            }
            return;
        }
        if let Some(liveness) = self.liveness.as_mut() {
            liveness.on_read();
        }
        match item {
            Ok(Frame::Text(bytes)) => self.on_text(bytes, ctx),
            Ok(Frame::Binary(bytes)) => self.on_frame(WireFrame::Binary(bytes), ctx),
            Ok(Frame::Continuation(item)) => self.on_fragment(item, ctx),
            Ok(Frame::Ping(bytes)) => {
                self.send_ws(WsMessage::Pong(bytes));
            }
            Ok(Frame::Pong(_)) => {}
            Ok(Frame::Close(reason)) => {
                self.peer_closed = true;
                let code = reason.as_ref().map(|r| u16::from(r.code));
                // The provider's words: redacted before they reach a log or an error.
                let description = reason
                    .as_ref()
                    .and_then(|r| r.description.as_deref())
                    .map(|d| self.redact(d))
                    .unwrap_or_default();
                // Let the protocol classify the close (Gemini reports errors this way).
                let mut out = Outbox::new();
                self.protocol.on_close_frame(code, &description, &mut out);
                self.flush(out, ctx);
                if self.state == SessionState::Closed {
                    return; // the protocol found it fatal; the session is already closed
                }
                let reason = match code {
                    Some(code) if description.is_empty() => {
                        format!("closed by the provider (code {code})")
                    }
                    Some(code) => format!("closed by the provider (code {code}: {description})"),
                    None => "closed by the provider".to_owned(),
                };
                self.connection_ended(reason, CloseHow::Answer, ctx);
            }
            Err(e) => {
                let text = self.redact(&e.to_string());
                let error = LiveError::protocol(format!("websocket error: {text}"));
                self.publish(ErrorEvent::new(self.source(), error).into());
                self.connection_lost(format!("websocket error: {text}"), ctx);
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        if self.closing {
            return self.finish_close(ctx);
        }
        self.connection_lost("connection closed".into(), ctx);
    }
}

/// Subscribes the session actor at `addr` to the commands it serves.
pub(crate) fn subscribe_commands(
    context: &ConversationContext,
    addr: Addr<SessionActor>,
) -> Vec<SubscriberId> {
    vec![
        context.subscribe::<RecordedAudio>(addr.clone().recipient()),
        context.subscribe::<UserText>(addr.clone().recipient()),
        context.subscribe::<SessionControl>(addr.clone().recipient()),
        context.subscribe::<ToolResult>(addr.clone().recipient()),
        context.subscribe::<PlaybackStopped>(addr.recipient()),
    ]
}

impl Handler<RecordedAudio> for SessionActor {
    type Result = ();
    fn handle(&mut self, msg: RecordedAudio, ctx: &mut Context<Self>) {
        if MicProbe::enabled() {
            let key = MicProbe::key(&msg.audio.samples);
            MicProbe::mark(key, MicStage::Session);
            let frames = self.frames_out;
            self.in_mailbox(|act| act.command(SessionCommand::Audio(msg.audio), ctx));
            if self.frames_out != frames {
                MicProbe::handed_to_writer(key);
            }
            return;
        }
        self.in_mailbox(|act| act.command(SessionCommand::Audio(msg.audio), ctx));
    }
}

impl Handler<UserText> for SessionActor {
    type Result = ();
    fn handle(&mut self, msg: UserText, ctx: &mut Context<Self>) {
        self.in_mailbox(|act| act.command(SessionCommand::Text(msg), ctx));
    }
}

impl Handler<SessionControl> for SessionActor {
    type Result = ();
    fn handle(&mut self, msg: SessionControl, ctx: &mut Context<Self>) {
        self.in_mailbox(|act| act.command(SessionCommand::Control(msg.command), ctx));
    }
}

impl Handler<ToolResult> for SessionActor {
    type Result = ();
    fn handle(&mut self, msg: ToolResult, ctx: &mut Context<Self>) {
        self.in_mailbox(|act| act.command(SessionCommand::ToolResult(msg), ctx));
    }
}

impl Handler<PlaybackStopped> for SessionActor {
    type Result = ();
    fn handle(&mut self, msg: PlaybackStopped, ctx: &mut Context<Self>) {
        self.in_mailbox(|act| act.command(SessionCommand::PlaybackStopped(msg), ctx));
    }
}

impl Handler<StopSession> for SessionActor {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: StopSession, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.stop_waiters.push(tx);
        if !self.stopping {
            self.stop(ctx);
        }
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

impl SessionActor {
    fn stop(&mut self, ctx: &mut Context<Self>) {
        self.stopping = true;
        self.unsubscribe();
        let was_connected = self.connected;
        if was_connected {
            let mut out = Outbox::new();
            self.protocol.on_close(&mut out);
            out.frames.clear();
            out.signals.clear();
            self.flush(out, ctx);
        }
        if self.state != SessionState::Closed {
            self.state = SessionState::Closed;
            let pending_results = self
                .pending
                .drain()
                .filter(|c| matches!(c, SessionCommand::ToolResult(_)))
                .count();
            if pending_results > 0 {
                tracing::error!(
                    provider = self.source(),
                    pending_results,
                    "session stopped with tool results it could not deliver"
                );
            }
            self.context.publish(SessionClosed {
                reason: "stopped by the application".into(),
                error: None,
            });
        }
        if was_connected {
            self.close_socket(CloseHow::Handshake, ctx);
        } else if !self.closing && !self.stop_when_flushed {
            ctx.stop();
        }
    }
}

impl Handler<GetStatus> for SessionActor {
    type Result = MessageResult<GetStatus>;
    fn handle(&mut self, _: GetStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(SessionStatus {
            state: self.state,
            reconnects: self.reconnects,
            pending_commands: self.pending.len(),
            frames_in: self.frames_in,
            frames_out: self.frames_out,
            error: self.fatal.clone(),
            mic_to_socket: self.mic_to_socket.clone(),
        })
    }
}

/// Most bytes of a response's words collected for `ResponseDone.text` (the providers cap each
/// item's text; this bounds a response with very many items).
const MAX_RESPONSE_WORDS: usize = 256 * 1024;

fn push_words(words: &mut String, text: &str) {
    let room = MAX_RESPONSE_WORDS.saturating_sub(words.len());
    words.push_str(liveagent_core::limits::cut_to(text, room));
}
