//! The speaker's cpal output stream, owned by a dedicated thread that can rebuild it with a
//! bigger device buffer (the adaptive [`DeviceBuffer`](crate::DeviceBuffer)).
//!
//! The [`Renderer`] (the real-time half of the playback queue) is moved into the stream's
//! data callback inside a [`RendererSlot`]; when the stream is dropped, the slot hands the
//! renderer back (on drop, never in the callback), and the next stream takes it over with
//! its queued samples, counters and item state intact. Rebuilds are requested by the player
//! at a pause in playback, so no speech is lost.
//!
//! The data callback also detects device underruns without help from the host: a callback
//! that arrives after the audio buffered by the previous one has played out (cpal's
//! `playback` timestamp plus the previous buffer's length) means the device ran dry.

use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use actix::{Addr, Message};
use cpal::traits::{DeviceTrait, StreamTrait};
use cpal::{FromSample, SampleFormat, SizedSample};
use liveagent_core::LiveError;

use crate::convert::upmix_from_mono;
use crate::devbuf::{BufferPlan, DeviceBuffer};
use crate::device::{
    audio_err, close_audio_thread, cpal_err, find_device, resolve_config, stream_error_callback,
    DeviceConfig, OpenedDevice, CLOSE_WAIT,
};
use crate::playback::{PlaybackQueue, QueueOptions, Renderer, Shared};
use crate::player::SoundDevicePlayer;
use crate::DeviceFailed;

/// A callback later than this past the end of the previously buffered audio counts as a
/// device underrun (timestamps of sound servers jitter by a fraction of a millisecond).
const LATE_SLACK: Duration = Duration::from_micros(1500);

/// What the player asks of its output thread.
#[derive(Debug)]
pub(crate) enum OutputCommand {
    /// Rebuild the stream with this many frames per period.
    Resize(u32),
}

/// Sent by the output thread after a [`OutputCommand::Resize`].
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub(crate) struct Resized {
    /// The period asked for.
    pub requested: u32,
    /// The period of the stream now playing (`None`: unknown).
    pub frames: Option<u32>,
    /// Why the bigger buffer could not be opened (the old size plays on).
    pub error: Option<LiveError>,
}

/// How to open the output.
pub(crate) struct OutputSetup {
    pub device: Option<String>,
    pub rate: Option<u32>,
    pub channels: Option<u16>,
    pub format: Option<SampleFormat>,
    pub buffer: DeviceBuffer,
    pub source_rate: u32,
    pub queue: QueueOptions,
}

/// What [`OutputThread::spawn`] opened.
pub(crate) struct Opened {
    pub queue: PlaybackQueue,
    pub device: OpenedDevice,
    pub plan: BufferPlan,
}

/// Owns the output stream on a dedicated thread (streams are not `Send` on every platform);
/// dropping it stops and closes the stream, waiting at most [`CLOSE_WAIT`] for that (see
/// [`close_audio_thread`]); [`abandon`](Self::abandon) does not wait at all.
pub(crate) struct OutputThread {
    commands: Option<mpsc::Sender<OutputCommand>>,
    join: Option<JoinHandle<()>>,
    done: mpsc::Receiver<()>,
    wait: Duration,
}

impl OutputThread {
    /// Opens the device on a new thread and starts playing; returns once it plays, or with
    /// the error.
    pub(crate) fn spawn(
        setup: OutputSetup,
        addr: Addr<SoundDevicePlayer>,
    ) -> Result<(OutputThread, Opened), LiveError> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (cmd_tx, cmd_rx) = mpsc::channel::<OutputCommand>();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let join = std::thread::Builder::new()
            .name("liveagent-player".into())
            .spawn(move || {
                // Disconnects `done` when this thread ends, however it ends.
                let _done = done_tx;
                play(setup, addr, ready_tx, cmd_rx)
            })
            .map_err(|e| audio_err(format!("cannot start the audio thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(opened)) => Ok((
                OutputThread {
                    commands: Some(cmd_tx),
                    join: Some(join),
                    done: done_rx,
                    wait: CLOSE_WAIT,
                },
                opened,
            )),
            Ok(Err(e)) => {
                close_audio_thread("liveagent-player", join, &done_rx, CLOSE_WAIT);
                Err(e)
            }
            Err(_) => {
                close_audio_thread("liveagent-player", join, &done_rx, CLOSE_WAIT);
                Err(audio_err(
                    "the audio thread panicked while opening the device",
                ))
            }
        }
    }

    /// Asks the thread to rebuild the stream; the answer comes back as [`Resized`].
    pub(crate) fn send(&self, cmd: OutputCommand) -> bool {
        self.commands.as_ref().is_some_and(|c| c.send(cmd).is_ok())
    }
}

impl OutputThread {
    /// Tells the thread to close the stream without waiting for it: for a stream whose
    /// device stopped playing (its thread may be stuck for good).
    pub(crate) fn abandon(mut self) {
        self.wait = Duration::ZERO;
    }
}

impl Drop for OutputThread {
    fn drop(&mut self) {
        drop(self.commands.take());
        if let Some(join) = self.join.take() {
            close_audio_thread("liveagent-player", join, &self.done, self.wait);
        }
    }
}

/// The output thread's body: opens the device, reports it on `ready`, then serves resize
/// commands until the player goes away (drops its sender).
fn play(
    setup: OutputSetup,
    addr: Addr<SoundDevicePlayer>,
    ready: mpsc::Sender<Result<Opened, LiveError>>,
    commands: mpsc::Receiver<OutputCommand>,
) {
    match open(setup, addr.clone()) {
        Ok((mut out, opened)) => {
            let _ = ready.send(Ok(opened));
            while let Ok(cmd) = commands.recv() {
                match cmd {
                    OutputCommand::Resize(frames) => {
                        if !out.resize(frames, &addr) {
                            break;
                        }
                    }
                }
            }
            drop(out);
        }
        Err(e) => {
            let _ = ready.send(Err(e));
        }
    }
}

/// The playing stream and what is needed to rebuild it (lives on the output thread).
struct LiveOutput {
    device: cpal::Device,
    config: DeviceConfig,
    frames: Option<u32>,
    stream: Option<cpal::Stream>,
    home: Arc<Mutex<Option<Renderer>>>,
    shared: Arc<Shared>,
}

impl LiveOutput {
    /// Rebuilds the stream with `frames` per period; on failure goes back to the old size.
    /// False when no stream could be opened again (reported as a fatal device error).
    fn resize(&mut self, frames: u32, addr: &Addr<SoundDevicePlayer>) -> bool {
        drop(self.stream.take());
        match self.start(Some(frames), addr) {
            Ok(actual) => {
                addr.do_send(Resized {
                    requested: frames,
                    frames: actual,
                    error: None,
                });
                true
            }
            Err(e) => {
                let old = self.frames;
                match self.start(old, addr) {
                    Ok(actual) => {
                        addr.do_send(Resized {
                            requested: frames,
                            frames: actual,
                            error: Some(e),
                        });
                        true
                    }
                    Err(e2) => {
                        addr.do_send(DeviceFailed {
                            error: audio_err(format!(
                                "cannot reopen the audio output with a bigger buffer ({}) nor with the old one ({})",
                                e.message, e2.message
                            )),
                            fatal: true,
                        });
                        false
                    }
                }
            }
        }
    }

    /// Builds and plays a stream with `frames` per period (`None`: the host's default),
    /// taking the renderer from its home. Returns the period in use.
    fn start(
        &mut self,
        frames: Option<u32>,
        addr: &Addr<SoundDevicePlayer>,
    ) -> Result<Option<u32>, LiveError> {
        let renderer = self
            .home
            .lock()
            .ok()
            .and_then(|mut h| h.take())
            .ok_or_else(|| audio_err("the audio output lost its renderer"))?;
        let slot = RendererSlot {
            renderer: Some(renderer),
            home: self.home.clone(),
        };
        // On failure cpal drops the callback, and the slot sends the renderer home.
        let stream = build_output(
            &self.device,
            self.config,
            frames,
            slot,
            self.shared.clone(),
            addr.clone(),
        )?;
        stream
            .play()
            .map_err(|e| cpal_err("cannot start the audio output", e))?;
        let actual = stream.buffer_size().ok().or(frames);
        self.frames = frames;
        self.stream = Some(stream);
        Ok(actual)
    }
}

/// Opens the device and starts the first stream.
fn open(
    setup: OutputSetup,
    addr: Addr<SoundDevicePlayer>,
) -> Result<(LiveOutput, Opened), LiveError> {
    let device = find_device(setup.device.as_deref(), false)?;
    let config = resolve_config(&device, false, setup.rate, setup.channels, setup.format)?;
    let name = device
        .description()
        .map(|d| d.name().to_owned())
        .unwrap_or_else(|_| "?".into());
    let plan = BufferPlan::new(
        setup.buffer,
        config.sample_rate,
        supported_period_range(&device, config),
    );
    let opts = QueueOptions {
        output_rate: config.sample_rate,
        ..setup.queue
    };
    let (queue, renderer) = PlaybackQueue::new(setup.source_rate, opts)?;
    let mut out = LiveOutput {
        device,
        config,
        frames: None,
        stream: None,
        home: Arc::new(Mutex::new(Some(renderer))),
        shared: queue.shared.clone(),
    };
    let (actual, plan) = match out.start(plan.frames, &addr) {
        Ok(actual) => (actual, plan),
        Err(e) if plan.adaptive && plan.frames.is_some() => {
            // Some hosts refuse fixed periods: play with their default, without growing.
            tracing::warn!(error = %e, frames = ?plan.frames,
                "the audio output refused a fixed buffer; using the host's default");
            let fallback = BufferPlan::new(DeviceBuffer::HostDefault, config.sample_rate, None);
            (out.start(None, &addr)?, fallback)
        }
        Err(e) => return Err(e),
    };
    Ok((
        out,
        Opened {
            queue,
            device: OpenedDevice {
                name,
                config,
                buffer_frames: actual,
            },
            plan,
        },
    ))
}

/// The period sizes the device supports for `config`, when the host says.
fn supported_period_range(device: &cpal::Device, config: DeviceConfig) -> Option<(u32, u32)> {
    let ranges = device.supported_output_configs().ok()?;
    let mut best = None;
    for r in ranges {
        if r.channels() == config.channels
            && r.sample_format() == config.sample_format
            && r.contains_rate(config.sample_rate)
        {
            if let cpal::SupportedBufferSize::Range { min, max } = *r.buffer_size() {
                best = Some((min, max));
                break;
            }
        }
    }
    best
}

/// Holds the renderer inside the data callback; gives it back when the callback is dropped
/// (the stream closed), so the next stream can take over.
struct RendererSlot {
    renderer: Option<Renderer>,
    home: Arc<Mutex<Option<Renderer>>>,
}

impl Drop for RendererSlot {
    fn drop(&mut self) {
        if let Some(r) = self.renderer.take() {
            match self.home.lock() {
                Ok(mut h) => *h = Some(r),
                Err(p) => *p.into_inner() = Some(r),
            }
        }
    }
}

fn build_output(
    device: &cpal::Device,
    config: DeviceConfig,
    period_frames: Option<u32>,
    slot: RendererSlot,
    shared: Arc<Shared>,
    addr: Addr<SoundDevicePlayer>,
) -> Result<cpal::Stream, LiveError> {
    macro_rules! build {
        ($t:ty) => {
            build_typed::<$t>(device, config, period_frames, slot, shared, addr)
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
    mut slot: RendererSlot,
    shared: Arc<Shared>,
    addr: Addr<SoundDevicePlayer>,
) -> Result<cpal::Stream, LiveError>
where
    T: SizedSample + FromSample<f32> + FromSample<i16> + Send + 'static,
{
    let channels = config.channels as usize;
    let rate = config.sample_rate.max(1) as u64;
    // Preallocated: the callback never allocates.
    let mut mono = vec![0f32; 16384];
    let err_shared = shared.clone();
    // When the audio buffered so far runs out (previous callback's playback time plus its
    // length); a later callback means the device ran dry.
    let mut buffered_until: Option<cpal::StreamInstant> = None;
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
                let ts = info.timestamp();
                let had_xrun = shared.xrun_flag.swap(false, Ordering::Relaxed);
                if let Some(until) = buffered_until {
                    let late = ts
                        .callback
                        .checked_duration_since(until)
                        .is_some_and(|d| d > LATE_SLACK);
                    // The callback after an xrun is late too: counted once, as the xrun.
                    if late && !had_xrun {
                        shared.late_callbacks.fetch_add(1, Ordering::Relaxed);
                        if shared.last_audible.load(Ordering::Relaxed) {
                            shared.device_underruns.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                let Some(renderer) = slot.renderer.as_mut() else {
                    data.fill(T::EQUILIBRIUM);
                    return;
                };
                let mut cut = false;
                let mut audio = 0;
                for block in data.chunks_mut(mono.len() * channels) {
                    let frames = block.len() / channels;
                    let r = renderer.render(&mut mono[..frames]);
                    cut |= r.cut;
                    audio += r.audio_frames;
                    upmix_from_mono(&mono[..frames], channels, block);
                }
                shared.last_audible.store(audio > 0, Ordering::Relaxed);
                let frames = (data.len() / channels.max(1)) as u64;
                buffered_until = ts
                    .playback
                    .checked_add(Duration::from_nanos(frames * 1_000_000_000 / rate));
                if cut {
                    shared.mark_cut_silent(ts.playback.duration_since(ts.callback));
                }
            },
            stream_error_callback("output", addr.recipient(), move || {
                err_shared.xruns.fetch_add(1, Ordering::Relaxed);
                err_shared.xrun_flag.store(true, Ordering::Relaxed);
                if err_shared.last_audible.load(Ordering::Relaxed) {
                    err_shared.device_underruns.fetch_add(1, Ordering::Relaxed);
                }
            }),
            None,
        )
        .map_err(|e| cpal_err("cannot open the audio output", e))
}
