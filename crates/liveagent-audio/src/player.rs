//! [`SoundDevicePlayer`]: plays `SynthesizedAudio` on a speaker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use cpal::traits::{DeviceTrait, StreamTrait};
use cpal::{FromSample, SampleFormat, SizedSample};
use liveagent_core::{
    ConversationContext, ErrorEvent, EventFilter, Interrupted, LiveError, LiveEvent, SubscriberId,
    SynthesizedAudio,
};

use crate::convert::upmix_from_mono;
use crate::device::{
    audio_err, cpal_err, find_device, resolve_config, stream_error_callback, DeviceConfig,
    OpenedDevice, StreamThread, Watchdog,
};
use crate::playback::{
    PlaybackQueue, QueueOptions, Renderer, Shared, DEFAULT_MAX_QUEUED_BEYOND_PREBUFFER,
};
use crate::{DeviceFailed, GetPlaybackStats, StopAudio};

/// Builds and starts a [`SoundDevicePlayer`]; from [`SoundDevicePlayer::new`].
#[derive(Debug)]
pub struct SoundDevicePlayerBuilder {
    context: ConversationContext,
    device: Option<String>,
    prebuffer: Duration,
    ring: Duration,
    item_end: Duration,
    max_queue: Option<Duration>,
    rate: Option<u32>,
    channels: Option<u16>,
    format: Option<SampleFormat>,
    latency: usize,
    period_frames: Option<u32>,
}

impl SoundDevicePlayerBuilder {
    /// Asks the device for a fixed buffer of `frames` frames per callback instead of the
    /// host's default. A smaller buffer makes the speaker go silent sooner after a barge-in
    /// (the player cuts at the next callback, and what the device already holds still plays),
    /// at the risk of underruns on a busy machine. Default: the host's choice.
    pub fn device_buffer_frames(mut self, frames: u32) -> Self {
        self.period_frames = Some(frames);
        self
    }

    /// Keeps the last `n` latencies from socket read to output buffer in
    /// [`PlaybackStats::socket_to_output`](crate::PlaybackStats::socket_to_output) (default 0: off).
    pub fn measure_latency(mut self, n: usize) -> Self {
        self.latency = n;
        self
    }

    /// Plays on the output device of this name (see [`list_output_devices`](crate::list_output_devices));
    /// default: the host's default output.
    pub fn device(mut self, name: impl Into<String>) -> Self {
        self.device = Some(name.into());
        self
    }

    /// How much audio to gather before starting (and restarting after an underrun) an item
    /// (default 60 ms). Larger absorbs more network jitter, smaller answers sooner.
    pub fn prebuffer_ms(mut self, ms: u32) -> Self {
        self.prebuffer = Duration::from_millis(ms as u64);
        self
    }

    /// Capacity of the lock-free queue in front of the device (default 2000 ms); audio beyond
    /// it waits in the actor.
    pub fn buffer_ms(mut self, ms: u32) -> Self {
        self.ring = Duration::from_millis(ms.max(100) as u64);
        self
    }

    /// Most audio the player holds waiting to be played (default: the prebuffer plus 20 s).
    /// Real providers send answers several times faster than real time, so the queue
    /// legitimately holds seconds of audio; audio arriving past this bound (a provider
    /// flooding at 50x real time) is dropped with the rest of its item, the item is reported
    /// interrupted with what was played (so the model is told what was heard), and an
    /// `AudioDropped` event (source `player`) says how much was dropped.
    pub fn max_queue_ms(mut self, ms: u32) -> Self {
        self.max_queue = Some(Duration::from_millis(ms.max(100) as u64));
        self
    }

    /// After the queue ran dry, how long an item may go without new audio before it counts as
    /// played out and `PlaybackStopped { interrupted: false }` is published (default 300 ms).
    pub fn item_end_ms(mut self, ms: u32) -> Self {
        self.item_end = Duration::from_millis(ms as u64);
        self
    }

    /// Opens the device at this rate instead of its default.
    pub fn device_sample_rate(mut self, rate: u32) -> Self {
        self.rate = Some(rate);
        self
    }

    /// Opens the device with this many channels instead of its default (mono audio is copied
    /// to every channel).
    pub fn device_channels(mut self, channels: u16) -> Self {
        self.channels = Some(channels);
        self
    }

    /// Opens the device with this sample format instead of its default.
    pub fn device_format(mut self, format: SampleFormat) -> Self {
        self.format = Some(format);
        self
    }

    /// Opens the device, starts the player actor on the current arbiter and subscribes it to
    /// `SynthesizedAudio` and `Interrupted`. Must be called inside a running actix `System`.
    ///
    /// Errors with a [`LiveError`] of kind `Audio` when there is no such device or it cannot
    /// be opened.
    pub fn start(self) -> Result<Addr<SoundDevicePlayer>, LiveError> {
        let ctx: Context<SoundDevicePlayer> = Context::new();
        let addr = ctx.address();
        let device_name = self.device.clone();
        let (rate, channels, format) = (self.rate, self.channels, self.format);
        let period_frames = self.period_frames;
        let source_rate = self.context.output_sample_rate();
        let opts_template = QueueOptions {
            output_rate: 0,
            prebuffer: self.prebuffer,
            ring: self.ring,
            item_end: self.item_end,
            cut_timeout: Duration::from_millis(500),
            max_queued: self
                .max_queue
                .unwrap_or(self.prebuffer + DEFAULT_MAX_QUEUED_BEYOND_PREBUFFER),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let err_addr = addr.clone();
        let (thread, opened) = StreamThread::spawn("liveagent-player", move || {
            let device = find_device(device_name.as_deref(), false)?;
            let config = resolve_config(&device, false, rate, channels, format)?;
            let name = device
                .description()
                .map(|d| d.name().to_owned())
                .unwrap_or_else(|_| "?".into());
            let opts = QueueOptions {
                output_rate: config.sample_rate,
                ..opts_template
            };
            let (queue, renderer) = PlaybackQueue::new(source_rate, opts)?;
            let shared = queue.shared.clone();
            let stream = build_output(&device, config, period_frames, renderer, shared, err_addr)?;
            stream
                .play()
                .map_err(|e| cpal_err("cannot start the audio output", e))?;
            let _ = tx.send(queue);
            Ok((stream, OpenedDevice { name, config }))
        })?;
        let mut queue = rx
            .recv()
            .map_err(|_| audio_err("the audio thread ended while opening the device"))?;
        queue.measure_latency(self.latency);
        tracing::info!(device = %opened.name, rate = opened.config.sample_rate,
            channels = opened.config.channels, format = ?opened.config.sample_format, "audio output opened");
        // Subscribe before returning, so that audio published right after `start()` is seen.
        let filter = EventFilter::of::<SynthesizedAudio>().or::<Interrupted>();
        let sub = self.context.subscribe_with(
            liveagent_core::Subscribe::filtered(filter, addr.clone().recipient()).label("player"),
        );
        let player = SoundDevicePlayer {
            context: self.context,
            queue,
            stream: Some(thread),
            device: opened,
            watchdog: Watchdog::new(),
            sub: Some(sub),
        };
        Ok(ctx.run(player))
    }
}

fn build_output(
    device: &cpal::Device,
    config: DeviceConfig,
    period_frames: Option<u32>,
    renderer: Renderer,
    shared: Arc<Shared>,
    addr: Addr<SoundDevicePlayer>,
) -> Result<cpal::Stream, LiveError> {
    macro_rules! build {
        ($t:ty) => {
            build_typed::<$t>(device, config, period_frames, renderer, shared, addr)
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
            "unsupported output sample format {other:?}"
        ))),
    }
}

fn build_typed<T>(
    device: &cpal::Device,
    config: DeviceConfig,
    period_frames: Option<u32>,
    mut renderer: Renderer,
    shared: Arc<Shared>,
    addr: Addr<SoundDevicePlayer>,
) -> Result<cpal::Stream, LiveError>
where
    T: SizedSample + FromSample<f32> + FromSample<i16> + Send + 'static,
{
    let channels = config.channels as usize;
    // Preallocated: the callback never allocates.
    let mut mono = vec![0f32; 16384];
    let err_shared = shared.clone();
    let stream_config = cpal::StreamConfig {
        channels: config.channels,
        sample_rate: config.sample_rate,
        buffer_size: match period_frames {
            Some(frames) => cpal::BufferSize::Fixed(frames),
            None => cpal::BufferSize::Default,
        },
    };
    device
        .build_output_stream::<T, _, _>(
            stream_config,
            move |data: &mut [T], info: &cpal::OutputCallbackInfo| {
                let mut cut = false;
                for block in data.chunks_mut(mono.len() * channels) {
                    let frames = block.len() / channels;
                    let r = renderer.render(&mut mono[..frames]);
                    cut |= r.cut;
                    upmix_from_mono(&mono[..frames], channels, block);
                }
                if cut {
                    let ts = info.timestamp();
                    shared.mark_cut_silent(ts.playback.duration_since(ts.callback));
                }
            },
            stream_error_callback("output", addr.recipient(), move || {
                err_shared
                    .xruns
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }),
            None,
        )
        .map_err(|e| cpal_err("cannot open the audio output", e))
}

/// Plays the conversation's `SynthesizedAudio` on a speaker, stops within one device period on
/// `Interrupted`, and publishes `PlaybackStopped` with the milliseconds of each item that were
/// really played.
///
/// ```no_run
/// use liveagent_audio::SoundDevicePlayer;
/// use liveagent_core::{ConversationContext, EventBus};
/// # actix::System::new().block_on(async {
/// let context = ConversationContext::new(EventBus::start_default(), 24_000, 24_000);
/// let player = SoundDevicePlayer::new(context.clone())
///     .prebuffer_ms(80)
///     .start()
///     .expect("no speaker");
/// let stats = player.send(liveagent_audio::GetPlaybackStats).await.unwrap();
/// println!("underruns so far: {}", stats.underruns);
/// # });
/// ```
pub struct SoundDevicePlayer {
    context: ConversationContext,
    queue: PlaybackQueue,
    stream: Option<StreamThread>,
    device: OpenedDevice,
    watchdog: Watchdog,
    sub: Option<SubscriberId>,
}

impl SoundDevicePlayer {
    /// A builder for a player in `context` (60 ms prebuffer, default output device).
    #[allow(clippy::new_ret_no_self)]
    pub fn new(context: ConversationContext) -> SoundDevicePlayerBuilder {
        SoundDevicePlayerBuilder {
            context,
            device: None,
            prebuffer: Duration::from_millis(60),
            ring: Duration::from_millis(2000),
            item_end: Duration::from_millis(300),
            max_queue: None,
            rate: None,
            channels: None,
            format: None,
            latency: 0,
            period_frames: None,
        }
    }

    fn publish_stopped(&mut self) {
        let now = Instant::now();
        for ev in self.queue.tick_events(now) {
            match &ev {
                LiveEvent::PlaybackStopped(s) => {
                    tracing::debug!(item = %s.item_id, played_ms = s.played_ms, interrupted = s.interrupted, "playback stopped")
                }
                LiveEvent::AudioPlaybackStarted(s) => {
                    tracing::debug!(item = %s.item_id, "playback started")
                }
                _ => {}
            }
            self.context.publish(ev);
        }
        if let Some(dropped) = self.queue.take_dropped(now) {
            self.context.publish(dropped);
        }
    }
}

impl Actor for SoundDevicePlayer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(Duration::from_millis(5), |this, ctx| {
            this.publish_stopped();
            this.watch(ctx);
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        if let Some(id) = self.sub.take() {
            self.context.unsubscribe(id);
        }
        self.stream.take();
        // Whatever was still playing was cut short: tell the session how much was heard.
        for ev in self.queue.abandon() {
            self.context.publish(ev);
        }
        tracing::debug!(device = %self.device.name, "audio output closed");
    }
}

impl Handler<LiveEvent> for SoundDevicePlayer {
    type Result = ();
    fn handle(&mut self, ev: LiveEvent, _: &mut Context<Self>) {
        match ev {
            LiveEvent::SynthesizedAudio(a) => self.queue.on_audio(&a, Instant::now()),
            LiveEvent::Interrupted(i) => {
                self.queue.on_interrupted(&i, Instant::now());
            }
            _ => {}
        }
    }
}

impl Handler<GetPlaybackStats> for SoundDevicePlayer {
    type Result = MessageResult<GetPlaybackStats>;
    fn handle(&mut self, _: GetPlaybackStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.queue.stats())
    }
}

impl Handler<GetDevice> for SoundDevicePlayer {
    type Result = MessageResult<GetDevice>;
    fn handle(&mut self, _: GetDevice, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.device.clone())
    }
}

impl Handler<StopAudio> for SoundDevicePlayer {
    type Result = ();
    fn handle(&mut self, _: StopAudio, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<DeviceFailed> for SoundDevicePlayer {
    type Result = ();
    fn handle(&mut self, msg: DeviceFailed, ctx: &mut Context<Self>) {
        if msg.fatal {
            tracing::error!(error = %msg.error, "audio output failed");
            self.context.publish(ErrorEvent::fatal("player", msg.error));
            ctx.stop();
        } else {
            tracing::warn!(error = %msg.error, "audio output error");
            if self
                .watchdog
                .on_trouble(msg.error.clone(), std::time::Instant::now())
            {
                self.context.publish(ErrorEvent::new("player", msg.error));
            }
        }
    }
}

impl SoundDevicePlayer {
    /// Escalates device errors to a fatal `ErrorEvent` when the stream has stalled.
    fn watch(&mut self, ctx: &mut Context<Self>) {
        let progress = self
            .queue
            .shared
            .renders
            .load(std::sync::atomic::Ordering::Relaxed);
        if let Some(err) = self.watchdog.check(progress, std::time::Instant::now()) {
            tracing::error!(error = %err, "audio output stalled");
            self.context.publish(ErrorEvent::fatal("player", err));
            ctx.stop();
        }
    }
}

/// Asks a player or recorder which device it opened, and how.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "OpenedDevice")]
pub struct GetDevice;
