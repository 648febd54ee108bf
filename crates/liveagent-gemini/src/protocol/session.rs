//! Session lifecycle: the `setup` message, `setupComplete` (resume with a handle, resend
//! unconsumed frames, or replay the history into a new session), resumption handle updates,
//! and close frames, which is how Gemini reports errors (fatal or not).

use std::time::Instant;

use liveagent_core::{
    ErrorKind, Outbox, ProtocolSignal, RealtimeProtocol, ResumptionHandleUpdated, SessionOpened,
    SessionUpdated,
};
use serde_json::Value;

use super::{GeminiProtocol, Handle, Phase, PROVIDER};
use crate::config::Output;
use crate::errors::classify_close;
use crate::wire::*;

/// The tool's JSON Schema, as `parametersJsonSchema` takes it: an object schema (an empty
/// `{"type":"object"}` when the tool gave none), without the `$schema` keyword.
pub(super) fn json_schema_for_gemini(schema: &Value) -> Value {
    match schema {
        Value::Object(m) if !m.is_empty() => {
            let mut m = m.clone();
            m.remove("$schema");
            Value::Object(m)
        }
        _ => serde_json::json!({"type": "object", "properties": {}}),
    }
}

impl GeminiProtocol {
    /// The `setup` frame for a connection, resuming `handle` if given.
    pub fn setup_message(&self, handle: Option<&str>) -> Setup {
        let c = &self.config;
        let audio = c.is_audio_output();
        let speech_config = match &c.output {
            Output::Audio(a) if a.voice.is_some() || a.language_code.is_some() => {
                Some(SpeechConfig {
                    voice_config: a.voice.as_ref().map(|v| VoiceConfig {
                        prebuilt_voice_config: PrebuiltVoiceConfig {
                            voice_name: v.clone(),
                        },
                    }),
                    language_code: a.language_code.clone(),
                })
            }
            _ => None,
        };
        let generation_config = GenerationConfig {
            response_modalities: vec![if audio {
                Modality::Audio
            } else {
                Modality::Text
            }],
            speech_config,
            temperature: c.temperature,
            max_output_tokens: c.max_output_tokens,
        };
        let instructions = self.setup.instructions.trim();
        let tools = if self.setup.tools.is_empty() {
            None
        } else {
            Some(vec![Tool {
                function_declarations: self
                    .setup
                    .tools
                    .iter()
                    .map(|t| FunctionDeclaration {
                        name: t.name.clone(),
                        description: t.description.clone(),
                        parameters_json_schema: Some(json_schema_for_gemini(&t.parameters)),
                    })
                    .collect(),
            }])
        };
        let input = &c.input;
        let transcription = AudioTranscriptionConfig {
            language_codes: (!c.transcription_languages.is_empty())
                .then(|| c.transcription_languages.clone()),
        };
        let aad = &input.activity_detection;
        let realtime_input_config = if c.activity_detection_is_default()
            && input.activity_handling.is_none()
            && input.turn_coverage.is_none()
        {
            None
        } else {
            Some(RealtimeInputConfig {
                automatic_activity_detection: (!c.activity_detection_is_default()).then_some(
                    AutomaticActivityDetection {
                        disabled: Some(aad.disabled),
                        start_of_speech_sensitivity: aad.start_sensitivity,
                        end_of_speech_sensitivity: aad.end_sensitivity,
                        prefix_padding_ms: aad.prefix_padding_ms,
                        silence_duration_ms: aad.silence_duration_ms,
                    },
                ),
                activity_handling: input.activity_handling,
                turn_coverage: input.turn_coverage,
            })
        };
        let session_resumption = if c.resumption.enabled {
            Some(SessionResumptionConfig {
                handle: handle.map(str::to_owned),
                transparent: c.resumption.transparent.then_some(true),
            })
        } else {
            None
        };
        Setup {
            model: c.model_path(),
            generation_config: Some(generation_config),
            system_instruction: (!instructions.is_empty())
                .then(|| Content::text(None, instructions)),
            tools,
            realtime_input_config,
            input_audio_transcription: input.transcribe.then(|| transcription.clone()),
            // On whenever the model speaks, as AG2 does: the transcript is what
            // `ModelMessageChunk` carries in audio mode.
            output_audio_transcription: audio.then(|| transcription.clone()),
            session_resumption,
            context_window_compression: c.compression.map(|cc| ContextWindowCompression {
                trigger_tokens: cc.trigger_tokens,
                sliding_window: SlidingWindow {
                    target_tokens: cc.target_tokens,
                },
            }),
        }
    }

    /// Classifies the close frame the server sent (Gemini reports errors this way) and
    /// reports it: a non-fatal [`ErrorEvent`](liveagent_core::ErrorEvent), or for errors retrying cannot fix (bad key,
    /// unknown model, quota, a `setup` the server refuses) a [`ProtocolSignal::Fatal`].
    ///
    /// The session runtime should call this with the close code and reason before
    /// [`on_close`](RealtimeProtocol::on_close).
    pub fn on_close_frame(&mut self, code: Option<u16>, reason: &str, out: &mut Outbox) {
        let reason = match &self.api_key {
            Some(k) => k.redact(reason),
            None => reason.to_owned(),
        };
        let Some(mut err) = classify_close(code, &reason) else {
            tracing::debug!(provider = PROVIDER, ?code, "normal close");
            return;
        };
        let resuming = self.phase == Phase::AwaitingSetup && self.using_handle.is_some();
        if resuming && err.kind != ErrorKind::Auth {
            // The server would not resume: forget the handle, start afresh next time.
            tracing::warn!(provider = PROVIDER, error = %err, "resumption refused; the next connection starts a new session");
            self.handle = None;
            out.publish(ResumptionHandleUpdated {
                provider: PROVIDER,
                handle: None,
            });
            out.error(PROVIDER, err);
            return;
        }
        if self.phase == Phase::AwaitingSetup && err.kind == ErrorKind::InvalidRequest {
            // The server refused our setup: the configuration is wrong, retrying cannot help.
            err.kind = ErrorKind::Config;
        }
        if err.is_permanent() {
            tracing::error!(provider = PROVIDER, error = %err, "fatal close");
            out.signal(ProtocolSignal::Fatal(err));
        } else {
            tracing::warn!(provider = PROVIDER, error = %err, "connection closed with an error");
            out.error(PROVIDER, err);
        }
    }

    pub(super) fn on_setup_complete(&mut self, done: SetupComplete, out: &mut Outbox) {
        if self.phase != Phase::AwaitingSetup {
            tracing::debug!(provider = PROVIDER, "unexpected setupComplete ignored");
            return;
        }
        let handle = self.using_handle.clone();
        let resumed = handle.is_some();
        self.phase = Phase::Ready;
        self.setup_failures = 0;
        if !self.ever_ready {
            out.publish(SessionOpened {
                provider: PROVIDER,
                session_id: done.session_id,
            });
        }
        out.publish(SessionUpdated { provider: PROVIDER });
        if self.ever_ready || !self.history.is_empty() {
            let transparent = self.config.resumption.transparent;
            match &handle {
                Some(h) if transparent => {
                    let frames = std::mem::take(&mut self.resend);
                    tracing::info!(
                        provider = PROVIDER,
                        frames = frames.len(),
                        "session resumed (transparent): resending unconsumed frames"
                    );
                    for f in frames {
                        self.send_text(f, out);
                    }
                    self.orphan_batches_from(h.history_seq);
                }
                Some(h) => {
                    let n = self.replay_history(h.history_seq, out);
                    tracing::info!(
                        provider = PROVIDER,
                        replayed_frames = n,
                        "session resumed with a handle"
                    );
                    self.orphan_batches_from(h.history_seq);
                }
                None => {
                    let n = self.replay_history(0, out);
                    tracing::info!(
                        provider = PROVIDER,
                        replayed_frames = n,
                        entries = self.history.len(),
                        "new session: conversation history replayed"
                    );
                    self.orphan_batches_from(0);
                }
            }
        }
        self.ever_ready = true;
        out.signal(ProtocolSignal::Ready { resumed });
        // Anything the runtime handed over too early.
        while let Some(cmd) = self.held.pop_front() {
            self.on_command(cmd, out);
        }
    }

    pub(super) fn replay_history(&mut self, from_seq: u64, out: &mut Outbox) -> usize {
        let frames = self.history.replay_turns(from_seq);
        let n = frames.len();
        for turns in frames {
            self.send(
                ClientMessage::ClientContent(ClientContent {
                    turns,
                    turn_complete: false,
                }),
                out,
            );
        }
        n
    }

    pub(super) fn on_resumption_update(&mut self, u: SessionResumptionUpdate, out: &mut Outbox) {
        if let Some(idx) = u.last_consumed_client_message_index {
            while let Some((i, _)) = self.unconsumed.front() {
                if *i > idx {
                    break;
                }
                if let Some((_, f)) = self.unconsumed.pop_front() {
                    self.unconsumed_bytes -= f.len();
                }
            }
        }
        match (u.resumable, u.new_handle.filter(|h| !h.is_empty())) {
            (Some(true), Some(value)) => {
                tracing::debug!(provider = PROVIDER, "resumption handle updated");
                // A conversation store keeps it, for another instance to resume with.
                out.publish(ResumptionHandleUpdated {
                    provider: PROVIDER,
                    handle: Some(value.clone()),
                });
                self.handle = Some(Handle {
                    value,
                    received: Instant::now(),
                    history_seq: self.history.next_seq(),
                });
            }
            _ => tracing::debug!(
                provider = PROVIDER,
                "not resumable at this point; keeping the previous handle"
            ),
        }
    }
}
