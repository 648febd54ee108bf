//! Device listing and selection, and the dedicated thread that owns a cpal stream.

use std::sync::mpsc;
use std::thread::JoinHandle;

use cpal::traits::{DeviceTrait, HostTrait};
use cpal::SampleFormat;
use liveagent_core::{ErrorKind, LiveError};

/// A device's stream format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceConfig {
    /// Frames per second.
    pub sample_rate: u32,
    /// Interleaved channels.
    pub channels: u16,
    /// Sample format.
    pub sample_format: SampleFormat,
}

/// An audio device, from [`list_input_devices`] or [`list_output_devices`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The name to pass to `.device(name)`.
    pub name: String,
    /// True for the host's default device of that direction.
    pub is_default: bool,
    /// The device's default configuration, when it could be queried.
    pub default_config: Option<DeviceConfig>,
}

/// What was opened: the device's name and the configuration in use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenedDevice {
    /// Device name.
    pub name: String,
    /// The stream's configuration.
    pub config: DeviceConfig,
    /// Frames per device period (callback) in use, when the host says. For the player this
    /// follows the adaptive device buffer as it grows.
    pub buffer_frames: Option<u32>,
}

pub(crate) fn audio_err(msg: impl Into<String>) -> LiveError {
    LiveError::new(ErrorKind::Audio, msg)
}

pub(crate) fn cpal_err(what: &str, e: cpal::Error) -> LiveError {
    audio_err(format!("{what}: {e}")).with_code(format!("{:?}", e.kind()))
}

fn list(input: bool) -> Result<Vec<DeviceInfo>, LiveError> {
    let host = cpal::default_host();
    let default = if input {
        host.default_input_device()
    } else {
        host.default_output_device()
    };
    let devices = if input {
        host.input_devices()
    } else {
        host.output_devices()
    }
    .map_err(|e| cpal_err("cannot list audio devices", e))?;
    let mut all: Vec<cpal::Device> = devices.collect();
    // Hosts may not enumerate their default device (ALSA without hints): list it anyway.
    if let Some(d) = &default {
        if !all.contains(d) {
            all.insert(0, d.clone());
        }
    }
    let mut out = Vec::new();
    for d in all {
        let Ok(desc) = d.description() else { continue };
        let cfg = if input {
            d.default_input_config()
        } else {
            d.default_output_config()
        };
        out.push(DeviceInfo {
            name: desc.name().to_owned(),
            is_default: default.as_ref() == Some(&d),
            default_config: cfg.ok().map(|c| DeviceConfig {
                sample_rate: c.sample_rate(),
                channels: c.channels(),
                sample_format: c.sample_format(),
            }),
        });
    }
    Ok(out)
}

/// The input (microphone) devices of the default host, with their default configurations.
///
/// ```no_run
/// for d in liveagent_audio::list_input_devices().unwrap() {
///     println!("{}{} {:?}", d.name, if d.is_default { " (default)" } else { "" }, d.default_config);
/// }
/// ```
pub fn list_input_devices() -> Result<Vec<DeviceInfo>, LiveError> {
    list(true)
}

/// The output (speaker) devices of the default host, with their default configurations.
pub fn list_output_devices() -> Result<Vec<DeviceInfo>, LiveError> {
    list(false)
}

/// Finds a device: the default one when `name` is `None`; else the device whose name is
/// `name`, or failing that the only one whose name contains it (case-insensitive).
pub(crate) fn find_device(name: Option<&str>, input: bool) -> Result<cpal::Device, LiveError> {
    let host = cpal::default_host();
    let dir = if input { "input" } else { "output" };
    let Some(name) = name else {
        let d = if input {
            host.default_input_device()
        } else {
            host.default_output_device()
        };
        return d.ok_or_else(|| {
            audio_err(format!(
                "no default audio {dir} device (no sound card or sound server available)"
            ))
            .with_code("no_device")
        });
    };
    let devices: Vec<cpal::Device> = if input {
        host.input_devices()
    } else {
        host.output_devices()
    }
    .map_err(|e| cpal_err("cannot list audio devices", e))?
    .collect();
    let mut devices = devices;
    let default = if input {
        host.default_input_device()
    } else {
        host.default_output_device()
    };
    if let Some(d) = default {
        if !devices.contains(&d) {
            devices.insert(0, d);
        }
    }
    let named: Vec<(String, cpal::Device)> = devices
        .into_iter()
        .filter_map(|d| d.description().ok().map(|desc| (desc.name().to_owned(), d)))
        .collect();
    if let Some(pos) = named.iter().position(|(n, _)| n == name) {
        return Ok(named.into_iter().nth(pos).expect("position is valid").1);
    }
    let lower = name.to_lowercase();
    let mut matches: Vec<(String, cpal::Device)> = named
        .iter()
        .filter(|(n, _)| n.to_lowercase().contains(&lower))
        .cloned()
        .collect();
    if matches.len() == 1 {
        return Ok(matches.pop().expect("one match").1);
    }
    let names: Vec<&str> = named.iter().map(|(n, _)| n.as_str()).collect();
    Err(audio_err(format!(
        "no audio {dir} device named '{name}'{} (available: {})",
        if matches.is_empty() {
            ""
        } else {
            " (ambiguous)"
        },
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    ))
    .with_code("no_device"))
}

/// The stream configuration: the device's default, with the caller's overrides.
pub(crate) fn resolve_config(
    device: &cpal::Device,
    input: bool,
    rate: Option<u32>,
    channels: Option<u16>,
    format: Option<SampleFormat>,
) -> Result<DeviceConfig, LiveError> {
    let default = if input {
        device.default_input_config()
    } else {
        device.default_output_config()
    };
    let base = match (default, rate, channels, format) {
        (Ok(c), _, _, _) => DeviceConfig {
            sample_rate: c.sample_rate(),
            channels: c.channels(),
            sample_format: c.sample_format(),
        },
        // Without a default config, a fully specified request can still be tried.
        (Err(_), Some(r), Some(ch), Some(f)) => DeviceConfig {
            sample_rate: r,
            channels: ch,
            sample_format: f,
        },
        (Err(e), ..) => return Err(cpal_err("cannot query the audio device's configuration", e)),
    };
    let mut config = DeviceConfig {
        sample_rate: rate.unwrap_or(base.sample_rate),
        channels: channels.unwrap_or(base.channels).max(1),
        sample_format: format.unwrap_or(base.sample_format),
    };
    if format.is_none() && !is_supported_format(config.sample_format) {
        // e.g. a 24-bit default: pick a format we convert, at the same rate and channels.
        let ranges: Vec<cpal::SupportedStreamConfigRange> = if input {
            device.supported_input_configs().map(|r| r.collect())
        } else {
            device.supported_output_configs().map(|r| r.collect())
        }
        .unwrap_or_default();
        let pick = [
            SampleFormat::F32,
            SampleFormat::I16,
            SampleFormat::I32,
            SampleFormat::F64,
        ]
        .into_iter()
        .find(|f| {
            ranges.iter().any(|r| {
                r.sample_format() == *f
                    && r.channels() == config.channels
                    && r.contains_rate(config.sample_rate)
            })
        });
        match pick {
            Some(f) => config.sample_format = f,
            None => {
                return Err(audio_err(format!(
                    "the audio device's sample format {:?} is not supported; choose one with device_format()",
                    config.sample_format
                )))
            }
        }
    }
    Ok(config)
}

/// The sample formats the recorder and player convert.
pub(crate) fn is_supported_format(f: SampleFormat) -> bool {
    matches!(
        f,
        SampleFormat::I8
            | SampleFormat::I16
            | SampleFormat::I32
            | SampleFormat::I64
            | SampleFormat::U8
            | SampleFormat::U16
            | SampleFormat::U32
            | SampleFormat::U64
            | SampleFormat::F32
            | SampleFormat::F64
    )
}

/// How long dropping an audio thread waits for it to close its stream before leaving it
/// behind. Closing a healthy stream takes milliseconds; a thread still busy after this is
/// stuck in the driver or sound-server library (see [`close_audio_thread`]).
pub(crate) const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Waits up to `wait` for an audio thread to finish closing its stream (`done` disconnects
/// when the thread ends), then joins it; a thread still running then is detached and logged,
/// never waited for.
///
/// This is what keeps a lost device from hanging the actor (and every actor on its
/// arbiter): on PulseAudio's ALSA plugin a dying sound server can deadlock libpulse's
/// threaded main loop against cpal's capture thread (the capture thread waits for the main
/// loop's lock inside `snd_pcm_poll_descriptors_revents`; the main loop thread, holding it
/// while it tears the dead connection down, waits in `pa_memimport_free` for a shared-memory
/// block that is still acquired). cpal's error callback then never fires and its
/// `Stream::drop` joins that capture thread forever. Such a thread (and the stream it owns)
/// can only be left behind; it costs a few stuck threads until the process exits.
pub(crate) fn close_audio_thread(
    what: &str,
    join: JoinHandle<()>,
    done: &mpsc::Receiver<()>,
    wait: std::time::Duration,
) {
    match done.recv_timeout(wait) {
        Err(mpsc::RecvTimeoutError::Timeout) => {
            tracing::warn!(
                thread = what,
                waited_ms = wait.as_millis() as u64,
                "the audio thread did not close its stream (driver or sound server stuck); leaving it behind"
            );
        }
        _ => {
            let _ = join.join();
        }
    }
}

/// What the owner of a [`StreamThread`] asks of its stream (dropping the sender closes it).
enum Control {
    /// Start the stream; a failure goes to `report` as a fatal [`DeviceFailed`](crate::DeviceFailed).
    Play {
        direction: &'static str,
        report: actix::Recipient<crate::DeviceFailed>,
    },
}

/// Owns a cpal stream on a dedicated thread (streams are not `Send` on every platform);
/// dropping it stops and closes the stream, waiting at most [`CLOSE_WAIT`] for that (see
/// [`close_audio_thread`]); [`abandon`](Self::abandon) does not wait at all.
pub(crate) struct StreamThread {
    name: String,
    /// Commands for the stream's thread; dropping it closes the stream.
    control: Option<mpsc::Sender<Control>>,
    join: Option<JoinHandle<()>>,
    done: mpsc::Receiver<()>,
    wait: std::time::Duration,
}

impl StreamThread {
    /// Runs `open` on a new thread; it must build the stream, and may start it (or leave
    /// that to [`play`](Self::play)). Returns once `open` returned, or with its error.
    pub(crate) fn spawn<F>(name: &str, open: F) -> Result<(StreamThread, OpenedDevice), LiveError>
    where
        F: FnOnce() -> Result<(cpal::Stream, OpenedDevice), LiveError> + Send + 'static,
    {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (control_tx, control_rx) = mpsc::channel::<Control>();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let join = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                // Disconnects `done` when this thread ends, however it ends.
                let _done = done_tx;
                match open() {
                    Ok((stream, info)) => {
                        let _ = ready_tx.send(Ok(info));
                        // Until told to stop (the owner dropped the sender).
                        while let Ok(control) = control_rx.recv() {
                            match control {
                                Control::Play { direction, report } => {
                                    use cpal::traits::StreamTrait;
                                    if let Err(e) = stream.play() {
                                        report.do_send(crate::DeviceFailed {
                                            error: cpal_err(
                                                &format!("cannot start the audio {direction}"),
                                                e,
                                            ),
                                            fatal: true,
                                        });
                                    }
                                }
                            }
                        }
                        drop(stream);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| audio_err(format!("cannot start the audio thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(info)) => Ok((
                StreamThread {
                    name: name.to_owned(),
                    control: Some(control_tx),
                    join: Some(join),
                    done: done_rx,
                    wait: CLOSE_WAIT,
                },
                info,
            )),
            Ok(Err(e)) => {
                close_audio_thread(name, join, &done_rx, CLOSE_WAIT);
                Err(e)
            }
            Err(_) => {
                close_audio_thread(name, join, &done_rx, CLOSE_WAIT);
                Err(audio_err(
                    "the audio thread panicked while opening the device",
                ))
            }
        }
    }

    /// Starts the stream (on its thread, without waiting); a failure is sent to `report` as
    /// a fatal [`DeviceFailed`](crate::DeviceFailed). `direction`: "input" or "output".
    pub(crate) fn play(
        &self,
        direction: &'static str,
        report: actix::Recipient<crate::DeviceFailed>,
    ) {
        if let Some(control) = &self.control {
            let _ = control.send(Control::Play { direction, report });
        }
    }

    /// Tells the thread to close the stream without waiting for it: for a stream whose
    /// device stopped delivering (its thread may be stuck for good).
    pub(crate) fn abandon(mut self) {
        self.wait = std::time::Duration::ZERO;
    }
}

impl Drop for StreamThread {
    fn drop(&mut self) {
        drop(self.control.take());
        if let Some(join) = self.join.take() {
            close_audio_thread(&self.name, join, &self.done, self.wait);
        }
    }
}

/// How the stream's error callback treats a cpal error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Severity {
    /// The device is gone or the stream invalid: the stream will not recover.
    Fatal,
    /// A buffer over/underrun: counted only.
    Xrun,
    /// Anything else (I/O errors of a sound server...): the stream goes on; reported, and
    /// escalated by the [`Watchdog`] if the stream stops making progress.
    Trouble,
}

/// The error callback of a cpal stream (`direction`: "input" or "output"): counts xruns with
/// `on_xrun`, reports the first fatal error, and every 100th other error, to `addr`. Shared by
/// the recorder and the player; it never blocks (actix `do_send`).
pub(crate) fn stream_error_callback(
    direction: &'static str,
    addr: actix::Recipient<crate::DeviceFailed>,
    on_xrun: impl Fn() + Send + 'static,
) -> impl FnMut(cpal::Error) + Send + 'static {
    let mut reported = false;
    let mut troubles: u64 = 0;
    move |e: cpal::Error| match classify(&e) {
        Severity::Xrun => on_xrun(),
        Severity::Fatal => {
            if !reported {
                reported = true;
                addr.do_send(crate::DeviceFailed {
                    error: cpal_err(&format!("audio {direction} failed"), e),
                    fatal: true,
                });
            }
        }
        Severity::Trouble => {
            if troubles.is_multiple_of(100) {
                addr.do_send(crate::DeviceFailed {
                    error: cpal_err(&format!("audio {direction} error"), e),
                    fatal: false,
                });
            }
            troubles += 1;
        }
    }
}

pub(crate) fn classify(e: &cpal::Error) -> Severity {
    match e.kind() {
        cpal::ErrorKind::Xrun | cpal::ErrorKind::RealtimeDenied => Severity::Xrun,
        cpal::ErrorKind::DeviceNotAvailable | cpal::ErrorKind::StreamInvalidated => Severity::Fatal,
        _ => Severity::Trouble,
    }
}

/// Turns a stream that stops making progress (its callback is no longer called) into a
/// fatal error: after [`Watchdog::STALL`] when the device reported errors before, and after
/// [`Watchdog::SILENT_STALL`] when it reported nothing (a device or sound server that went
/// away without the host noticing, see [`close_audio_thread`]).
#[derive(Debug)]
pub(crate) struct Watchdog {
    trouble: Option<LiveError>,
    progress: u64,
    progress_at: std::time::Instant,
    published_at: Option<std::time::Instant>,
}

impl Watchdog {
    pub(crate) const STALL: std::time::Duration = std::time::Duration::from_secs(3);
    /// No callback for this long without any error: the device is gone all the same. Long
    /// enough that no running stream (periods are milliseconds to ~100 ms, a loaded machine
    /// delays a callback by well under a second) trips it.
    pub(crate) const SILENT_STALL: std::time::Duration = std::time::Duration::from_secs(4);

    pub(crate) fn new() -> Self {
        Watchdog {
            trouble: None,
            progress: 0,
            progress_at: std::time::Instant::now(),
            published_at: None,
        }
    }

    /// Notes a non-fatal error; true when it should be published (at most every 5 s).
    pub(crate) fn on_trouble(&mut self, err: LiveError, now: std::time::Instant) -> bool {
        self.trouble = Some(err);
        let publish = self
            .published_at
            .is_none_or(|t| now.saturating_duration_since(t) >= std::time::Duration::from_secs(5));
        if publish {
            self.published_at = Some(now);
        }
        publish
    }

    /// Feeds the stream's progress counter; returns the fatal error once the stream has
    /// stalled (after errors, or silently for longer). `direction`: "input" or "output".
    pub(crate) fn check(
        &mut self,
        progress: u64,
        now: std::time::Instant,
        direction: &str,
    ) -> Option<LiveError> {
        if progress != self.progress {
            self.progress = progress;
            self.progress_at = now;
            return None;
        }
        let stalled = now.saturating_duration_since(self.progress_at);
        if stalled < Self::STALL {
            return None;
        }
        if let Some(e) = self.trouble.take() {
            return Some(
                audio_err(format!(
                    "the audio device stopped working ({}; no audio for {} s)",
                    e.message,
                    Self::STALL.as_secs()
                ))
                .with_code(e.code.unwrap_or_else(|| "stalled".into())),
            );
        }
        (stalled >= Self::SILENT_STALL).then(|| {
            audio_err(format!(
                "the audio {direction} stopped: no audio from the device for {} s and no error \
                 from the driver (device unplugged, or the sound server went away)",
                Self::SILENT_STALL.as_secs()
            ))
            .with_code("stalled")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn watchdog_escalates_a_silent_stall() {
        let t0 = Instant::now();
        let mut w = Watchdog::new();
        assert!(w.check(1, t0, "input").is_none());
        // Progress resets the clock.
        assert!(w.check(2, t0 + Duration::from_secs(1), "input").is_none());
        // No progress and no error: quiet until SILENT_STALL has passed.
        let at = t0 + Duration::from_secs(1) + Watchdog::STALL;
        assert!(w.check(2, at, "input").is_none());
        let at = t0 + Duration::from_secs(1) + Watchdog::SILENT_STALL;
        let err = w.check(2, at, "input").expect("a silent stall is fatal");
        assert_eq!(err.kind, ErrorKind::Audio);
        assert_eq!(err.code.as_deref(), Some("stalled"));
        assert!(
            err.message.contains("audio input stopped"),
            "{}",
            err.message
        );
    }

    #[test]
    fn watchdog_escalates_errors_sooner() {
        let t0 = Instant::now();
        let mut w = Watchdog::new();
        assert!(w.check(5, t0, "output").is_none());
        assert!(w.on_trouble(audio_err("I/O error").with_code("BackendSpecific"), t0));
        // Errors within 5 s are noted but not published again.
        assert!(!w.on_trouble(audio_err("I/O error"), t0 + Duration::from_secs(1)));
        let err = w
            .check(5, t0 + Watchdog::STALL, "output")
            .expect("a stall after errors is fatal");
        assert!(err.message.contains("I/O error"), "{}", err.message);
    }

    #[test]
    fn a_stuck_audio_thread_is_left_behind() {
        // A thread that never ends (as one stuck in a deadlocked sound-server library).
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let join = std::thread::spawn(move || {
            let _done = done_tx;
            let _ = release_rx.recv();
        });
        let (returned_tx, returned_rx) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            close_audio_thread("test", join, &done_rx, Duration::from_millis(10));
            let _ = returned_tx.send(());
        });
        // Returns without joining (the bound only keeps a broken version from hanging).
        let returned = returned_rx.recv_timeout(Duration::from_secs(30));
        release_tx.send(()).unwrap();
        assert!(
            returned.is_ok(),
            "close_audio_thread waited for a stuck thread"
        );
        // A finished thread is joined.
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let join = std::thread::spawn(move || drop(done_tx));
        close_audio_thread("test", join, &done_rx, Duration::from_secs(5));
    }
}
