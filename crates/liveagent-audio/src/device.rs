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

/// Owns a cpal stream on a dedicated thread (streams are not `Send` on every platform);
/// dropping it stops and closes the stream.
pub(crate) struct StreamThread {
    stop: Option<mpsc::Sender<()>>,
    join: Option<JoinHandle<()>>,
}

impl StreamThread {
    /// Runs `open` on a new thread; it must build and start the stream. Returns once the
    /// stream plays, or with `open`'s error.
    pub(crate) fn spawn<F>(name: &str, open: F) -> Result<(StreamThread, OpenedDevice), LiveError>
    where
        F: FnOnce() -> Result<(cpal::Stream, OpenedDevice), LiveError> + Send + 'static,
    {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let join = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || match open() {
                Ok((stream, info)) => {
                    let _ = ready_tx.send(Ok(info));
                    // Until told to stop (or the owner is dropped).
                    let _ = stop_rx.recv();
                    drop(stream);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(|e| audio_err(format!("cannot start the audio thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(info)) => Ok((
                StreamThread {
                    stop: Some(stop_tx),
                    join: Some(join),
                },
                info,
            )),
            Ok(Err(e)) => {
                let _ = join.join();
                Err(e)
            }
            Err(_) => {
                let _ = join.join();
                Err(audio_err(
                    "the audio thread panicked while opening the device",
                ))
            }
        }
    }
}

impl Drop for StreamThread {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(join) = self.join.take() {
            let _ = join.join();
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

/// Escalates non-fatal device errors to a fatal one when the stream stops making progress
/// (its callback is no longer called) for [`Watchdog::STALL`].
#[derive(Debug)]
pub(crate) struct Watchdog {
    trouble: Option<LiveError>,
    progress: u64,
    progress_at: std::time::Instant,
    published_at: Option<std::time::Instant>,
}

impl Watchdog {
    pub(crate) const STALL: std::time::Duration = std::time::Duration::from_secs(3);

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
    /// stalled after errors.
    pub(crate) fn check(&mut self, progress: u64, now: std::time::Instant) -> Option<LiveError> {
        if progress != self.progress {
            self.progress = progress;
            self.progress_at = now;
            return None;
        }
        if now.saturating_duration_since(self.progress_at) < Self::STALL {
            return None;
        }
        self.trouble.take().map(|e| {
            audio_err(format!(
                "the audio device stopped working ({}; no audio for {} s)",
                e.message,
                Self::STALL.as_secs()
            ))
            .with_code(e.code.unwrap_or_else(|| "stalled".into()))
        })
    }
}
