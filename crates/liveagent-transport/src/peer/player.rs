//! [`RemotePlayer`]: plays the conversation's audio to one remote side and reports what it heard.

use super::*;

#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Played {
    pub(super) item_id: Option<Id>,
    pub(super) played_ms: u64,
    pub(super) state: PlayState,
}

#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct MarkEcho(pub(super) String);

#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct SetRates(pub(super) u32, pub(super) u32);

#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct StopPlayer;

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
    pub(super) fn start(
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
        if a.audio.sample_rate == out_rate {
            // At the remote side's rate the chunk's own samples are the frame: shared with
            // the encoder, not copied.
            let track = self.track(&a.item_id);
            track.sent_samples += a.audio.samples.len() as u64;
            track.reported = false;
            if track.response_id.is_none() {
                track.response_id = a.response_id.clone();
            }
            if !a.audio.samples.is_empty() {
                self.encoder.audio_shared(
                    &a.item_id,
                    a.response_id.as_ref(),
                    &a.audio.samples,
                    &mut self.frames,
                );
            }
            return;
        }
        let samples: Vec<i16> = {
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
            out.into_iter().map(f32_to_pcm16).collect()
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
                &samples,
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
