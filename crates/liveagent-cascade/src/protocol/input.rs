//! The user's side of a turn: microphone audio (resampled to the speech-to-text rate)
//! into the turn detector; at speech start a streaming STT session opens and is fed the
//! turn as it arrives, at speech end it is committed (or a one-shot STT request is made);
//! partial and final transcripts become `InputTranscriptChunk`s, and a final one starts
//! the response.

use liveagent_agent::wire::ChatMessage;
use liveagent_core::{
    AudioChunk, ErrorEvent, Id, InputTranscriptChunk, LiveError, Outbox, SpeechStarted,
    SpeechStopped, TaskId,
};

use super::{boxed, CascadeProtocol, LiveStt, SttJob};
use crate::stage::{SttEvent, SttInput};
use crate::turn::TurnEvent;
use futures_util::stream::StreamExt;

impl CascadeProtocol {
    pub(super) fn on_audio(&mut self, chunk: AudioChunk, out: &mut Outbox) {
        let samples: Vec<i16> = if chunk.sample_rate == self.in_rate || chunk.sample_rate == 0 {
            chunk.samples.to_vec()
        } else {
            resample_linear(&chunk.samples, chunk.sample_rate, self.in_rate)
        };
        self.input_ms += samples.len() as u64 * 1000 / self.in_rate.max(1) as u64;
        let events = self.detector.push(&samples, self.in_rate);
        for event in events {
            self.on_turn_event(event, out);
        }
        self.feed_live_stt();
    }

    /// Opens a streaming STT session for the turn that just started (when the stage
    /// streams input).
    pub(super) fn open_live_stt(&mut self, item_id: Id, out: &mut Outbox) {
        // A session left open (a turn that never stopped) is aborted.
        self.live_stt = None;
        if !self.config.stt.streams_input() {
            return;
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let input = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .boxed_local();
        let id = self.next_id();
        self.stt_usage.requests += 1;
        let stream = self.config.stt.transcribe_live(input);
        self.stt_jobs.insert(
            id,
            SttJob {
                item_id,
                text: None,
                failed: false,
            },
        );
        self.live_stt = Some(LiveStt { input: tx, sent: 0 });
        out.spawn(id, boxed(stream));
    }

    /// Sends the streaming STT session the turn's audio it has not had yet.
    pub(super) fn feed_live_stt(&mut self) {
        let Some(live) = self.live_stt.as_mut() else {
            return;
        };
        let audio = self.detector.turn_audio();
        if audio.len() > live.sent {
            // A closed session (it failed) just drops the audio.
            let _ = live
                .input
                .send(SttInput::Audio(audio[live.sent..].to_vec()));
            live.sent = audio.len();
        }
    }

    pub(super) fn on_turn_event(&mut self, event: TurnEvent, out: &mut Outbox) {
        match event {
            TurnEvent::Started { start_ms } => {
                let item = self.new_item("item");
                self.user_item = Some(item.clone());
                out.publish(SpeechStarted {
                    item_id: Some(item.clone()),
                    audio_start_ms: Some(start_ms),
                });
                self.open_live_stt(item, out);
                if self.config.barge_in {
                    self.interrupt("turn_detected", out);
                }
            }
            TurnEvent::Stopped { end_ms, audio } => {
                let item = self
                    .user_item
                    .take()
                    .unwrap_or_else(|| self.new_item("item"));
                out.publish(SpeechStopped {
                    item_id: Some(item.clone()),
                    audio_end_ms: Some(end_ms),
                });
                match self.live_stt.take() {
                    Some(live) => {
                        // The rest of the utterance, then the commit; the session's
                        // final transcript ends its task.
                        self.stt_usage.audio_ms +=
                            audio.len() as u64 * 1000 / self.in_rate.max(1) as u64;
                        if audio.len() > live.sent {
                            let _ = live
                                .input
                                .send(SttInput::Audio(audio[live.sent..].to_vec()));
                        }
                        let _ = live.input.send(SttInput::Commit);
                    }
                    None => self.start_stt(item, audio, out),
                }
            }
        }
    }

    pub(super) fn start_stt(&mut self, item_id: Id, audio: Vec<i16>, out: &mut Outbox) {
        if audio.is_empty() {
            return;
        }
        let id = self.next_id();
        self.stt_usage.requests += 1;
        self.stt_usage.audio_ms += audio.len() as u64 * 1000 / self.in_rate.max(1) as u64;
        let stream = self.config.stt.transcribe(audio.into());
        self.stt_jobs.insert(
            id,
            SttJob {
                item_id,
                text: None,
                failed: false,
            },
        );
        out.spawn(id, boxed(stream));
    }

    pub(super) fn on_stt(
        &mut self,
        id: TaskId,
        item: Result<SttEvent, LiveError>,
        out: &mut Outbox,
    ) {
        let Some(job) = self.stt_jobs.get_mut(&id) else {
            return;
        };
        match item {
            Ok(SttEvent::Partial(delta)) => out.publish(InputTranscriptChunk {
                item_id: Some(job.item_id.clone()),
                text: delta.into(),
                is_final: false,
            }),
            Ok(SttEvent::Final {
                text,
                input_tokens,
                output_tokens,
            }) => {
                self.stt_usage.input_tokens += input_tokens;
                self.stt_usage.output_tokens += output_tokens;
                self.stt_usage.characters += text.chars().count() as u64;
                out.publish(InputTranscriptChunk {
                    item_id: Some(job.item_id.clone()),
                    text: text.as_str().into(),
                    is_final: true,
                });
                job.text = Some(text);
            }
            Err(e) if e.is_permanent() => {
                job.failed = true;
                self.fatal(e, out);
            }
            Err(e) => {
                job.failed = true;
                tracing::warn!(error = %e, "speech-to-text failed; the turn is dropped");
                out.publish(ErrorEvent::new("cascade-stt", e));
            }
        }
    }

    pub(super) fn on_stt_end(&mut self, id: TaskId, out: &mut Outbox) {
        let Some(job) = self.stt_jobs.remove(&id) else {
            return;
        };
        if job.failed {
            return;
        }
        match job.text {
            Some(text) if !text.trim().is_empty() => {
                // The answer being cut goes into the history before the new question.
                if self.response.is_some() {
                    self.interrupt("new_turn", out);
                }
                self.history.push(ChatMessage::user(text));
                self.start_response(out);
            }
            Some(_) => tracing::debug!("empty transcript: no response"),
            None => out.publish(ErrorEvent::new(
                "cascade-stt",
                LiveError::protocol("speech-to-text ended without a transcript"),
            )),
        }
    }
}

/// Linear resampling (microphone audio that arrives at another rate than the STT's).
pub(super) fn resample_linear(samples: &[i16], from: u32, to: u32) -> Vec<i16> {
    if samples.is_empty() || from == 0 {
        return Vec::new();
    }
    let n = (samples.len() as u64 * to as u64 / from as u64) as usize;
    (0..n)
        .map(|i| {
            let pos = i as f64 * from as f64 / to as f64;
            let j = pos as usize;
            let frac = pos - j as f64;
            let a = samples[j.min(samples.len() - 1)] as f64;
            let b = samples[(j + 1).min(samples.len() - 1)] as f64;
            (a + (b - a) * frac).round() as i16
        })
        .collect()
}
