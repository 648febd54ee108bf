//! Model turns: a turn opens on the first model output (`ResponseStarted`) and finishes on
//! `turnComplete`, an interruption or a dropped connection (`ResponseDone`); model text,
//! input and output transcripts, voice activity, user text and the control commands.

use std::time::Instant;

use liveagent_core::{
    ControlCommand, ErrorKind, Id, InputTranscriptChunk, LiveError, ModelMessageChunk, Outbox,
    OutputTranscriptChunk, ResponseDone, ResponseStarted, ResponseStatus, SpeechStarted,
    SpeechStopped, Usage, UserText,
};

use super::{GeminiProtocol, Turn, PROVIDER};
use crate::config::OUTPUT_SAMPLE_RATE;
use crate::history::HistoryEntry;
use crate::wire::*;

pub(super) fn to_usage(u: &UsageMetadata) -> Usage {
    let audio = |details: &[ModalityTokenCount]| {
        details
            .iter()
            .filter(|d| d.modality.as_deref() == Some("AUDIO"))
            .map(|d| d.token_count.unwrap_or(0))
            .reduce(|a, b| a + b)
    };
    let input = u.prompt_token_count.unwrap_or(0);
    let output = u.response_token_count.unwrap_or(0);
    Usage {
        input_tokens: input,
        output_tokens: output,
        total_tokens: u.total_token_count.unwrap_or(input + output),
        input_audio_tokens: audio(&u.prompt_tokens_details),
        output_audio_tokens: audio(&u.response_tokens_details),
        cached_tokens: u.cached_content_token_count,
        stages: Vec::new(),
        thinking_tokens: u.thoughts_token_count,
    }
}

impl GeminiProtocol {
    pub(super) fn ensure_turn(&mut self, out: &mut Outbox) -> &mut Turn {
        if self.turn.is_none() {
            self.turn_seq += 1;
            let n = self.turn_seq;
            let response_id: Id = format!("gemini-turn-{n}").into();
            let item_id: Id = format!("gemini-item-{n}").into();
            self.input_split = self.input.len();
            out.publish(ResponseStarted {
                response_id: response_id.clone(),
            });
            self.turn = Some(Turn {
                response_id,
                item_id,
                text: String::new(),
                transcript: String::new(),
                transcript_final: false,
                audio_samples: 0,
                audio_rate: OUTPUT_SAMPLE_RATE,
                odd_byte: None,
                usage: self.pending_usage.take(),
            });
        }
        self.turn.as_mut().expect("turn was just set")
    }

    pub(super) fn flush_input(&mut self, upto: usize, out: &mut Outbox) {
        let upto = upto.min(self.input.len());
        if !self.input.is_char_boundary(upto) {
            return;
        }
        let rest = self.input.split_off(upto);
        let text = std::mem::replace(&mut self.input, rest);
        self.input_split = 0;
        if self.input.is_empty() {
            // The next user turn starts a fresh count against the cap.
            self.text_caps.forget("input", "user turn");
        }
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        out.publish(InputTranscriptChunk {
            item_id: None,
            text: text.into(),
            is_final: true,
        });
        self.history.push(HistoryEntry::User(text.to_owned()));
    }

    pub(super) fn finish_turn(
        &mut self,
        status: ResponseStatus,
        reason: Option<&str>,
        out: &mut Outbox,
    ) {
        let Some(turn) = self.turn.take() else {
            return;
        };
        if !turn.transcript.trim().is_empty() && !turn.transcript_final {
            out.publish(OutputTranscriptChunk {
                item_id: Some(turn.item_id.clone()),
                text: turn.transcript.trim().into(),
                is_final: true,
            });
        }
        let text = if !turn.transcript.trim().is_empty()
            && (self.config.is_audio_output() || turn.text.trim().is_empty())
        {
            turn.transcript.clone()
        } else {
            turn.text.clone()
        };
        let audio_ms = if turn.audio_rate > 0 {
            turn.audio_samples * 1000 / turn.audio_rate as u64
        } else {
            0
        };
        let said = (!text.trim().is_empty()).then(|| std::sync::Arc::<str>::from(text.as_str()));
        self.history.push(HistoryEntry::Model {
            text,
            item_id: turn.item_id.to_string(),
            audio_ms,
            heard_ms: None,
        });
        out.publish(ResponseDone {
            response_id: turn.response_id.clone(),
            status,
            reason: reason.map(str::to_owned),
            usage: turn.usage,
            text: said,
        });
        self.last_turn = Some((turn.response_id, turn.item_id));
        self.input_since_turn = false;
    }

    pub(super) fn on_input_transcription(&mut self, t: Transcription, out: &mut Outbox) {
        if let Some(text) = t.text.filter(|s| !s.is_empty()) {
            let text = self.admit_text("input", "user turn", &text, out);
            if !text.is_empty() {
                self.input.push_str(text);
                self.input_since_turn = true;
                self.last_input_at = Some(Instant::now());
                out.publish(InputTranscriptChunk {
                    item_id: None,
                    text: text.into(),
                    is_final: false,
                });
            }
        }
        if t.finished == Some(true) {
            self.flush_input(usize::MAX, out);
        }
    }

    /// The output transcript of the open turn is complete: publish it whole, once.
    fn finish_output_transcript(&mut self, out: &mut Outbox) {
        if let Some(turn) = self.turn.as_mut() {
            if !turn.transcript_final && !turn.transcript.trim().is_empty() {
                turn.transcript_final = true;
                let whole = turn.transcript.trim().to_owned();
                let item = turn.item_id.clone();
                out.publish(OutputTranscriptChunk {
                    item_id: Some(item),
                    text: whole.into(),
                    is_final: true,
                });
            }
        }
    }

    pub(super) fn on_output_transcription(&mut self, t: Transcription, out: &mut Outbox) {
        let text = t.text.filter(|s| !s.is_empty());
        if self.turn.is_none() && !self.input_since_turn {
            // A late piece of the turn that just ended (transcripts are not ordered relative
            // to turnComplete).
            if let (Some((_, item)), Some(text)) = (self.last_turn.clone(), text.clone()) {
                let text = self.admit_text("output", &item, &text, out).to_owned();
                if text.is_empty() {
                    return;
                }
                tracing::debug!(
                    provider = PROVIDER,
                    "late output transcript attached to the last turn"
                );
                out.publish(OutputTranscriptChunk {
                    item_id: Some(item.clone()),
                    text: text.clone().into(),
                    is_final: t.finished == Some(true),
                });
                self.history.append_model_text(&item, &text);
                return;
            }
        }
        let Some(text) = text else {
            if t.finished == Some(true) {
                self.finish_output_transcript(out);
            }
            return;
        };
        let item = self.ensure_turn(out).item_id.clone();
        let text = self.admit_text("output", &item, &text, out).to_owned();
        if text.is_empty() {
            // Past the turn's cap: nothing more is kept, but the transcript still ends.
            if t.finished == Some(true) {
                self.finish_output_transcript(out);
            }
            return;
        }
        let turn = self.ensure_turn(out);
        turn.transcript.push_str(&text);
        turn.transcript_final = false;
        let item = turn.item_id.clone();
        out.publish(OutputTranscriptChunk {
            item_id: Some(item.clone()),
            text: text.into(),
            is_final: false,
        });
        if t.finished == Some(true) {
            let turn = self.turn.as_mut().expect("turn exists");
            turn.transcript_final = true;
            out.publish(OutputTranscriptChunk {
                item_id: Some(item),
                text: turn.transcript.trim().into(),
                is_final: true,
            });
        }
    }

    pub(super) fn on_model_turn(&mut self, content: Content, out: &mut Outbox) {
        for part in content.parts {
            if let Some(blob) = part.inline_data {
                self.on_inline_data(blob, out);
            } else if let Some(text) = part.text {
                if part.thought == Some(true) {
                    tracing::trace!(provider = PROVIDER, "thought part skipped");
                    continue;
                }
                if text.is_empty() {
                    continue;
                }
                let item = self.ensure_turn(out).item_id.clone();
                let text = self.admit_text("text", &item, &text, out);
                if text.is_empty() {
                    continue;
                }
                let turn = self.ensure_turn(out);
                turn.text.push_str(text);
                out.publish(ModelMessageChunk::new(item, text));
            } else {
                tracing::debug!(
                    provider = PROVIDER,
                    "model turn part of another kind ignored"
                );
            }
        }
    }

    pub(super) fn on_turn_complete(&mut self, reason: Option<String>, out: &mut Outbox) {
        if self.turn.is_none() {
            // The turn ended already (interrupted), or the model produced nothing.
            tracing::debug!(provider = PROVIDER, "turnComplete without an open turn");
            self.pending_usage = None;
            return;
        }
        self.flush_input(usize::MAX, out);
        let reason = reason.filter(|r| !r.is_empty() && r != "TURN_COMPLETE_REASON_UNSPECIFIED");
        let (status, reason) = match reason.as_deref() {
            None => (ResponseStatus::Completed, None),
            Some("NEED_MORE_INPUT") => (
                ResponseStatus::Completed,
                Some("need_more_input".to_owned()),
            ),
            Some(r) => (ResponseStatus::Incomplete, Some(r.to_ascii_lowercase())),
        };
        self.finish_turn(status, reason.as_deref(), out);
    }

    pub(super) fn on_voice_activity(&mut self, start: bool, out: &mut Outbox) {
        if start && !self.user_speaking {
            self.user_speaking = true;
            out.publish(SpeechStarted::default());
        } else if !start && self.user_speaking {
            self.user_speaking = false;
            out.publish(SpeechStopped::default());
        }
    }

    pub(super) fn on_text(&mut self, text: UserText, out: &mut Outbox) {
        let t = text.text.trim();
        if t.is_empty() && !text.respond {
            return;
        }
        self.flush_input(usize::MAX, out);
        self.input_since_turn = true;
        let turns = if t.is_empty() {
            Vec::new()
        } else {
            self.history.push(HistoryEntry::User(t.to_owned()));
            vec![Content::text(Some("user"), t)]
        };
        self.send(
            ClientMessage::ClientContent(ClientContent {
                turns,
                turn_complete: text.respond,
            }),
            out,
        );
    }

    pub(super) fn on_control(&mut self, command: ControlCommand, out: &mut Outbox) {
        let manual = self.config.manual_activity();
        match command {
            ControlCommand::ActivityStart if manual => {
                if self.activity_open {
                    tracing::debug!(provider = PROVIDER, "activityStart while activity is open");
                }
                self.activity_open = true;
                self.input_since_turn = true;
                self.send(
                    ClientMessage::RealtimeInput(RealtimeInput::ActivityStart(Empty {})),
                    out,
                );
            }
            ControlCommand::ActivityEnd | ControlCommand::CommitInput if manual => {
                if !self.activity_open {
                    tracing::debug!(
                        provider = PROVIDER,
                        ?command,
                        "no activity open: nothing to end"
                    );
                    return;
                }
                self.activity_open = false;
                self.send(
                    ClientMessage::RealtimeInput(RealtimeInput::ActivityEnd(Empty {})),
                    out,
                );
            }
            ControlCommand::ActivityStart | ControlCommand::ActivityEnd => {
                tracing::warn!(
                    provider = PROVIDER,
                    ?command,
                    "needs manual activity detection; ignored"
                );
                out.error(
                    PROVIDER,
                    LiveError::new(
                        ErrorKind::InvalidRequest,
                        format!(
                            "{command:?} needs manual activity detection \
                             (ActivityDetection::manual()); ignored"
                        ),
                    ),
                );
            }
            ControlCommand::CommitInput => {
                // Automatic VAD: flush the audio the server buffered (microphone paused).
                self.send(
                    ClientMessage::RealtimeInput(RealtimeInput::AudioStreamEnd(true)),
                    out,
                );
            }
            ControlCommand::CreateResponse => {
                self.input_since_turn = true;
                self.send(
                    ClientMessage::ClientContent(ClientContent {
                        turns: Vec::new(),
                        turn_complete: true,
                    }),
                    out,
                );
            }
            ControlCommand::ClearInput => {
                tracing::debug!(
                    provider = PROVIDER,
                    "ClearInput has no Gemini equivalent; ignored"
                );
            }
            ControlCommand::CancelResponse => {
                tracing::warn!(
                    provider = PROVIDER,
                    "CancelResponse has no Gemini equivalent"
                );
                out.error(
                    PROVIDER,
                    LiveError::new(
                        ErrorKind::InvalidRequest,
                        "Gemini Live cannot cancel a response: stop playback locally; \
                         user speech (or ActivityStart in manual mode) interrupts the model",
                    ),
                );
            }
        }
    }
}
