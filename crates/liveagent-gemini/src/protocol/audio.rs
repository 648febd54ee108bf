//! Audio: model audio out (inline PCM parts of a model turn), barge-in (`interrupted`),
//! microphone audio in, and playback reports (what the user heard, for the history).

use liveagent_core::{
    AudioChunk, Interrupted, LiveError, Outbox, PlaybackStopped, ResponseStatus, SynthesizedAudio,
};

use super::{GeminiProtocol, PROVIDER};
use crate::config::{INPUT_SAMPLE_RATE, OUTPUT_SAMPLE_RATE};
use crate::wire::{self, *};

/// The lowest sample rate accepted for model audio (8 kHz).
const MIN_AUDIO_RATE: u32 = 8_000;
/// The highest sample rate accepted for model audio (48 kHz).
const MAX_AUDIO_RATE: u32 = 48_000;

impl GeminiProtocol {
    pub(super) fn on_inline_data(&mut self, blob: Blob, out: &mut Outbox) {
        let mime = blob.mime_type.to_ascii_lowercase();
        if !(mime.starts_with("audio/pcm") || mime.starts_with("audio/l16") || mime.is_empty()) {
            tracing::debug!(provider = PROVIDER, mime = %self.redact(&blob.mime_type), "inline data that is not PCM audio ignored");
            return;
        }
        // The provider's label is not trusted: a tiny rate would make the player resample
        // a frame into gigabytes. Checked before the payload is even decoded.
        let rate = wire::mime_rate(&mime).unwrap_or(OUTPUT_SAMPLE_RATE);
        if !(MIN_AUDIO_RATE..=MAX_AUDIO_RATE).contains(&rate) {
            tracing::warn!(
                provider = PROVIDER,
                rate,
                "audio with an unsupported sample rate dropped"
            );
            out.error(
                PROVIDER,
                LiveError::protocol(format!(
                    "audio labelled {rate} Hz dropped: only {MIN_AUDIO_RATE} to {MAX_AUDIO_RATE} Hz is accepted"
                )),
            );
            return;
        }
        let mut bytes = match wire::decode_base64(&blob.data) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(provider = PROVIDER, error = %e, "audio chunk with bad base64 dropped");
                out.error(
                    PROVIDER,
                    LiveError::protocol(format!("audio chunk with invalid base64 dropped: {e}")),
                );
                return;
            }
        };
        let turn = self.ensure_turn(out);
        if let Some(b) = turn.odd_byte.take() {
            bytes.insert(0, b);
        }
        if bytes.len() % 2 == 1 {
            turn.odd_byte = bytes.pop();
        }
        if bytes.is_empty() {
            return;
        }
        let audio = AudioChunk::from_le_bytes(&bytes, rate);
        turn.audio_rate = rate;
        turn.audio_samples += audio.len() as u64;
        out.publish(SynthesizedAudio {
            response_id: Some(turn.response_id.clone()),
            item_id: turn.item_id.clone(),
            audio,
        });
    }

    pub(super) fn on_interrupted(&mut self, out: &mut Outbox) {
        let (response_id, item_id) = match (&self.turn, &self.last_turn) {
            (Some(t), _) => (Some(t.response_id.clone()), Some(t.item_id.clone())),
            (None, Some((r, i))) => (Some(r.clone()), Some(i.clone())),
            (None, None) => (None, None),
        };
        tracing::debug!(provider = PROVIDER, ?response_id, "interrupted");
        out.publish(Interrupted {
            response_id,
            item_id,
        });
        if self.turn.is_some() {
            let split = self.input_split;
            self.flush_input(split, out);
            self.finish_turn(ResponseStatus::Cancelled, Some("turn_detected"), out);
        }
    }

    pub(super) fn on_audio(&mut self, audio: AudioChunk, out: &mut Outbox) {
        if audio.is_empty() {
            return;
        }
        let rate = if audio.sample_rate == 0 {
            INPUT_SAMPLE_RATE
        } else {
            audio.sample_rate
        };
        let blob = Blob::pcm(&audio.to_le_bytes(), rate);
        self.send(
            ClientMessage::RealtimeInput(RealtimeInput::Audio(blob)),
            out,
        );
    }

    pub(super) fn on_playback_stopped(&mut self, p: PlaybackStopped) {
        if p.interrupted {
            self.history.set_heard(&p.item_id, p.played_ms);
        }
    }
}
