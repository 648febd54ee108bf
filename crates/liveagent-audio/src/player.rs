//! [`SoundDevicePlayer`]: plays `SynthesizedAudio` on a speaker.

use std::time::{Duration, Instant};

use actix::prelude::*;
use cpal::SampleFormat;
use liveagent_core::{
    ConversationContext, ErrorEvent, EventFilter, Interrupted, LiveError, LiveEvent, SubscriberId,
    SynthesizedAudio, UnderrunKind,
};

use crate::devbuf::{BufferPlan, DeviceBuffer, UnderrunReporter};
use crate::device::{OpenedDevice, Watchdog};
use crate::output::{OutputCommand, OutputSetup, OutputThread, Resized};
use crate::playback::{PlaybackQueue, QueueOptions, DEFAULT_MAX_QUEUED_BEYOND_PREBUFFER};
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
    buffer: DeviceBuffer,
}

impl SoundDevicePlayerBuilder {
    /// Asks the device for a fixed buffer of `frames` frames per callback, never resized
    /// (shorthand for `device_buffer(DeviceBuffer::Fixed(frames))`). A smaller buffer makes
    /// the speaker go silent sooner after a barge-in (the player cuts at the next callback,
    /// and what the device already holds still plays), at the risk of underruns on a busy
    /// machine. Default: [`DeviceBuffer::Adaptive`], which starts small and grows after
    /// underruns.
    pub fn device_buffer_frames(mut self, frames: u32) -> Self {
        self.buffer = DeviceBuffer::Fixed(frames.max(1));
        self
    }

    /// How to size the device buffer (default [`DeviceBuffer::Adaptive`]: about 5 ms per
    /// period, doubled after each underrun during speech, up to about 40 ms). Underruns are
    /// counted in [`PlaybackStats`](crate::PlaybackStats) and published as
    /// [`PlaybackUnderrun`](liveagent_core::PlaybackUnderrun) events with every policy.
    pub fn device_buffer(mut self, buffer: DeviceBuffer) -> Self {
        self.buffer = buffer;
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
        let setup = OutputSetup {
            device: self.device.clone(),
            rate: self.rate,
            channels: self.channels,
            format: self.format,
            buffer: self.buffer,
            source_rate: self.context.output_sample_rate(),
            queue: QueueOptions {
                output_rate: 0,
                prebuffer: self.prebuffer,
                ring: self.ring,
                item_end: self.item_end,
                cut_timeout: Duration::from_millis(500),
                max_queued: self
                    .max_queue
                    .unwrap_or(self.prebuffer + DEFAULT_MAX_QUEUED_BEYOND_PREBUFFER),
            },
        };
        let (thread, opened) = OutputThread::spawn(setup, addr.clone())?;
        let mut queue = opened.queue;
        queue.measure_latency(self.latency);
        let device = opened.device;
        tracing::info!(device = %device.name, rate = device.config.sample_rate,
            channels = device.config.channels, format = ?device.config.sample_format,
            buffer_frames = ?device.buffer_frames, adaptive = opened.plan.adaptive,
            "audio output opened");
        // Subscribe before returning, so that audio published right after `start()` is seen.
        let filter = EventFilter::of::<SynthesizedAudio>().or::<Interrupted>();
        let sub = self.context.subscribe_with(
            liveagent_core::Subscribe::filtered(filter, addr.clone().recipient()).label("player"),
        );
        let player = SoundDevicePlayer {
            context: self.context,
            queue,
            stream: Some(thread),
            device,
            growth: Growth {
                requested: opened.plan.frames.unwrap_or(0),
                ..Growth::default()
            },
            plan: opened.plan,
            watchdog: Watchdog::new(),
            sub: Some(sub),
        };
        Ok(ctx.run(player))
    }
}

/// The adaptive buffer's state in the actor.
#[derive(Debug, Default)]
struct Growth {
    /// The period last asked of the host (hosts round it: ALSA's pulse plugin gives two
    /// thirds of it, in three periods); growth doubles this, not the rounded figure.
    requested: u32,
    /// Device underruns seen so far.
    seen: u64,
    /// The period to grow to at the next pause.
    pending: Option<u32>,
    /// A rebuild was requested and not answered yet.
    resizing: bool,
    /// Streams rebuilt with a bigger buffer.
    resizes: u64,
    device_reports: UnderrunReporter,
    starved_reports: UnderrunReporter,
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
    stream: Option<OutputThread>,
    device: OpenedDevice,
    plan: BufferPlan,
    growth: Growth,
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
            buffer: DeviceBuffer::default(),
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
        self.adapt(now);
    }

    /// Counts device underruns, reports them, and grows the device buffer at a pause.
    fn adapt(&mut self, now: Instant) {
        let shared = &self.queue.shared;
        let device = shared
            .device_underruns
            .load(std::sync::atomic::Ordering::Relaxed);
        let starved = shared.underruns.load(std::sync::atomic::Ordering::Relaxed);
        let frames = self.device.buffer_frames.unwrap_or(0);
        let rate = self.device.config.sample_rate;
        if device > self.growth.seen {
            self.growth.seen = device;
            if self.growth.pending.is_none() && !self.growth.resizing {
                self.growth.pending = self.plan.grow(self.growth.requested);
            }
        }
        if let Some(ev) = self.growth.device_reports.report(
            UnderrunKind::Device,
            device,
            now,
            frames,
            rate,
            self.growth.pending,
        ) {
            tracing::warn!(count = ev.count, new = ev.new, buffer_frames = frames,
                grow_to = ?ev.grow_to, "audio output underrun (the device ran dry during speech)");
            self.context.publish(ev);
        }
        if let Some(ev) = self.growth.starved_reports.report(
            UnderrunKind::Starved,
            starved,
            now,
            frames,
            rate,
            None,
        ) {
            tracing::debug!(
                count = ev.count,
                new = ev.new,
                "playback starved (audio arrived later than it plays)"
            );
            self.context.publish(ev);
        }
        if let Some(to) = self.growth.pending {
            if !self.growth.resizing && self.queue.is_idle() {
                let sent = self
                    .stream
                    .as_ref()
                    .is_some_and(|s| s.send(OutputCommand::Resize(to)));
                if sent {
                    tracing::info!(from = frames, to, "growing the audio output buffer");
                    self.growth.resizing = true;
                }
                self.growth.pending = None;
            }
        }
    }
}

impl Handler<Resized> for SoundDevicePlayer {
    type Result = ();
    fn handle(&mut self, msg: Resized, _: &mut Context<Self>) {
        self.growth.resizing = false;
        match msg.error {
            None => {
                self.growth.resizes += 1;
                self.growth.requested = msg.requested;
                tracing::info!(requested = msg.requested, frames = ?msg.frames,
                    "audio output buffer grown");
            }
            Some(e) => {
                tracing::warn!(error = %e, requested = msg.requested,
                    "cannot grow the audio output buffer; keeping the old size");
                // Do not try again.
                self.plan.max = self.growth.requested;
            }
        }
        self.device.buffer_frames = msg.frames;
        // Underruns counted while the rebuild was under way belong to the old size.
        self.growth.seen = self
            .queue
            .shared
            .device_underruns
            .load(std::sync::atomic::Ordering::Relaxed);
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
        let mut stats = self.queue.stats();
        stats.device_buffer_frames = self.device.buffer_frames.unwrap_or(0);
        stats.device_buffer_resizes = self.growth.resizes;
        MessageResult(stats)
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
        if let Some(err) = self
            .watchdog
            .check(progress, std::time::Instant::now(), "output")
        {
            tracing::error!(error = %err, "audio output stalled");
            self.context.publish(ErrorEvent::fatal("player", err));
            // Its thread may be stuck in the driver for good: do not wait for it.
            if let Some(stream) = self.stream.take() {
                stream.abandon();
            }
            ctx.stop();
        }
    }
}

/// Asks a player or recorder which device it opened, and how.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "OpenedDevice")]
pub struct GetDevice;
