//! Server events: one `match` over every [`ServerEvent`], handing each to the concern that
//! handles it (or handling the one-liners in place).

use liveagent_core::{
    ErrorKind, Id, InputTranscriptChunk, ModelMessageChunk, Outbox, OutputTranscriptChunk,
    ResponseStarted, SpeechStarted, SpeechStopped,
};

use liveagent_core::limits::cut_to;

use super::{ActiveResponse, OpenAiProtocol};
use crate::wire::{ContentPart, Item, Role, ServerEvent};

impl OpenAiProtocol {
    pub(super) fn handle_event(&mut self, event: ServerEvent, out: &mut Outbox) {
        match event {
            ServerEvent::Error { error } => self.on_error(error, out),
            ServerEvent::SessionCreated { session } => self.on_session_created(session, out),
            ServerEvent::SessionUpdated { .. } => self.on_session_updated(out),
            ServerEvent::SpeechStarted {
                audio_start_ms,
                item_id,
            } => {
                self.user_speaking = true;
                out.publish(SpeechStarted {
                    item_id: item_id.map(Id::from),
                    audio_start_ms,
                });
                if self.config.input.turn_detection.interrupts_response() {
                    self.interrupt(out);
                }
            }
            ServerEvent::SpeechStopped {
                audio_end_ms,
                item_id,
            } => {
                self.user_speaking = false;
                out.publish(SpeechStopped {
                    item_id: item_id.map(Id::from),
                    audio_end_ms,
                });
            }
            ServerEvent::InputCommitted { item_id } => {
                self.input_bytes = 0;
                self.user_speaking = false;
                self.note_user_audio(item_id, None);
            }
            ServerEvent::InputCleared => self.input_bytes = 0,
            ServerEvent::ItemAdded { item } | ServerEvent::ItemDone { item } => {
                if let Item::Message {
                    id: Some(id),
                    role: Role::User,
                    content,
                    ..
                } = item
                {
                    let audio = content.iter().find_map(|p| match p {
                        ContentPart::InputAudio { transcript } => Some(transcript.clone()),
                        _ => None,
                    });
                    if let Some(transcript) = audio {
                        self.note_user_audio(id, transcript.filter(|t| !t.is_empty()));
                    }
                }
            }
            ServerEvent::ItemTruncated {
                item_id,
                audio_end_ms,
            } => {
                tracing::debug!(target: "liveagent::openai", item_id = %self.redact(&item_id), audio_end_ms, "item truncated");
            }
            ServerEvent::InputTranscriptionDelta { item_id, delta } => {
                if let Some(delta) = delta.filter(|d| !d.is_empty()) {
                    let kept = self.admit_text("input", &item_id, &delta, out);
                    if !kept.is_empty() {
                        out.publish(InputTranscriptChunk {
                            item_id: Some(item_id.into()),
                            text: kept.into(),
                            is_final: false,
                        });
                    }
                }
            }
            ServerEvent::InputTranscriptionCompleted {
                item_id,
                transcript,
            } => {
                let transcript = cut_to(&transcript, self.config.max_item_text_bytes);
                self.note_user_audio(item_id.clone(), Some(transcript.to_owned()));
                out.publish(InputTranscriptChunk {
                    item_id: Some(item_id.into()),
                    text: transcript.into(),
                    is_final: true,
                });
            }
            ServerEvent::InputTranscriptionFailed { item_id, error } => {
                let msg = error.and_then(|e| e.message).unwrap_or_default();
                self.error(
                    out,
                    ErrorKind::Provider,
                    format!("openai: transcription of {item_id} failed: {msg}"),
                );
            }
            ServerEvent::ResponseCreated { response } => {
                let id: Id = response.id.unwrap_or_default().into();
                self.response_requested = false;
                if let Some(prev) = self.active.take() {
                    tracing::debug!(target: "liveagent::openai", response = %self.redact(&prev.id), "response.created while another was active");
                }
                self.active = Some(ActiveResponse {
                    id: id.clone(),
                    calls: Vec::new(),
                    call_index: Default::default(),
                    interrupted: false,
                });
                out.publish(ResponseStarted { response_id: id });
            }
            ServerEvent::OutputItemAdded { response_id, item } => {
                self.on_output_item(&response_id, item, false);
            }
            ServerEvent::OutputItemDone { response_id, item } => {
                self.on_output_item(&response_id, item, true);
            }
            ServerEvent::OutputAudioDelta {
                response_id,
                item_id,
                delta,
            } => self.on_audio_delta(&response_id, &item_id, &delta, out),
            ServerEvent::OutputAudioDone { item_id, .. } => {
                if let Some(t) = self.tracks.iter_mut().find(|t| *t.item_id == *item_id) {
                    t.audio_done = true;
                }
            }
            ServerEvent::OutputAudioTranscriptDelta { item_id, delta, .. } => {
                let kept = self.admit_text("output", &item_id, &delta, out);
                if !kept.is_empty() {
                    self.append_assistant_text(&item_id, kept);
                    out.publish(OutputTranscriptChunk {
                        item_id: Some(item_id.into()),
                        text: kept.into(),
                        is_final: false,
                    });
                }
            }
            ServerEvent::OutputAudioTranscriptDone {
                item_id,
                transcript,
                ..
            } => {
                let transcript = cut_to(&transcript, self.config.max_item_text_bytes);
                self.finish_assistant_text(&item_id, transcript);
                out.publish(OutputTranscriptChunk {
                    item_id: Some(item_id.into()),
                    text: transcript.into(),
                    is_final: true,
                });
            }
            ServerEvent::OutputTextDelta { item_id, delta, .. } => {
                let kept = self.admit_text("text", &item_id, &delta, out);
                if !kept.is_empty() {
                    self.append_assistant_text(&item_id, kept);
                    out.publish(ModelMessageChunk::new(item_id, kept));
                }
            }
            ServerEvent::OutputTextDone { item_id, text, .. } => {
                self.finish_assistant_text(&item_id, &text);
            }
            ServerEvent::FunctionCallArgumentsDone {
                response_id,
                item_id,
                call_id,
                name,
                arguments,
            } => self.note_call(&response_id, item_id, call_id, name, Some(arguments)),
            ServerEvent::ResponseDone { response } => self.on_response_done(response, out),
            ServerEvent::Unknown => {}
        }
    }
}
