//! The input audio buffer: appends, server-side turn detection, manual commits and the
//! user audio items they create.

use std::sync::atomic::Ordering;

use super::super::wire::*;
use super::*;
use crate::audio::{self, INTERNAL_RATE};
use crate::brain::TurnInput;
use crate::conn::End;
use crate::items::{Content, Item, ItemKind, Role};
use crate::vad::VadEvent;

impl OaSession {
    pub(super) async fn append(&mut self, samples: Vec<i16>) -> R {
        self.input.push(&samples);
        let Some(td) = self.settings.turn.clone() else {
            return Ok(());
        };
        for ev in self.vad.push(&samples) {
            match ev {
                VadEvent::SpeechStarted { start_ms } => {
                    self.shared
                        .stats
                        .turns_detected
                        .fetch_add(1, Ordering::Relaxed);
                    let item_id = self.shared.new_id("item");
                    self.idle_at = None;
                    self.speech = Some(Speech {
                        item_id: item_id.clone(),
                        start_ms,
                    });
                    self.emit(ServerEvent::SpeechStarted {
                        audio_start_ms: start_ms,
                        item_id,
                    })
                    .await?;
                    if td.interrupt_response && self.run.is_some() {
                        self.cancel_run("turn_detected").await?;
                    }
                }
                VadEvent::SpeechStopped {
                    end_ms,
                    last_voiced_ms,
                } => {
                    let Some(speech) = self.speech.take() else {
                        continue;
                    };
                    self.emit(ServerEvent::SpeechStopped {
                        audio_end_ms: end_ms,
                        item_id: speech.item_id.clone(),
                    })
                    .await?;
                    let from = speech
                        .start_ms
                        .saturating_sub(td.vad.prefix_padding_ms as u64);
                    let all = self.input.take_range(from * SPS_MS, end_ms * SPS_MS);
                    let voiced = ((last_voiced_ms.saturating_sub(from)) * SPS_MS) as usize;
                    let label =
                        TurnInput::speech_label(last_voiced_ms.saturating_sub(speech.start_ms));
                    self.commit_audio(speech.item_id, all, voiced, label)
                        .await?;
                    if td.create_response {
                        if self.run.is_none() {
                            self.start_response(ResponseParams::default()).await?;
                        } else {
                            // interrupt_response is off: answer once the current one ends.
                            self.deferred_response = true;
                        }
                    }
                }
            }
        }
        if self.speech.is_none() {
            // Keep only the prefix padding while nobody speaks.
            let keep = (td.vad.idle_keep_ms() * SPS_MS) as usize;
            self.input.keep_newest(keep);
        }
        Ok(())
    }

    pub(super) async fn manual_commit(&mut self) -> Result<Result<(), Invalid>, End> {
        let ms = audio::samples_to_ms(self.input.len(), INTERNAL_RATE);
        if ms < 100 {
            return Ok(Err(invalid(
                "input_audio_buffer_commit_empty",
                format!("Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, but buffer only has {ms}.00ms of audio."),
                None,
            )));
        }
        let item_id = match self.speech.take() {
            Some(s) => s.item_id,
            None => self.shared.new_id("item"),
        };
        let _ = self.vad.flush();
        let all = self.input.take_all();
        let n = all.len();
        self.commit_audio(item_id, all, n, TurnInput::speech_label(ms))
            .await?;
        Ok(Ok(()))
    }

    pub(super) async fn commit_audio(
        &mut self,
        item_id: String,
        all: Pcm,
        voiced: usize,
        label: String,
    ) -> R {
        let prev = self.items.last().map(|i| i.id.clone());
        // `all` comes packed from the input buffer (about half the bytes for speech, lossless:
        // `conversation.item.retrieve` returns it); the echo is a view of it, not a copy.
        let echo = all.slice(0, voiced.max(1));
        let item = Item {
            id: item_id.clone(),
            kind: ItemKind::Message {
                role: Role::User,
                content: vec![Content::InputAudio {
                    audio: all,
                    transcript: None,
                }],
            },
            status: "completed",
        };
        self.items.push(item);
        self.unanswered = Some(item_id.clone());
        self.echo_audio
            .insert(item_id.clone(), (echo, label.clone()));
        self.emit(ServerEvent::Committed {
            previous_item_id: prev.clone(),
            item_id: item_id.clone(),
        })
        .await?;
        let wi = wire_item(
            self.items.last().expect("just pushed"),
            false,
            self.settings.output_fmt,
        );
        self.emit(ServerEvent::ItemAdded {
            previous_item_id: prev.clone(),
            item: wi,
        })
        .await?;
        if self.settings.transcription {
            if let Some(Item {
                kind: ItemKind::Message { content, .. },
                ..
            }) = self.items.last_mut()
            {
                if let Some(Content::InputAudio { transcript, .. }) = content.first_mut() {
                    *transcript = Some(label.clone());
                }
            }
        }
        let wi = wire_item(
            self.items.last().expect("just pushed"),
            false,
            self.settings.output_fmt,
        );
        self.emit(ServerEvent::ItemDone {
            previous_item_id: prev,
            item: wi,
        })
        .await?;
        if self.settings.transcription {
            let ms = self.items.last().map(Item::audio_ms).unwrap_or(0);
            self.emit(ServerEvent::TranscriptionCompleted {
                item_id,
                content_index: 0,
                transcript: label,
                usage: TranscriptionUsage {
                    kind: "duration",
                    seconds: ms as f64 / 1000.0,
                },
            })
            .await?;
        }
        Ok(())
    }
}
