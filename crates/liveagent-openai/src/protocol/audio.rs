//! Audio: microphone audio in (resampled to 24 kHz, split into `input_audio_buffer.append`
//! frames), model audio out (per-item tracks), barge-in (`Interrupted`) and truncation
//! (`conversation.item.truncate`) when playback was stopped early.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use liveagent_core::{
    AudioChunk, ErrorKind, Id, Interrupted, Outbox, PlaybackStopped, SynthesizedAudio,
};

use super::{AudioTrack, OpenAiProtocol, Phase, MAX_APPEND_BYTES, MAX_TRACKS};
use crate::config::AudioFormat as Encoding;
use crate::history::HistoryItem;
use crate::resample::LinearResampler;
use crate::wire::ClientEvent;

impl OpenAiProtocol {
    pub(super) fn on_audio_delta(
        &mut self,
        response_id: &str,
        item_id: &str,
        delta: &str,
        out: &mut Outbox,
    ) {
        // SIMD base64 first (`base64-simd`); what it refuses goes to the `base64` engine,
        // whose verdict and error text are the reference.
        let decoded = base64_simd::STANDARD
            .decode_to_vec(delta)
            .or_else(|_| B64.decode(delta));
        match decoded {
            Ok(bytes) => self.on_audio_bytes(response_id, item_id, bytes, out),
            Err(e) => self.error(
                out,
                ErrorKind::Protocol,
                format!("openai: undecodable audio delta for {item_id}: {e}"),
            ),
        }
    }

    /// A decoded audio delta of `item_id`.
    pub(super) fn on_audio_bytes(
        &mut self,
        response_id: &str,
        item_id: &str,
        bytes: Vec<u8>,
        out: &mut Outbox,
    ) {
        let late = self
            .interrupted_response
            .as_deref()
            .is_some_and(|r| r == response_id);
        let generation = self.generation;
        let pos = self.tracks.iter().position(|t| *t.item_id == *item_id);
        let track = match pos {
            Some(i) => &mut self.tracks[i],
            None => {
                if self.tracks.len() >= MAX_TRACKS {
                    self.tracks.pop_front();
                }
                self.tracks.push_back(AudioTrack {
                    item_id: item_id.into(),
                    response_id: response_id.into(),
                    bytes: 0,
                    delivered: 0,
                    heard_ms: None,
                    truncated: false,
                    generation,
                    playback_done: false,
                    audio_done: false,
                    odd_byte: None,
                });
                self.tracks.back_mut().expect("just pushed")
            }
        };
        let mut data = bytes;
        let encoding = self.config.output_format;
        if encoding == Encoding::Pcm16 {
            if let Some(b) = track.odd_byte.take() {
                data.insert(0, b);
            }
            if data.len() % 2 == 1 {
                track.odd_byte = data.pop();
            }
        }
        track.bytes += data.len() as u64;
        if late {
            // Produced but never heard: counts for the truncate rule (see the module docs).
            tracing::trace!(target: "liveagent::openai", item_id = %self.redact(item_id), "audio of an interrupted response dropped");
            let idx = pos.unwrap_or(self.tracks.len() - 1);
            if self.tracks[idx].heard_ms.is_some() {
                self.maybe_truncate(idx, out);
            }
            return;
        }
        track.delivered += data.len() as u64;
        track.playback_done = false;
        let audio_ms = track.bytes / encoding.bytes_per_ms();
        let item: Id = track.item_id.clone();
        let response: Id = track.response_id.clone();
        if let Some(HistoryItem::Assistant { audio_ms: ms, .. }) =
            self.history.assistant_mut(item_id)
        {
            *ms = audio_ms;
        } else if let HistoryItem::Assistant { audio_ms: ms, .. } = self.ensure_assistant(item_id) {
            *ms = audio_ms;
        }
        if data.is_empty() {
            return;
        }
        out.publish(SynthesizedAudio {
            response_id: Some(response),
            item_id: item,
            audio: decode_audio(encoding, &data),
        });
    }

    /// Barge-in: tell the player to flush if anything may still be playing.
    pub(super) fn interrupt(&mut self, out: &mut Outbox) {
        let unplayed = self.tracks.iter().rev().find(|t| !t.playback_done);
        let active_id = self.active.as_ref().map(|a| a.id.clone());
        if active_id.is_none() && unplayed.is_none() {
            return;
        }
        let item_id = unplayed.map(|t| t.item_id.clone());
        let response_id = active_id.or_else(|| unplayed.map(|t| t.response_id.clone()));
        if let Some(active) = self.active.as_mut() {
            active.interrupted = true;
            self.interrupted_response = Some(active.id.clone());
        }
        for t in self.tracks.iter_mut() {
            t.playback_done = true;
        }
        out.publish(Interrupted {
            response_id,
            item_id,
        });
    }

    pub(super) fn on_audio(&mut self, chunk: AudioChunk, out: &mut Outbox) {
        if chunk.is_empty() {
            return;
        }
        let encoding = self.config.input_format;
        let rate = encoding.sample_rate();
        let samples: Arc<[i16]> = if chunk.sample_rate == rate {
            chunk.samples
        } else if chunk.sample_rate == 0 {
            self.error(
                out,
                ErrorKind::Audio,
                "openai: dropped microphone audio with sample rate 0".into(),
            );
            return;
        } else {
            if !self.warned_rate {
                self.warned_rate = true;
                tracing::warn!(target: "liveagent::openai", rate = chunk.sample_rate, session_rate = rate, "microphone audio is not at the session's rate; resampling linearly (let the recorder resample for better quality)");
            }
            let r = self
                .resampler
                .get_or_insert_with(|| LinearResampler::new(chunk.sample_rate, rate));
            if r.input_rate() != chunk.sample_rate {
                *r = LinearResampler::new(chunk.sample_rate, rate);
            }
            r.process(&chunk.samples).into()
        };
        // Samples -> wire bytes (a reused buffer, one per thread: a session holds none
        // between chunks) -> frame text (one allocation per frame).
        let per_sample = if encoding == Encoding::Pcm16 { 2 } else { 1 };
        let mut wire = AUDIO_SCRATCH.with(|s| s.take());
        for piece in samples.chunks(MAX_APPEND_BYTES / per_sample) {
            wire.clear();
            encode_audio(encoding, piece, &mut wire);
            self.input_bytes += wire.len() as u64;
            out.send_text(ClientEvent::append_json(&wire));
        }
        AUDIO_SCRATCH.with(|s| s.set(wire));
    }

    pub(super) fn on_playback_stopped(&mut self, stopped: PlaybackStopped, out: &mut Outbox) {
        let Some(idx) = self
            .tracks
            .iter()
            .position(|t| t.item_id == stopped.item_id)
        else {
            tracing::debug!(target: "liveagent::openai", item_id = %self.redact(&stopped.item_id), "playback report for an unknown item");
            return;
        };
        let per_ms = self.config.output_format.bytes_per_ms();
        let track = &mut self.tracks[idx];
        track.playback_done = true;
        track.heard_ms = Some(stopped.played_ms.min(track.delivered / per_ms));
        if stopped.interrupted {
            self.maybe_truncate(idx, out);
        }
    }

    /// Applies the truncate rule of the module docs to track `idx`.
    fn maybe_truncate(&mut self, idx: usize, out: &mut Outbox) {
        let per_ms = self.config.output_format.bytes_per_ms();
        let track = &self.tracks[idx];
        let Some(end) = track.heard_ms else { return };
        if track.truncated {
            return;
        }
        let produced = track.bytes / per_ms;
        let complete = track.audio_done && end >= produced;
        let same_connection = track.generation == self.generation && self.phase == Phase::Ready;
        let item_id = track.item_id.to_string();
        if let Some(HistoryItem::Assistant { heard_ms, .. }) = self.history.assistant_mut(&item_id)
        {
            *heard_ms = Some(end);
        }
        if complete {
            tracing::debug!(target: "liveagent::openai", item_id = %self.redact(&item_id), "item was heard in full; no truncation");
        } else if produced == 0 {
            tracing::debug!(target: "liveagent::openai", item_id = %self.redact(&item_id), "item has no audio; nothing to truncate");
        } else if !same_connection {
            tracing::debug!(target: "liveagent::openai", item_id = %self.redact(&item_id), "item belongs to an earlier connection; history trimmed only");
        } else {
            tracing::debug!(target: "liveagent::openai", item_id = %self.redact(&item_id), audio_end_ms = end, produced, "truncating the interrupted item");
            self.tracks[idx].truncated = true;
            self.send(
                out,
                &ClientEvent::ConversationItemTruncate {
                    item_id,
                    content_index: 0,
                    audio_end_ms: end.min(produced),
                },
            );
        }
    }
}

/// Wire bytes of `encoding` to PCM16 samples for the bus.
fn decode_audio(encoding: Encoding, data: &[u8]) -> AudioChunk {
    match encoding {
        Encoding::Pcm16 => AudioChunk::from_le_bytes(data, encoding.sample_rate()),
        Encoding::Pcmu => AudioChunk::new(
            data.iter()
                .map(|&b| liveagent_core::g711::ulaw_decode(b))
                .collect::<Vec<_>>(),
            encoding.sample_rate(),
        ),
        Encoding::Pcma => AudioChunk::new(
            data.iter()
                .map(|&b| liveagent_core::g711::alaw_decode(b))
                .collect::<Vec<_>>(),
            encoding.sample_rate(),
        ),
    }
}

thread_local! {
    /// The wire bytes of the microphone chunk being sent, reused by every session of the
    /// thread (a session's chunk is encoded and copied into its frame text at once).
    static AUDIO_SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// PCM16 samples from the bus to wire bytes of `encoding`, appended to `out`.
fn encode_audio(encoding: Encoding, samples: &[i16], out: &mut Vec<u8>) {
    match encoding {
        Encoding::Pcm16 => {
            // Written into place (vectorizes), not pushed sample by sample.
            let start = out.len();
            out.resize(start + samples.len() * 2, 0);
            for (b, s) in out[start..].chunks_exact_mut(2).zip(samples) {
                b.copy_from_slice(&s.to_le_bytes());
            }
        }
        Encoding::Pcmu => out.extend(
            samples
                .iter()
                .map(|&s| liveagent_core::g711::ulaw_encode(s)),
        ),
        Encoding::Pcma => out.extend(
            samples
                .iter()
                .map(|&s| liveagent_core::g711::alaw_encode(s)),
        ),
    }
}
