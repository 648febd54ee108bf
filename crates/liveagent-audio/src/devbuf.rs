//! How [`SoundDevicePlayer`](crate::SoundDevicePlayer) sizes its device buffer: the
//! [`DeviceBuffer`] policy (adaptive by default) and the pure growth logic behind it.
//!
//! The device buffer is what the speaker still plays after the player cuts the audio on a
//! barge-in: cpal's hosts keep about two periods queued, so the period size sets the barge-in
//! latency at the speaker. The adaptive policy opens the device with a small period (about
//! 5 ms), counts device underruns (the device ran dry while speech was playing), and after
//! one doubles the period at the next pause in playback, up to a cap (about 40 ms). It never
//! shrinks: a machine that could not keep up once is likely to fail again.

use std::time::{Duration, Instant};

use liveagent_core::{PlaybackUnderrun, UnderrunKind};

/// How the player sizes the output device's buffer, in frames per device period (cpal asks
/// the host for two periods of buffering; the barge-in latency at the speaker is about that).
///
/// ```no_run
/// use liveagent_audio::{DeviceBuffer, SoundDevicePlayer};
/// # actix::System::new().block_on(async {
/// # let context = liveagent_core::ConversationContext::new(liveagent_core::EventBus::start_default(), 24_000, 24_000);
/// // the default: start at about 5 ms, grow after underruns up to about 40 ms
/// let _p = SoundDevicePlayer::new(context.clone()).start();
/// // start at 128 frames, never above 1024
/// let _p = SoundDevicePlayer::new(context.clone())
///     .device_buffer(DeviceBuffer::Adaptive { start_frames: Some(128), max_frames: Some(1024) })
///     .start();
/// // always 512 frames, or the host's own choice
/// let _p = SoundDevicePlayer::new(context.clone()).device_buffer(DeviceBuffer::Fixed(512)).start();
/// let _p = SoundDevicePlayer::new(context).device_buffer(DeviceBuffer::HostDefault).start();
/// # });
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceBuffer {
    /// The default. Opens the device with `start_frames` per period (default: about 5 ms at
    /// the device's rate, rounded up to a power of two: 256 frames at 44.1/48 kHz, 128 at
    /// 24 kHz) and doubles the period after each device underrun during speech, up to
    /// `max_frames` (default: about 40 ms, 2048 frames at 48 kHz), both clamped to the
    /// range the device supports. The stream is rebuilt at the next pause in playback (no
    /// item playing and nothing queued), so no speech is cut. Never shrinks. If the device
    /// refuses a fixed period the player falls back to the host's default buffer.
    Adaptive {
        /// First period size in frames (`None`: about 5 ms).
        start_frames: Option<u32>,
        /// Largest period size in frames (`None`: about 40 ms).
        max_frames: Option<u32>,
    },
    /// Always this many frames per period; underruns are counted and reported but the buffer
    /// does not grow. `start()` fails if the device does not support it.
    Fixed(u32),
    /// The host's default buffer (cpal `BufferSize::Default`): underruns are counted and
    /// reported, the buffer never changes.
    HostDefault,
}

impl Default for DeviceBuffer {
    fn default() -> Self {
        DeviceBuffer::Adaptive {
            start_frames: None,
            max_frames: None,
        }
    }
}

/// About 5 ms at `rate`, rounded up to a power of two (at least 32 frames).
pub(crate) fn default_start_frames(rate: u32) -> u32 {
    (rate / 200).max(32).next_power_of_two()
}

/// About 40 ms at `rate`, rounded up to a power of two.
pub(crate) fn default_max_frames(rate: u32) -> u32 {
    (rate / 25).max(64).next_power_of_two()
}

/// The buffer plan of one player: what to open now and how to grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BufferPlan {
    /// Frames per period to open with (`None`: the host's default).
    pub frames: Option<u32>,
    /// Whether underruns make it grow.
    pub adaptive: bool,
    /// Largest period when adaptive.
    pub max: u32,
}

impl BufferPlan {
    /// The plan for `policy` on a device at `rate` that supports periods in `range`
    /// (`None`: the host did not say).
    pub(crate) fn new(policy: DeviceBuffer, rate: u32, range: Option<(u32, u32)>) -> BufferPlan {
        let clamp = |f: u32| match range {
            Some((lo, hi)) if lo <= hi => f.clamp(lo.max(1), hi),
            _ => f.max(1),
        };
        match policy {
            DeviceBuffer::Adaptive {
                start_frames,
                max_frames,
            } => {
                let start = clamp(start_frames.unwrap_or_else(|| default_start_frames(rate)));
                let max = clamp(max_frames.unwrap_or_else(|| default_max_frames(rate))).max(start);
                BufferPlan {
                    frames: Some(start),
                    adaptive: true,
                    max,
                }
            }
            DeviceBuffer::Fixed(f) => BufferPlan {
                frames: Some(f),
                adaptive: false,
                max: f,
            },
            DeviceBuffer::HostDefault => BufferPlan {
                frames: None,
                adaptive: false,
                max: 0,
            },
        }
    }

    /// The next period size after an underrun with `current` frames, if it may grow.
    pub(crate) fn grow(&self, current: u32) -> Option<u32> {
        if !self.adaptive || current >= self.max || current == 0 {
            return None;
        }
        Some(current.saturating_mul(2).min(self.max))
    }
}

/// At most one underrun report per kind per this interval.
pub(crate) const REPORT_EVERY: Duration = Duration::from_secs(1);

/// Turns running underrun counters into rate-limited [`PlaybackUnderrun`] reports.
#[derive(Debug, Default)]
pub(crate) struct UnderrunReporter {
    reported: u64,
    last: Option<Instant>,
}

impl UnderrunReporter {
    /// A report when `count` moved since the last one and the last report is at least
    /// [`REPORT_EVERY`] old.
    pub(crate) fn report(
        &mut self,
        kind: UnderrunKind,
        count: u64,
        now: Instant,
        buffer_frames: u32,
        sample_rate: u32,
        grow_to: Option<u32>,
    ) -> Option<PlaybackUnderrun> {
        if count <= self.reported {
            return None;
        }
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < REPORT_EVERY)
        {
            return None;
        }
        let new = count - self.reported;
        self.reported = count;
        self.last = Some(now);
        Some(PlaybackUnderrun {
            source: "player".into(),
            kind,
            count,
            new,
            buffer_frames,
            sample_rate,
            grow_to,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_about_5_and_40_ms() {
        assert_eq!(default_start_frames(48_000), 256);
        assert_eq!(default_start_frames(44_100), 256);
        assert_eq!(default_start_frames(24_000), 128);
        assert_eq!(default_start_frames(16_000), 128);
        assert_eq!(default_start_frames(8_000), 64);
        assert_eq!(default_max_frames(48_000), 2048);
        assert_eq!(default_max_frames(24_000), 1024);
    }

    #[test]
    fn adaptive_plan_clamps_and_doubles_to_the_cap() {
        let p = BufferPlan::new(DeviceBuffer::default(), 48_000, Some((512, 1500)));
        assert_eq!(p.frames, Some(512));
        assert_eq!(p.max, 1500);
        assert_eq!(p.grow(512), Some(1024));
        assert_eq!(p.grow(1024), Some(1500));
        assert_eq!(p.grow(1500), None);
        let p = BufferPlan::new(DeviceBuffer::default(), 48_000, None);
        assert_eq!((p.frames, p.max), (Some(256), 2048));
        let fixed = BufferPlan::new(DeviceBuffer::Fixed(300), 48_000, None);
        assert_eq!((fixed.frames, fixed.grow(300)), (Some(300), None));
        let host = BufferPlan::new(DeviceBuffer::HostDefault, 48_000, None);
        assert_eq!((host.frames, host.grow(512)), (None, None));
    }

    #[test]
    fn reports_are_rate_limited_and_carry_the_new_count() {
        let mut r = UnderrunReporter::default();
        let t0 = Instant::now();
        assert!(r
            .report(UnderrunKind::Device, 0, t0, 256, 48_000, None)
            .is_none());
        let first = r
            .report(UnderrunKind::Device, 2, t0, 256, 48_000, Some(512))
            .unwrap();
        assert_eq!((first.count, first.new, first.grow_to), (2, 2, Some(512)));
        assert!(r
            .report(UnderrunKind::Device, 3, t0, 256, 48_000, None)
            .is_none());
        let later = r
            .report(
                UnderrunKind::Device,
                5,
                t0 + REPORT_EVERY,
                512,
                48_000,
                None,
            )
            .unwrap();
        assert_eq!((later.count, later.new, later.buffer_frames), (5, 3, 512));
    }
}
