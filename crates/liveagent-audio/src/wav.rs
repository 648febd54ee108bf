//! File-backed peers for headless use and tests: [`WavSource`] (a microphone that reads a WAV
//! file) and [`WavSink`] (a speaker that writes a WAV file).

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use actix::prelude::*;
use liveagent_core::{
    AudioChunk, ConversationContext, EventFilter, Interrupted, LiveError, LiveEvent, Publish,
    RecordedAudio, Subscribe, SubscriberId, SynthesizedAudio,
};

use crate::convert::{f32_to_pcm16, MonoResampler};
use crate::device::audio_err;
use crate::playback::{PlaybackQueue, QueueOptions, Renderer, DEFAULT_MAX_QUEUED_BEYOND_PREBUFFER};
use crate::{GetPlaybackStats, StopAudio};

/// Reads a WAV file of any rate, channel count and sample format (PCM 8/16/24/32 bit or
/// float) as mono PCM16 at `rate`.
pub fn read_wav_mono(path: &Path, rate: u32) -> Result<Vec<i16>, LiveError> {
    let mut reader = hound::WavReader::open(path)
        .map_err(|e| audio_err(format!("cannot open {}: {e}", path.display())))?;
    let spec = reader.spec();
    let channels = spec.channels.max(1) as usize;
    let bad = |e: hound::Error| audio_err(format!("cannot read {}: {e}", path.display()));
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader
            .samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(bad)?,
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()
                .map_err(bad)?
        }
    };
    let mono: Vec<f32> = interleaved
        .chunks_exact(channels)
        .map(|f| f.iter().sum::<f32>() / channels as f32)
        .collect();
    let mut rs = MonoResampler::new(spec.sample_rate, rate)?;
    let mut out =
        Vec::with_capacity(mono.len() * rate as usize / spec.sample_rate.max(1) as usize + 16);
    rs.process(&mono, &mut out);
    rs.flush(&mut out);
    Ok(out.into_iter().map(f32_to_pcm16).collect())
}

/// Builds and starts a [`WavSource`]; from [`WavSource::new`].
#[derive(Debug)]
pub struct WavSourceBuilder {
    context: ConversationContext,
    path: PathBuf,
    realtime: bool,
    chunk_ms: u32,
    pub(crate) pad_ms: u32,
    rate: Option<u32>,
}

impl WavSourceBuilder {
    /// The rate audio is published at.
    pub(crate) fn publish_rate(&self) -> u32 {
        self.rate.unwrap_or(self.context.input_sample_rate())
    }

    pub(crate) fn context_ref(&self) -> &ConversationContext {
        &self.context
    }

    /// The same source, publishing into `context`.
    pub(crate) fn with_context(mut self, context: ConversationContext) -> Self {
        self.context = context;
        self
    }

    /// Publish in real time (default true), or as fast as the bus accepts the chunks.
    pub fn realtime(mut self, realtime: bool) -> Self {
        self.realtime = realtime;
        self
    }

    /// Length of each chunk (default 20 ms).
    pub fn chunk_ms(mut self, ms: u32) -> Self {
        self.chunk_ms = ms.max(1);
        self
    }

    /// Appends this much silence after the file, so that server-side VAD ends the turn
    /// (default 0).
    pub fn pad_silence_ms(mut self, ms: u32) -> Self {
        self.pad_ms = ms;
        self
    }

    /// Publishes at this rate instead of the session's input rate.
    pub fn sample_rate(mut self, rate: u32) -> Self {
        self.rate = Some(rate);
        self
    }

    /// Reads and converts the file, then starts publishing. Errors (kind `Audio`) when the
    /// file cannot be read. Must be called inside a running actix `System`.
    pub fn start(self) -> Result<Addr<WavSource>, LiveError> {
        let rate = self.rate.unwrap_or(self.context.input_sample_rate());
        let mut samples = read_wav_mono(&self.path, rate)?;
        samples.extend(std::iter::repeat_n(
            0i16,
            (rate as u64 * self.pad_ms as u64 / 1000) as usize,
        ));
        Ok(WavSource {
            context: self.context,
            samples,
            pos: 0,
            rate,
            chunk: (rate as u64 * self.chunk_ms as u64 / 1000).max(1) as usize,
            chunk_ms: self.chunk_ms,
            realtime: self.realtime,
            started: None,
        }
        .start())
    }
}

/// Streams a WAV file into the conversation as `RecordedAudio`, like a microphone; stops
/// itself when the file (and its silence padding) has been sent.
///
/// ```no_run
/// use liveagent_audio::WavSource;
/// use liveagent_core::{ConversationContext, EventBus};
/// # actix::System::new().block_on(async {
/// let context = ConversationContext::new(EventBus::start_default(), 24_000, 24_000);
/// WavSource::new(context, "question.wav").pad_silence_ms(1500).start().unwrap();
/// # });
/// ```
pub struct WavSource {
    context: ConversationContext,
    samples: Vec<i16>,
    pos: usize,
    rate: u32,
    chunk: usize,
    chunk_ms: u32,
    realtime: bool,
    started: Option<Instant>,
}

/// Progress of a [`WavSource`], from [`GetSourceStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Milliseconds published so far.
    pub sent_ms: u64,
    /// Milliseconds in total (file plus padding).
    pub total_ms: u64,
}

/// Asks a [`WavSource`] for its [`SourceStats`].
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "SourceStats")]
pub struct GetSourceStats;

impl WavSource {
    /// A builder for a source reading `path` (real time, 20 ms chunks, no padding).
    #[allow(clippy::new_ret_no_self)]
    pub fn new(context: ConversationContext, path: impl AsRef<Path>) -> WavSourceBuilder {
        WavSourceBuilder {
            context,
            path: path.as_ref().to_owned(),
            realtime: true,
            chunk_ms: 20,
            pad_ms: 0,
            rate: None,
        }
    }

    fn next_chunk(&mut self) -> Option<RecordedAudio> {
        if self.pos >= self.samples.len() {
            return None;
        }
        let end = (self.pos + self.chunk).min(self.samples.len());
        let audio = AudioChunk::new(&self.samples[self.pos..end], self.rate);
        self.pos = end;
        Some(RecordedAudio { audio })
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let started = *self.started.get_or_insert_with(Instant::now);
        let due = (started.elapsed().as_micros() as u64 * self.rate as u64 / 1_000_000) as usize;
        while self.pos < due.min(self.samples.len()) {
            if let Some(ev) = self.next_chunk() {
                self.context.publish(ev);
            }
        }
        if self.pos >= self.samples.len() {
            ctx.stop();
        }
    }
}

impl Actor for WavSource {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.realtime {
            self.tick(ctx);
            ctx.run_interval(
                Duration::from_millis((self.chunk_ms as u64).clamp(1, 20)),
                |this, ctx| this.tick(ctx),
            );
        } else {
            let bus = self.context.bus().clone();
            let chunks: Vec<RecordedAudio> = std::iter::from_fn(|| self.next_chunk()).collect();
            ctx.spawn(
                async move {
                    for ev in chunks {
                        // Awaiting each publish keeps the bus mailbox short.
                        if bus.send(Publish(ev.into())).await.is_err() {
                            break;
                        }
                    }
                }
                .into_actor(self)
                .map(|_, _, ctx| ctx.stop()),
            );
        }
    }
}

impl Handler<GetSourceStats> for WavSource {
    type Result = MessageResult<GetSourceStats>;
    fn handle(&mut self, _: GetSourceStats, _: &mut Context<Self>) -> Self::Result {
        let ms = |n: usize| n as u64 * 1000 / self.rate.max(1) as u64;
        MessageResult(SourceStats {
            sent_ms: ms(self.pos),
            total_ms: ms(self.samples.len()),
        })
    }
}

impl Handler<StopAudio> for WavSource {
    type Result = ();
    fn handle(&mut self, _: StopAudio, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// Builds and starts a [`WavSink`]; from [`WavSink::new`].
#[derive(Debug)]
pub struct WavSinkBuilder {
    context: ConversationContext,
    path: PathBuf,
    realtime: bool,
    prebuffer: Duration,
    item_end: Duration,
    max_queue: Option<Duration>,
    rate: Option<u32>,
    time_aligned: bool,
    latency: usize,
}

impl WavSinkBuilder {
    /// Keeps the last `n` latencies from socket read to output buffer in
    /// [`PlaybackStats::socket_to_output`](crate::PlaybackStats::socket_to_output) (default 0: off).
    pub fn measure_latency(mut self, n: usize) -> Self {
        self.latency = n;
        self
    }

    /// Consume audio at the pace a speaker would (default true), so that interruptions cut
    /// it where a real player would; false renders audio as soon as it arrives.
    pub fn realtime(mut self, realtime: bool) -> Self {
        self.realtime = realtime;
        self
    }

    /// Prebuffer of the jitter buffer (default 60 ms), as for the player.
    pub fn prebuffer_ms(mut self, ms: u32) -> Self {
        self.prebuffer = Duration::from_millis(ms as u64);
        self
    }

    /// See [`SoundDevicePlayerBuilder::max_queue_ms`](crate::SoundDevicePlayerBuilder::max_queue_ms)
    /// (default: the prebuffer plus 20 s; in non-real-time mode audio is written as it
    /// arrives, so the queue does not fill).
    pub fn max_queue_ms(mut self, ms: u32) -> Self {
        self.max_queue = Some(Duration::from_millis(ms.max(100) as u64));
        self
    }

    /// See [`SoundDevicePlayerBuilder::item_end_ms`](crate::SoundDevicePlayerBuilder::item_end_ms) (default 300 ms).
    pub fn item_end_ms(mut self, ms: u32) -> Self {
        self.item_end = Duration::from_millis(ms as u64);
        self
    }

    /// Writes the file at this rate instead of the session's output rate.
    pub fn sample_rate(mut self, rate: u32) -> Self {
        self.rate = Some(rate);
        self
    }

    /// In real-time mode, also write the silence between and inside items, so that the file
    /// is aligned with wall-clock time (default false: only played audio is written).
    pub fn time_aligned(mut self, on: bool) -> Self {
        self.time_aligned = on;
        self
    }

    /// Creates the file and starts the sink, subscribed to `SynthesizedAudio` and
    /// `Interrupted`. Errors (kind `Audio`) when the file cannot be created. Must be called
    /// inside a running actix `System`.
    pub fn start(self) -> Result<Addr<WavSink>, LiveError> {
        let rate = self.rate.unwrap_or(self.context.output_sample_rate());
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(&self.path, spec)
            .map_err(|e| audio_err(format!("cannot create {}: {e}", self.path.display())))?;
        let opts = QueueOptions {
            output_rate: rate,
            prebuffer: if self.realtime {
                self.prebuffer
            } else {
                Duration::ZERO
            },
            ring: Duration::from_secs(if self.realtime { 2 } else { 30 }),
            item_end: self.item_end,
            cut_timeout: Duration::from_millis(500),
            max_queued: self
                .max_queue
                .unwrap_or(self.prebuffer + DEFAULT_MAX_QUEUED_BEYOND_PREBUFFER),
        };
        let (mut queue, renderer) = PlaybackQueue::new(self.context.output_sample_rate(), opts)?;
        queue.measure_latency(self.latency);
        let ctx: Context<WavSink> = Context::new();
        // Subscribe before returning, so that audio published right after `start()` is seen.
        let filter = EventFilter::of::<SynthesizedAudio>().or::<Interrupted>();
        let sub = self.context.subscribe_with(
            Subscribe::filtered(filter, ctx.address().recipient()).label("wav_sink"),
        );
        Ok(ctx.run(WavSink {
            context: self.context,
            path: self.path,
            writer: Some(writer),
            queue,
            renderer,
            block: vec![0.0; 1024],
            realtime: self.realtime,
            time_aligned: self.time_aligned,
            rate,
            started: None,
            rendered: 0,
            written: 0,
            sub: Some(sub),
            error: None,
        }))
    }
}

/// Writes what a speaker would have played to a mono PCM16 WAV file. It runs the same jitter
/// buffer and interruption logic as [`SoundDevicePlayer`](crate::SoundDevicePlayer) against a
/// virtual clock, and publishes `PlaybackStopped` the same way.
///
/// ```no_run
/// use liveagent_audio::{CloseSink, WavSink};
/// use liveagent_core::{ConversationContext, EventBus};
/// # actix::System::new().block_on(async {
/// let context = ConversationContext::new(EventBus::start_default(), 24_000, 24_000);
/// let sink = WavSink::new(context, "answer.wav").start().unwrap();
/// // ... run the conversation ...
/// let frames = sink.send(CloseSink).await.unwrap().unwrap();
/// println!("wrote {frames} samples");
/// # });
/// ```
pub struct WavSink {
    context: ConversationContext,
    path: PathBuf,
    writer: Option<hound::WavWriter<BufWriter<File>>>,
    queue: PlaybackQueue,
    renderer: Renderer,
    block: Vec<f32>,
    realtime: bool,
    time_aligned: bool,
    rate: u32,
    started: Option<Instant>,
    rendered: u64,
    written: u64,
    sub: Option<SubscriberId>,
    error: Option<LiveError>,
}

/// Finalizes a [`WavSink`]'s file and stops it; answers with the number of samples written.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<u64, LiveError>")]
pub struct CloseSink;

impl WavSink {
    /// A builder for a sink writing `path` (real time, 60 ms prebuffer, session output rate).
    #[allow(clippy::new_ret_no_self)]
    pub fn new(context: ConversationContext, path: impl AsRef<Path>) -> WavSinkBuilder {
        WavSinkBuilder {
            context,
            path: path.as_ref().to_owned(),
            realtime: true,
            prebuffer: Duration::from_millis(60),
            item_end: Duration::from_millis(300),
            max_queue: None,
            rate: None,
            time_aligned: false,
            latency: 0,
        }
    }

    fn write(&mut self, frames: usize, audio: usize) {
        let n = if self.time_aligned { frames } else { audio };
        let Some(w) = self.writer.as_mut() else {
            return;
        };
        for x in &self.block[..n] {
            if let Err(e) = w.write_sample(f32_to_pcm16(*x)) {
                if self.error.is_none() {
                    let err = audio_err(format!("cannot write {}: {e}", self.path.display()));
                    tracing::error!(error = %err, "wav sink failed");
                    self.context
                        .publish(liveagent_core::ErrorEvent::new("wav_sink", err.clone()));
                    self.error = Some(err);
                }
                return;
            }
        }
        self.written += n as u64;
    }

    fn render(&mut self, now: Instant) {
        if self.realtime {
            let started = *self.started.get_or_insert(now);
            let due = (now.saturating_duration_since(started).as_micros() as u64
                * self.rate as u64
                / 1_000_000)
                .saturating_sub(self.rendered);
            let mut left = due as usize;
            while left > 0 {
                let n = left.min(self.block.len());
                let r = self.renderer.render(&mut self.block[..n]);
                self.write(n, r.audio_frames);
                self.rendered += n as u64;
                left -= n;
            }
        } else {
            loop {
                let n = self.block.len();
                let r = self.renderer.render(&mut self.block[..n]);
                self.write(r.audio_frames, r.audio_frames);
                if r.audio_frames == 0 {
                    break;
                }
            }
        }
        for ev in self.queue.tick_events(now) {
            self.context.publish(ev);
        }
        if let Some(dropped) = self.queue.take_dropped(now) {
            self.context.publish(dropped);
        }
    }

    fn finish(&mut self) -> Result<u64, LiveError> {
        if let Some(w) = self.writer.take() {
            w.finalize()
                .map_err(|e| audio_err(format!("cannot finalize {}: {e}", self.path.display())))?;
        }
        match &self.error {
            Some(e) => Err(e.clone()),
            None => Ok(self.written),
        }
    }
}

impl Actor for WavSink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(Duration::from_millis(10), |this, _| {
            this.render(Instant::now())
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        if let Some(id) = self.sub.take() {
            self.context.unsubscribe(id);
        }
        for ev in self.queue.abandon() {
            self.context.publish(ev);
        }
        if let Err(e) = self.finish() {
            tracing::warn!(error = %e, "wav sink closed with an error");
        }
    }
}

impl Handler<LiveEvent> for WavSink {
    type Result = ();
    fn handle(&mut self, ev: LiveEvent, _: &mut Context<Self>) {
        let now = Instant::now();
        match ev {
            LiveEvent::SynthesizedAudio(a) => {
                // Bring the virtual clock up to now before queueing, as a device would have.
                if self.realtime {
                    self.render(now);
                }
                self.queue.on_audio(&a, now);
                if !self.realtime {
                    self.render(now);
                }
            }
            LiveEvent::Interrupted(i) => {
                if self.realtime {
                    self.render(now);
                }
                self.queue.on_interrupted(&i, now);
                // The next render applies the cut, like the next device period would.
                self.render(now);
            }
            _ => {}
        }
    }
}

impl Handler<GetPlaybackStats> for WavSink {
    type Result = MessageResult<GetPlaybackStats>;
    fn handle(&mut self, _: GetPlaybackStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.queue.stats())
    }
}

impl Handler<CloseSink> for WavSink {
    type Result = Result<u64, LiveError>;
    fn handle(&mut self, _: CloseSink, ctx: &mut Context<Self>) -> Self::Result {
        self.render(Instant::now());
        let r = self.finish();
        ctx.stop();
        r
    }
}

impl Handler<StopAudio> for WavSink {
    type Result = ();
    fn handle(&mut self, _: StopAudio, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
