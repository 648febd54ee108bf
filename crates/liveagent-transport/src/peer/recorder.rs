//! [`RemoteRecorder`]: reads one remote side and publishes what it says into its conversation.

use super::*;

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
    /// The decoder's output for the message being handled, reused for every message.
    inbound: Vec<Inbound>,
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
    /// Starts the connection's actors for an upgraded WebSocket (`response` and `stream`
    /// from `actix_ws::handle`); returns the response to send, whose body writes what the
    /// actors queue.
    pub(crate) fn start(
        hub: Hub,
        permit: Permit,
        setup: PeerSetup<D, E>,
        response: HttpResponse,
        stream: actix_ws::MessageStream,
    ) -> HttpResponse {
        let limits = hub.limits.clone();
        let (tx, response) = WsTx::attach(response, limits.max_queued_frames);
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
            inbound: Vec::new(),
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
        response
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
        // An eighth of the shortest timeout (1 s with the defaults): precise enough for
        // timeouts of seconds, and one timer wakeup per connection per second instead of
        // four (500 connections on one core: 500 wakeups a second, not 2000).
        let limits = &self.hub.limits;
        let every = (limits.start_timeout.min(limits.idle_timeout) / 8)
            .clamp(Duration::from_millis(20), Duration::from_secs(1));
        ctx.run_interval(every, |this, ctx| this.check_timeouts(ctx));
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
        let mut items = std::mem::take(&mut self.inbound);
        items.clear();
        let decoded = match msg {
            Ok(AggregatedMessage::Text(t)) => {
                self.decoder.decode_into(WireIn::Text(&t), &mut items)
            }
            Ok(AggregatedMessage::Binary(b)) => {
                self.decoder.decode_into(WireIn::Binary(&b), &mut items)
            }
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
            Ok(()) => {
                for item in items.drain(..) {
                    if self.closing {
                        break;
                    }
                    self.on_inbound(item, ctx);
                }
                // Back for the next message (its allocation is kept).
                items.clear();
                self.inbound = items;
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
