//! [`SoundDeviceRecorder`]: microphone audio as `RecordedAudio` events.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use cpal::traits::{DeviceTrait, StreamTrait};
use cpal::{FromSample, SampleFormat, SizedSample};
use liveagent_core::probe::{MicProbe, MicStage};
use liveagent_core::{
    AudioChunk, AudioDropped, ConversationContext, ErrorEvent, LiveError, RecordedAudio,
};
use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};

use crate::convert::{downmix_to_mono, f32_to_pcm16, MonoResampler};
use crate::device::{
    audio_err, cpal_err, find_device, resolve_config, stream_error_callback, DeviceConfig,
    OpenedDevice, StreamThread, Watchdog,
};
use crate::player::GetDevice;
use crate::wake::{doorbell, BellSocket, Doorbell};
use crate::{DeviceFailed, StopAudio};

/// Counters of a recorder, from [`GetRecorderStats`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecorderStats {
    /// Device frames captured by the callback.
    pub captured_frames: u64,
    /// Device frames dropped because the ring buffer was full (the actor fell behind).
    pub dropped_frames: u64,
    /// `RecordedAudio` chunks published.
    pub chunks_published: u64,
    /// Milliseconds of audio published.
    pub published_ms: u64,
    /// Xruns (overruns) the device reported.
    pub device_xruns: u64,
}

/// Asks a [`SoundDeviceRecorder`] for its [`RecorderStats`].
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "RecorderStats")]
pub struct GetRecorderStats;

struct Counters {
    captured: AtomicU64,
    dropped: AtomicU64,
    xruns: AtomicU64,
    /// Nanoseconds after `epoch` at which the last callback that pushed samples began (0 = none).
    last_callback_ns: AtomicU64,
    epoch: Instant,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            captured: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            xruns: AtomicU64::new(0),
            last_callback_ns: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

/// Builds and starts a [`SoundDeviceRecorder`]; from [`SoundDeviceRecorder::new`].
#[derive(Debug)]
pub struct SoundDeviceRecorderBuilder {
    context: ConversationContext,
    device: Option<String>,
    rate: Option<u32>,
    chunk_ms: u32,
    ring_ms: u32,
    dev_rate: Option<u32>,
    dev_channels: Option<u16>,
    dev_format: Option<SampleFormat>,
    own_arbiter: bool,
    buffer_frames: Option<u32>,
    device_default: bool,
}

impl SoundDeviceRecorderBuilder {
    /// The rate audio is published at.
    pub(crate) fn publish_rate(&self) -> u32 {
        self.rate.unwrap_or(self.context.input_sample_rate())
    }

    pub(crate) fn context_ref(&self) -> &ConversationContext {
        &self.context
    }

    /// The same recorder, publishing into `context`.
    pub(crate) fn with_context(mut self, context: ConversationContext) -> Self {
        self.context = context;
        self
    }

    /// Runs the recorder on an arbiter (thread) of its own instead of the current one, so
    /// that a busy arbiter (many sessions) does not delay its wake-ups (default: off, the
    /// current arbiter). The arbiter stops with the recorder.
    pub fn own_arbiter(mut self, yes: bool) -> Self {
        self.own_arbiter = yes;
        self
    }

    /// Records from the input device of this name (see [`list_input_devices`](crate::list_input_devices));
    /// default: the host's default input.
    pub fn device(mut self, name: impl Into<String>) -> Self {
        self.device = Some(name.into());
        self
    }

    /// Publishes audio at this rate instead of the session's input rate.
    pub fn sample_rate(mut self, rate: u32) -> Self {
        self.rate = Some(rate);
        self
    }

    /// Length of each published chunk (default 20 ms).
    pub fn chunk_ms(mut self, ms: u32) -> Self {
        self.chunk_ms = ms.max(1);
        self
    }

    /// Capacity of the lock-free ring between the device callback and the actor (default
    /// 2000 ms). If the actor falls further behind, the newest frames are dropped and
    /// reported as `AudioDropped`.
    pub fn buffer_ms(mut self, ms: u32) -> Self {
        self.ring_ms = ms.max(50);
        self
    }

    /// Opens the device at this rate (default: the publish rate when the device supports
    /// it, see [`SoundDeviceRecorder`]).
    pub fn device_sample_rate(mut self, rate: u32) -> Self {
        self.dev_rate = Some(rate);
        self
    }

    /// Opens the device with this many channels (averaged to mono; default: 1 when the
    /// device supports it).
    pub fn device_channels(mut self, channels: u16) -> Self {
        self.dev_channels = Some(channels);
        self
    }

    /// Asks the device for periods of this many frames (its callback then runs once per
    /// period; default: 10 ms at the device rate when the device supports it, else the
    /// host's default).
    pub fn device_buffer_frames(mut self, frames: u32) -> Self {
        self.buffer_frames = Some(frames.max(16));
        self
    }

    /// Opens the device with this sample format (default: 16-bit when the device supports
    /// it).
    pub fn device_format(mut self, format: SampleFormat) -> Self {
        self.dev_format = Some(format);
        self
    }

    /// Opens the device in its own default configuration (cpal's
    /// `default_input_config`, e.g. 48 kHz stereo f32, and the host's default period)
    /// instead of the session's format; the `device_*` settings still override it.
    pub fn device_default_config(mut self) -> Self {
        self.device_default = true;
        self
    }

    /// Opens the device and starts the recorder actor on the current arbiter (or its own,
    /// see [`own_arbiter`](Self::own_arbiter)). Must be called inside a running actix
    /// `System`. Opening blocks the calling thread (milliseconds; the sound server is asked
    /// what the device supports); the device then starts capturing when the actor first
    /// runs on its arbiter, so nothing is captured that the actor could not take at once.
    ///
    /// Errors with a [`LiveError`] of kind `Audio` when there is no such device or it cannot
    /// be opened.
    pub fn start(self) -> Result<Addr<SoundDeviceRecorder>, LiveError> {
        if !self.own_arbiter {
            return self.start_here(None);
        }
        let arbiter = Arbiter::new();
        let handle = arbiter.handle();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let own = handle.clone();
        if !handle.spawn_fn(move || {
            let _ = tx.send(self.start_here(Some(own)));
        }) {
            return Err(audio_err("cannot start the recorder's arbiter"));
        }
        let started = rx
            .recv()
            .unwrap_or_else(|_| Err(audio_err("the recorder's arbiter stopped while starting")));
        if started.is_err() {
            handle.stop();
        }
        started
    }

    /// Opens the device and runs the actor on the current arbiter; `arbiter` (the current
    /// one, when it is the recorder's own) is stopped with the actor.
    fn start_here(
        self,
        arbiter: Option<ArbiterHandle>,
    ) -> Result<Addr<SoundDeviceRecorder>, LiveError> {
        let ctx: Context<SoundDeviceRecorder> = Context::new();
        let addr = ctx.address();
        let counters = Arc::new(Counters::default());
        let request = InputRequest {
            rate: self.dev_rate,
            channels: self.dev_channels,
            format: self.dev_format,
            buffer_frames: self.buffer_frames,
            publish_rate: self.publish_rate(),
            device_default: self.device_default,
        };
        let dev_name = self.device.clone();
        let ring_ms = self.ring_ms;
        let cb_counters = counters.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let (thread, opened) = StreamThread::spawn("liveagent-recorder", move || {
            let device = find_device(dev_name.as_deref(), true)?;
            let name = device
                .description()
                .map(|d| d.name().to_owned())
                .unwrap_or_else(|_| "?".into());
            let mut choices = input_choices(&device, &request)?.into_iter().peekable();
            loop {
                let Some(choice) = choices.next() else {
                    return Err(audio_err("no input configuration to try"));
                };
                match open_input(&device, choice, ring_ms, &cb_counters, &addr) {
                    Ok((stream, cons, bell)) => {
                        let _ = tx.send((cons, bell, choice.kind));
                        let buffer_frames = stream.buffer_size().ok();
                        return Ok((
                            stream,
                            OpenedDevice {
                                name,
                                config: choice.config,
                                buffer_frames,
                            },
                        ));
                    }
                    Err(e) if choices.peek().is_some() => {
                        tracing::warn!(device = %name, error = %e, config = ?choice.config,
                            "cannot open the audio input in the session's format; trying the device's default");
                    }
                    Err(e) => return Err(e),
                }
            }
        })?;
        let (cons, bell, kind) = rx
            .recv()
            .map_err(|_| audio_err("the audio thread ended while opening the device"))?;
        let rate = self.rate.unwrap_or(self.context.input_sample_rate());
        let resampler = MonoResampler::new(opened.config.sample_rate, rate)?;
        tracing::info!(device = %opened.name, rate = opened.config.sample_rate,
            buffer_frames = ?opened.buffer_frames,
            channels = opened.config.channels, format = ?opened.config.sample_format,
            publish_rate = rate, config = kind.describe(), "audio input opened");
        let chunk = (rate as u64 * self.chunk_ms as u64 / 1000).max(1) as usize;
        let recorder = SoundDeviceRecorder {
            context: self.context,
            cons,
            counters,
            resampler,
            rate,
            chunk,
            chunk_ms: self.chunk_ms,
            scratch: Vec::new(),
            resampled: Vec::new(),
            acc: Vec::with_capacity(chunk * 2),
            stream: Some(thread),
            device: opened,
            watchdog: Watchdog::new(),
            reported_dropped: 0,
            stats: RecorderStats::default(),
            bell: Some(bell),
            arbiter,
        };
        Ok(ctx.run(recorder))
    }
}

/// What the builder asked of the input device (`None`: not set).
#[derive(Clone, Copy, Debug)]
struct InputRequest {
    rate: Option<u32>,
    channels: Option<u16>,
    format: Option<SampleFormat>,
    buffer_frames: Option<u32>,
    publish_rate: u32,
    device_default: bool,
}

/// Which configuration the recorder opened (for the log line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InputKind {
    /// The session's format: publish rate, mono, 16-bit, 10 ms periods (and overrides).
    Session,
    /// The device's default configuration (with overrides): the device does not support
    /// the session's format, or `device_default_config()` asked for it.
    DeviceDefault,
}

impl InputKind {
    fn describe(self) -> &'static str {
        match self {
            InputKind::Session => "session format",
            InputKind::DeviceDefault => "device default",
        }
    }
}

/// One configuration to try.
#[derive(Clone, Copy, Debug)]
struct InputChoice {
    config: DeviceConfig,
    buffer_frames: Option<u32>,
    kind: InputKind,
}

/// The configurations to try, best first (never empty): the session's format when the
/// device lists it as supported, then the device's default; the builder's `device_*`
/// settings override either.
fn input_choices(device: &cpal::Device, req: &InputRequest) -> Result<Vec<InputChoice>, LiveError> {
    let mut choices = Vec::with_capacity(2);
    if !req.device_default {
        let config = DeviceConfig {
            sample_rate: req.rate.unwrap_or(req.publish_rate),
            channels: req.channels.unwrap_or(1).max(1),
            sample_format: req.format.unwrap_or(SampleFormat::I16),
        };
        // 10 ms periods: one callback (and one wake-up) per 10 ms of audio.
        let period = (config.sample_rate / 100).max(16);
        let supported: Vec<cpal::SupportedStreamConfigRange> = device
            .supported_input_configs()
            .map(|r| r.collect())
            .unwrap_or_default();
        let fits = |r: &cpal::SupportedStreamConfigRange, frames: Option<u32>| {
            r.channels() == config.channels
                && r.sample_format() == config.sample_format
                && r.contains_rate(config.sample_rate)
                && match (frames, r.buffer_size()) {
                    (Some(n), cpal::SupportedBufferSize::Range { min, max }) => {
                        (*min..=*max).contains(&n)
                    }
                    _ => true,
                }
        };
        let buffer_frames = match req.buffer_frames {
            Some(n) => supported.iter().any(|r| fits(r, None)).then_some(Some(n)),
            None => supported
                .iter()
                .any(|r| fits(r, Some(period)))
                .then_some(Some(period))
                .or_else(|| supported.iter().any(|r| fits(r, None)).then_some(None)),
        };
        if let Some(buffer_frames) = buffer_frames {
            choices.push(InputChoice {
                config,
                buffer_frames,
                kind: InputKind::Session,
            });
        }
    }
    match resolve_config(device, true, req.rate, req.channels, req.format) {
        Ok(config) => {
            let choice = InputChoice {
                config,
                buffer_frames: req.buffer_frames,
                kind: InputKind::DeviceDefault,
            };
            if !choices
                .iter()
                .any(|c| c.config == choice.config && c.buffer_frames == choice.buffer_frames)
            {
                choices.push(choice);
            }
        }
        Err(e) if choices.is_empty() => return Err(e),
        Err(_) => {}
    }
    Ok(choices)
}

/// Builds the input stream of `choice` (not started), with its own ring and doorbell (a
/// failed attempt's are dropped with it).
fn open_input(
    device: &cpal::Device,
    choice: InputChoice,
    ring_ms: u32,
    counters: &Arc<Counters>,
    addr: &Addr<SoundDeviceRecorder>,
) -> Result<(cpal::Stream, HeapCons<f32>, BellSocket), LiveError> {
    let config = choice.config;
    let frames = (config.sample_rate as u64 * ring_ms as u64 / 1000).max(1024) as usize;
    let (prod, cons) = HeapRb::<f32>::new(frames).split();
    let (door, bell) =
        doorbell().map_err(|e| audio_err(format!("cannot create the wake-up socket: {e}")))?;
    // Built, not started: the actor starts it once it runs and can drain (`started`).
    let stream = build_input(
        device,
        config,
        choice.buffer_frames,
        prod,
        counters.clone(),
        door,
        addr.clone(),
    )?;
    Ok((stream, cons, bell))
}

fn build_input(
    device: &cpal::Device,
    config: DeviceConfig,
    buffer_frames: Option<u32>,
    prod: HeapProd<f32>,
    counters: Arc<Counters>,
    door: Doorbell,
    addr: Addr<SoundDeviceRecorder>,
) -> Result<cpal::Stream, LiveError> {
    macro_rules! build {
        ($t:ty) => {
            build_typed::<$t>(device, config, buffer_frames, prod, counters, door, addr)
        };
    }
    match config.sample_format {
        SampleFormat::I8 => build!(i8),
        SampleFormat::I16 => build!(i16),
        SampleFormat::I32 => build!(i32),
        SampleFormat::I64 => build!(i64),
        SampleFormat::U8 => build!(u8),
        SampleFormat::U16 => build!(u16),
        SampleFormat::U32 => build!(u32),
        SampleFormat::U64 => build!(u64),
        SampleFormat::F32 => build!(f32),
        SampleFormat::F64 => build!(f64),
        other => Err(audio_err(format!(
            "unsupported input sample format {other:?}"
        ))),
    }
}

fn build_typed<T>(
    device: &cpal::Device,
    config: DeviceConfig,
    buffer_frames: Option<u32>,
    mut prod: HeapProd<f32>,
    counters: Arc<Counters>,
    door: Doorbell,
    addr: Addr<SoundDeviceRecorder>,
) -> Result<cpal::Stream, LiveError>
where
    T: SizedSample + Send + 'static,
    f32: FromSample<T>,
{
    let channels = config.channels as usize;
    let err_counters = counters.clone();
    let stream_config = cpal::StreamConfig {
        channels: config.channels,
        sample_rate: config.sample_rate,
        buffer_size: match buffer_frames {
            Some(n) => cpal::BufferSize::Fixed(n),
            None => cpal::BufferSize::Default,
        },
    };
    device
        .build_input_stream::<T, _, _>(
            stream_config,
            move |data: &[T], _: &cpal::InputCallbackInfo| {
                // Downmix in stack blocks, hand off and ring: no allocation, no lock.
                let called_ns = (counters.epoch.elapsed().as_nanos() as u64).max(1);
                let mut block = [0f32; 512];
                for part in data.chunks(block.len() * channels) {
                    let n = downmix_to_mono(part, channels, &mut block);
                    let pushed = prod.push_slice(&block[..n]);
                    counters.captured.fetch_add(n as u64, Ordering::Relaxed);
                    if pushed < n {
                        counters
                            .dropped
                            .fetch_add((n - pushed) as u64, Ordering::Relaxed);
                    }
                }
                counters
                    .last_callback_ns
                    .store(called_ns, Ordering::Release);
                door.ring();
            },
            stream_error_callback("input", addr.recipient(), move || {
                err_counters
                    .xruns
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }),
            None,
        )
        .map_err(|e| cpal_err("cannot open the audio input", e))
}

/// Captures a microphone with cpal, converts whatever the device gives to mono PCM16 at the
/// session's input rate and publishes it as `RecordedAudio` chunks of fixed length.
///
/// **Device configuration.** By default the device is opened in the session's format when
/// it lists it as supported: the publish rate, mono, 16-bit, with 10 ms periods (a sound
/// server then converts, nothing is resampled here, and on PulseAudio's ALSA plugin cpal's
/// capture thread waits once per period instead of busy-polling, see
/// `docs/performance-audio.md` §4). Otherwise (or when that fails to open) it falls back to
/// the device's default configuration and converts. The `audio input opened` log line says
/// which (`config = "session format"` or `"device default"`), and
/// [`GetDevice`](crate::GetDevice) returns what was opened. `device_sample_rate`,
/// `device_channels`, `device_format` and `device_buffer_frames` override single fields;
/// [`device_default_config`](SoundDeviceRecorderBuilder::device_default_config) asks for
/// the device's default outright.
///
/// **Device loss.** A fatal error from the host, errors followed by 3 s without audio, or
/// 4 s without any audio and without any error (a sound server that died can deadlock its
/// client library so that the host reports nothing) become a fatal `ErrorEvent` from
/// `"recorder"` and stop the recorder; a capture thread stuck in the driver is left behind
/// rather than waited for.
///
/// The device callback only downmixes, pushes into a lock-free ring and rings a lock-free
/// doorbell that wakes the actor at once (no polling timer); the actor drains the ring,
/// resamples (rubato) and publishes.
///
/// ```no_run
/// use liveagent_audio::SoundDeviceRecorder;
/// use liveagent_core::{ConversationContext, EventBus};
/// # actix::System::new().block_on(async {
/// let context = ConversationContext::new(EventBus::start_default(), 16_000, 24_000);
/// let mic = SoundDeviceRecorder::new(context.clone())
///     .device("default")
///     .chunk_ms(20)
///     .start()
///     .expect("no microphone");
/// # });
/// ```
pub struct SoundDeviceRecorder {
    context: ConversationContext,
    cons: HeapCons<f32>,
    counters: Arc<Counters>,
    resampler: MonoResampler,
    rate: u32,
    chunk: usize,
    chunk_ms: u32,
    scratch: Vec<f32>,
    resampled: Vec<f32>,
    acc: Vec<i16>,
    stream: Option<StreamThread>,
    device: OpenedDevice,
    watchdog: Watchdog,
    reported_dropped: u64,
    stats: RecorderStats,
    /// The callback's wake-ups, until `started` registers them with the arbiter.
    bell: Option<BellSocket>,
    /// The recorder's own arbiter (see `own_arbiter`), stopped with it.
    arbiter: Option<ArbiterHandle>,
}

impl SoundDeviceRecorder {
    /// A builder for a recorder in `context` (default input device, session input rate,
    /// 20 ms chunks).
    #[allow(clippy::new_ret_no_self)]
    pub fn new(context: ConversationContext) -> SoundDeviceRecorderBuilder {
        SoundDeviceRecorderBuilder {
            context,
            device: None,
            rate: None,
            chunk_ms: 20,
            ring_ms: 2000,
            dev_rate: None,
            dev_channels: None,
            dev_format: None,
            own_arbiter: false,
            buffer_frames: None,
            device_default: false,
        }
    }

    fn drain(&mut self) {
        // Read before popping: the newest callback whose samples are all in the ring. A chunk
        // completed below ends with samples of that callback or a later one (an earlier one
        // only when the chunk fills before reaching them), so `origin` rarely flatters.
        let origin = match self.counters.last_callback_ns.load(Ordering::Acquire) {
            0 => None,
            ns => Some(self.counters.epoch + Duration::from_nanos(ns)),
        };
        let woken = MicProbe::enabled().then(Instant::now);
        let avail = self.cons.occupied_len();
        if avail > 0 {
            self.scratch.resize(avail, 0.0);
            let n = self.cons.pop_slice(&mut self.scratch);
            self.resampled.clear();
            self.resampler
                .process(&self.scratch[..n], &mut self.resampled);
            self.acc
                .extend(self.resampled.iter().map(|x| f32_to_pcm16(*x)));
            while self.acc.len() >= self.chunk {
                // One allocation per chunk: straight into the shared buffer.
                let samples: Arc<[i16]> = self.acc.drain(..self.chunk).collect();
                self.stats.chunks_published += 1;
                self.stats.published_ms += self.chunk_ms as u64;
                if let (Some(woken), Some(origin)) = (woken, origin) {
                    let key = MicProbe::key(&samples);
                    MicProbe::mark_at(key, MicStage::Callback, origin);
                    MicProbe::mark_at(key, MicStage::Woken, woken);
                    MicProbe::mark(key, MicStage::Published);
                }
                let audio = AudioChunk {
                    samples,
                    sample_rate: self.rate,
                    origin: None,
                };
                self.context.publish(RecordedAudio {
                    audio: match origin {
                        Some(origin) => audio.with_origin(origin),
                        None => audio,
                    },
                });
            }
        }
        let dropped = self.counters.dropped.load(Ordering::Relaxed);
        if dropped > self.reported_dropped {
            let ms = (dropped - self.reported_dropped) * 1000
                / self.device.config.sample_rate.max(1) as u64;
            self.reported_dropped = dropped;
            tracing::warn!(
                dropped_ms = ms,
                "microphone audio dropped: the recorder fell behind"
            );
            self.context.publish(AudioDropped {
                source: "recorder".into(),
                dropped_ms: ms,
                reason: "the capture ring buffer was full".into(),
            });
        }
    }
}

/// How often the recorder checks that the device still delivers (the stall watchdog).
/// Samples are not polled: the callback wakes the actor.
const WATCH_PERIOD: Duration = Duration::from_millis(250);

impl Actor for SoundDeviceRecorder {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // The callback rings after each push; every wake-up drains the ring, so a chunk is
        // published as soon as its last samples arrive, whatever else the arbiter does.
        match self.bell.take().map(BellSocket::register) {
            Some(Ok(bell)) => {
                ctx.add_stream(bell);
            }
            Some(Err(e)) => {
                // Cannot happen on a running arbiter; degrade to polling rather than fail.
                tracing::warn!(error = %e, "audio wake-up unavailable; polling the microphone every 1 ms");
                ctx.run_interval(Duration::from_millis(1), |this, _| this.drain());
            }
            None => {}
        }
        // Only now, with the actor running on its arbiter and the wake-ups registered, does
        // the device start: audio captured earlier (while the caller's arbiter was busy, e.g.
        // opening more devices) would wait in the ring and then cross the whole path in one
        // burst, every chunk of it late (docs/performance-audio.md §4, the cold outlier).
        if let Some(stream) = &self.stream {
            stream.play("input", ctx.address().recipient());
        }
        ctx.run_interval(WATCH_PERIOD, |this, ctx| {
            this.drain();
            this.watch(ctx);
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.stream.take();
        tracing::debug!(device = %self.device.name, "audio input closed");
        if let Some(arbiter) = self.arbiter.take() {
            arbiter.stop();
        }
    }
}

impl StreamHandler<()> for SoundDeviceRecorder {
    fn handle(&mut self, _: (), _: &mut Context<Self>) {
        self.drain();
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        // The wake-up socket failed (logged by the bell): fall back to polling.
        ctx.run_interval(Duration::from_millis(1), |this, _| this.drain());
    }
}

impl Handler<GetRecorderStats> for SoundDeviceRecorder {
    type Result = MessageResult<GetRecorderStats>;
    fn handle(&mut self, _: GetRecorderStats, _: &mut Context<Self>) -> Self::Result {
        let mut s = self.stats.clone();
        s.captured_frames = self.counters.captured.load(Ordering::Relaxed);
        s.dropped_frames = self.counters.dropped.load(Ordering::Relaxed);
        s.device_xruns = self.counters.xruns.load(Ordering::Relaxed);
        MessageResult(s)
    }
}

impl Handler<GetDevice> for SoundDeviceRecorder {
    type Result = MessageResult<GetDevice>;
    fn handle(&mut self, _: GetDevice, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.device.clone())
    }
}

impl Handler<StopAudio> for SoundDeviceRecorder {
    type Result = ();
    fn handle(&mut self, _: StopAudio, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<DeviceFailed> for SoundDeviceRecorder {
    type Result = ();
    fn handle(&mut self, msg: DeviceFailed, ctx: &mut Context<Self>) {
        if msg.fatal {
            tracing::error!(error = %msg.error, "audio input failed");
            self.context
                .publish(ErrorEvent::fatal("recorder", msg.error));
            ctx.stop();
        } else {
            tracing::warn!(error = %msg.error, "audio input error");
            if self
                .watchdog
                .on_trouble(msg.error.clone(), std::time::Instant::now())
            {
                self.context.publish(ErrorEvent::new("recorder", msg.error));
            }
        }
    }
}

impl SoundDeviceRecorder {
    /// Escalates device errors to a fatal `ErrorEvent` when the stream has stalled.
    fn watch(&mut self, ctx: &mut Context<Self>) {
        let progress = self.counters.captured.load(Ordering::Relaxed);
        if let Some(err) = self
            .watchdog
            .check(progress, std::time::Instant::now(), "input")
        {
            tracing::error!(error = %err, "audio input stalled");
            self.context.publish(ErrorEvent::fatal("recorder", err));
            // Its thread may be stuck in the driver for good: do not wait for it.
            if let Some(stream) = self.stream.take() {
                stream.abandon();
            }
            ctx.stop();
        }
    }
}
