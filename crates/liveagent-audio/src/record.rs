//! One-shot recording (AG2 `Recorder.record(duration)`): capture a fixed length of audio
//! from the microphone (or a WAV file) and get it back as one [`AudioChunk`], without
//! publishing anything on the conversation.
//!
//! Both recorders run exactly as they do in a conversation (same device handling,
//! downmixing and resampling), on a private bus that only this call listens to; the actor
//! is stopped (the device closed) when the audio is complete.

use std::time::Duration;

use actix::prelude::*;
use futures_util::StreamExt;
use liveagent_core::{AudioChunk, ConversationContext, EventBus, LiveError, RecordedAudio};

use crate::device::audio_err;
use crate::recorder::SoundDeviceRecorderBuilder;
use crate::wav::WavSourceBuilder;
use crate::StopAudio;

/// Extra time a recording may take beyond its length before it is an error (a device that
/// delivers nothing).
const GRACE: Duration = Duration::from_secs(5);

/// Runs the recorder `start` makes on a private context at `rate` until `duration` of audio
/// arrived; returns exactly that much.
async fn capture<A>(
    rate: u32,
    output_rate: u32,
    duration: Duration,
    start: impl FnOnce(ConversationContext) -> Result<Addr<A>, LiveError>,
) -> Result<AudioChunk, LiveError>
where
    A: Actor<Context = Context<A>> + Handler<StopAudio>,
{
    let want = (rate as u128 * duration.as_micros() / 1_000_000) as usize;
    let private = ConversationContext::new(EventBus::start_default(), rate, output_rate);
    let mut chunks = private.stream().capacity(1 << 16).only::<RecordedAudio>();
    let recorder = start(private.clone())?;
    let mut samples: Vec<i16> = Vec::with_capacity(want);
    let collect = async {
        while samples.len() < want {
            match chunks.next().await {
                Some(chunk) => samples.extend_from_slice(&chunk.audio.samples),
                None => break,
            }
        }
    };
    let finished = tokio::time::timeout(duration + GRACE, collect).await;
    recorder.do_send(StopAudio);
    if finished.is_err() || samples.len() < want {
        return Err(audio_err(format!(
            "recorded {} ms of the {} ms asked for: the input delivered no more audio",
            samples.len() as u64 * 1000 / rate.max(1) as u64,
            duration.as_millis()
        )));
    }
    samples.truncate(want);
    Ok(AudioChunk::new(samples, rate))
}

impl SoundDeviceRecorderBuilder {
    /// Records `duration` of audio from the input device and returns it (AG2
    /// `Recorder.record(duration)`): mono PCM16 at the builder's rate (the session's input
    /// rate unless [`sample_rate`](Self::sample_rate) says otherwise). Nothing is published
    /// on the conversation; the device is closed when the audio is complete. Errors (kind
    /// `Audio`) when there is no such device, or it stops delivering audio.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use liveagent_audio::SoundDeviceRecorder;
    /// use liveagent_core::{ConversationContext, EventBus};
    /// # actix::System::new().block_on(async {
    /// let context = ConversationContext::new(EventBus::start_default(), 24_000, 24_000);
    /// let clip = SoundDeviceRecorder::new(context).record(Duration::from_secs(3)).await?;
    /// assert_eq!(clip.samples.len(), 72_000);
    /// # Ok::<(), liveagent_core::LiveError>(())
    /// # });
    /// ```
    pub async fn record(self, duration: Duration) -> Result<AudioChunk, LiveError> {
        let rate = self.publish_rate();
        let out = self.context_ref().output_sample_rate();
        capture(rate, out, duration, move |private| {
            self.with_context(private).sample_rate(rate).start()
        })
        .await
    }
}

impl WavSourceBuilder {
    /// Records `duration` of audio from the WAV file, as [`SoundDeviceRecorderBuilder::record`]
    /// does from a device (for headless runs and tests): mono PCM16 at the builder's rate,
    /// in real time unless [`realtime(false)`](Self::realtime); silence after the end of a
    /// shorter file.
    pub async fn record(self, duration: Duration) -> Result<AudioChunk, LiveError> {
        let rate = self.publish_rate();
        let out = self.context_ref().output_sample_rate();
        let pad = u32::try_from(duration.as_millis()).unwrap_or(u32::MAX);
        let self_pad = self.pad_ms;
        capture(rate, out, duration, move |private| {
            self.with_context(private)
                .sample_rate(rate)
                .pad_silence_ms(pad.max(self_pad))
                .start()
        })
        .await
    }
}
