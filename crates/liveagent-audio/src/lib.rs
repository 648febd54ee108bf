//! # liveagent-audio
//!
//! The audio peers of a liveagent conversation, as actix actors on its event bus
//! ([`ConversationContext`](liveagent_core::ConversationContext)):
//!
//! - [`SoundDeviceRecorder`]: a microphone (cpal). Whatever the device gives (any sample
//!   format, rate and channel count) becomes mono PCM16 at the session's input rate, published
//!   as [`RecordedAudio`](liveagent_core::RecordedAudio) chunks of fixed length (20 ms default).
//! - [`SoundDevicePlayer`]: a speaker (cpal). Plays
//!   [`SynthesizedAudio`](liveagent_core::SynthesizedAudio) through a jitter buffer, stops
//!   within one device period on [`Interrupted`](liveagent_core::Interrupted), and publishes
//!   [`PlaybackStopped`](liveagent_core::PlaybackStopped) with the milliseconds of each item
//!   that were really played (counted in the device callback). Its device buffer is
//!   adaptive by default ([`DeviceBuffer`]): it opens the device with about 5 ms periods for a
//!   fast barge-in, and grows them at the next pause after an underrun, which it reports as a
//!   [`PlaybackUnderrun`](liveagent_core::PlaybackUnderrun) event.
//! - [`WavSource`] / [`WavSink`]: the same two roles backed by WAV files, for headless runs
//!   and tests. `WavSink` runs the player's own jitter-buffer and interruption logic.
//! - Both players publish [`AudioPlaybackStarted`](liveagent_core::AudioPlaybackStarted)
//!   when the first sample of an assistant item reaches the output.
//! - [`SoundDeviceRecorderBuilder::record`] / [`WavSourceBuilder::record`]: a one-shot
//!   recording of a given length, returned as one chunk (AG2 `Recorder.record(duration)`).
//! - [`list_input_devices`] / [`list_output_devices`]: device names and default configs.
//! - [`sound_card_present`] / [`silence_alsa_errors`]: headless machines without alsa-lib's
//!   stderr noise.
//! - [`convert`]: the resampling and format conversion all of them share (rubato).
//!
//! Audio callbacks never block, lock or allocate: samples cross between the callback and the
//! actor through lock-free rings (`ringbuf`), counters are atomics, and the recorder's
//! callback wakes its actor through a lock-free doorbell (no polling timer). cpal streams live on a
//! dedicated thread owned by the actor and are closed when the actor stops. A missing device
//! is a [`LiveError`] of kind `Audio` from `start()`; a device that
//! fails mid-session becomes a fatal [`ErrorEvent`](liveagent_core::ErrorEvent) on the bus
//! and stops the actor.
//!
//! ```no_run
//! use liveagent_audio::{SoundDevicePlayer, SoundDeviceRecorder};
//! use liveagent_core::{ConversationContext, EventBus};
//!
//! # actix::System::new().block_on(async {
//! let context = ConversationContext::new(EventBus::start_default(), 24_000, 24_000);
//! let _mic = SoundDeviceRecorder::new(context.clone()).chunk_ms(20).start()?;
//! let _speaker = SoundDevicePlayer::new(context.clone()).prebuffer_ms(60).start()?;
//! # Ok::<(), liveagent_core::LiveError>(())
//! # });
//! ```

use actix::Message;
use liveagent_core::LiveError;

pub mod convert;
mod devbuf;
mod device;
mod output;
mod playback;
mod player;
mod quiet;
mod record;
mod recorder;
mod wake;
mod wav;

pub use cpal::SampleFormat;
pub use devbuf::DeviceBuffer;
pub use device::{list_input_devices, list_output_devices, DeviceConfig, DeviceInfo, OpenedDevice};
pub use playback::PlaybackStats;
pub use player::{GetDevice, SoundDevicePlayer, SoundDevicePlayerBuilder};
pub use quiet::{silence_alsa_errors, sound_card_present};
pub use recorder::{
    GetRecorderStats, RecorderStats, SoundDeviceRecorder, SoundDeviceRecorderBuilder,
};
pub use wav::{
    read_wav_mono, CloseSink, GetSourceStats, SourceStats, WavSink, WavSinkBuilder, WavSource,
    WavSourceBuilder,
};

/// Asks a [`SoundDevicePlayer`] or [`WavSink`] for its [`PlaybackStats`].
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "PlaybackStats")]
pub struct GetPlaybackStats;

/// Stops an audio actor (closing its device or file).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct StopAudio;

/// Sent by a stream's error callback when the device failed for good.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub(crate) struct DeviceFailed {
    pub error: LiveError,
    pub fatal: bool,
}
