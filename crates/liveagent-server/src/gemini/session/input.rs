//! What the client sends: realtime audio (server VAD or manual activity markers), client
//! content turns and tool responses, and the user turns they start.

use super::*;

impl GSession {
    pub(super) async fn on_realtime_input(&mut self, ri: RealtimeInput) -> R {
        let mut blobs: Vec<Blob> = ri.media_chunks.unwrap_or_default();
        if let Some(a) = ri.audio {
            blobs.insert(0, a);
        }
        for blob in blobs {
            let mime = blob.mime_type.as_deref().unwrap_or("audio/pcm");
            if !mime.starts_with("audio/") {
                continue; // video frames and images are accepted and ignored
            }
            let bytes = match audio::b64_decode(&blob.data) {
                Ok(b) => b,
                Err(e) => {
                    return self
                        .reject(&format!("Invalid base64 audio data: {e}"))
                        .await
                }
            };
            let samples = WireAudio::Pcm(rate_of(Some(mime))).decode(&bytes);
            self.append(samples).await?;
        }
        if ri.activity_start.is_some() {
            if self.run.is_some() && self.interrupts {
                self.interrupt().await?;
            }
            self.manual_active = true;
            self.input.clear();
        }
        if ri.activity_end.is_some() && self.manual_active {
            self.manual_active = false;
            // Packed by the input buffer: the conversation keeps it (see `audio::Pcm`).
            let all = self.input.take_all();
            let ms = audio::samples_to_ms(all.len(), INTERNAL_RATE);
            self.user_audio_turn(all.clone(), all, ms).await?;
        }
        if ri.audio_stream_end == Some(true) {
            if let Some(VadEvent::SpeechStopped {
                end_ms,
                last_voiced_ms,
            }) = self.vad.flush()
            {
                self.speech_stopped(end_ms, last_voiced_ms).await?;
            }
        }
        if let Some(text) = ri.text {
            if self.run.is_some() && self.interrupts {
                self.interrupt().await?;
            }
            self.push_item(Role::User, Content::InputText(text.clone()));
            self.user_turn(TurnInput { text, audio: None }).await?;
        }
        let _ = ri.video;
        Ok(())
    }

    pub(super) async fn append(&mut self, samples: Vec<i16>) -> R {
        if !self.auto_vad && !self.manual_active {
            // Manual activity and no activityStart: nothing will ever commit this audio.
            self.input.skip(samples.len());
            return Ok(());
        }
        let cap_ms = self.shared.cfg.max_input_audio_ms;
        if self.input.len() + samples.len() > audio::ms_to_samples(cap_ms, INTERNAL_RATE) {
            return self
                .reject(&format!(
                    "Input audio exceeds the {cap_ms} ms limit for one turn; end the activity sooner."
                ))
                .await;
        }
        self.input.push(&samples);
        if !self.auto_vad {
            return Ok(());
        }
        for ev in self.vad.push(&samples) {
            match ev {
                VadEvent::SpeechStarted { start_ms } => {
                    self.shared
                        .stats
                        .turns_detected
                        .fetch_add(1, Ordering::Relaxed);
                    self.speech_start = Some(start_ms);
                    if self.run.is_some() && self.interrupts {
                        self.interrupt().await?;
                    }
                }
                VadEvent::SpeechStopped {
                    end_ms,
                    last_voiced_ms,
                } => self.speech_stopped(end_ms, last_voiced_ms).await?,
            }
        }
        if self.speech_start.is_none() && !self.manual_active {
            let keep = (self.vad.config().idle_keep_ms() * SPS_MS) as usize;
            self.input.keep_newest(keep);
        }
        Ok(())
    }

    pub(super) async fn speech_stopped(&mut self, end_ms: u64, last_voiced_ms: u64) -> R {
        let Some(start_ms) = self.speech_start.take() else {
            return Ok(());
        };
        let from = start_ms.saturating_sub(self.vad.config().prefix_padding_ms as u64);
        let all = self.input.take_range(from * SPS_MS, end_ms * SPS_MS);
        let voiced = ((last_voiced_ms.saturating_sub(from)) * SPS_MS) as usize;
        // Packed by the input buffer; the echo is a view of the item's audio, not a copy.
        let echo = all.slice(0, voiced);
        self.user_audio_turn(all, echo, last_voiced_ms.saturating_sub(start_ms))
            .await
    }

    pub(super) async fn user_audio_turn(&mut self, all: Pcm, echo: Pcm, speech_ms: u64) -> R {
        if all.is_empty() {
            return Ok(());
        }
        let label = TurnInput::speech_label(speech_ms);
        self.push_item(
            Role::User,
            Content::InputAudio {
                audio: all,
                transcript: self.in_transcription.then(|| label.clone()),
            },
        );
        if self.in_transcription {
            self.content(ServerContent {
                input_transcription: Some(Transcription {
                    text: label.clone(),
                    finished: Some(true),
                }),
                ..Default::default()
            })
            .await?;
        }
        self.user_turn(TurnInput {
            text: label,
            audio: Some(echo),
        })
        .await
    }

    pub(super) fn push_item(&mut self, role: Role, content: Content) -> String {
        let id = self.shared.new_id("item");
        self.items.push(Item {
            id: id.clone(),
            kind: ItemKind::Message {
                role,
                content: vec![content],
            },
            status: "completed",
        });
        id
    }

    pub(super) async fn on_client_content(&mut self, cc: ClientContent) -> R {
        if self.run.is_some() {
            self.interrupt().await?;
        }
        let mut last_user: Option<String> = None;
        for turn in cc.turns.unwrap_or_default() {
            let role = match turn.role.as_deref() {
                Some("model") => Role::Assistant,
                _ => Role::User,
            };
            for part in turn.parts.unwrap_or_default() {
                if let Some(t) = part.text {
                    if role == Role::User {
                        last_user = Some(t.clone());
                        self.push_item(role, Content::InputText(t));
                    } else {
                        self.push_item(role, Content::OutputText(t));
                    }
                } else if let Some(fc) = part.function_call {
                    let id = self.shared.new_id("item");
                    self.items.push(Item {
                        id,
                        kind: ItemKind::FunctionCall {
                            call_id: fc.id.unwrap_or_default(),
                            name: fc.name.unwrap_or_default(),
                            arguments: fc.args.unwrap_or(Value::Null).to_string(),
                        },
                        status: "completed",
                    });
                } else if let Some(fr) = part.function_response {
                    let id = self.shared.new_id("item");
                    self.items.push(Item {
                        id,
                        kind: ItemKind::FunctionCallOutput {
                            call_id: fr.id.unwrap_or_default(),
                            output: output_text(fr.response.as_ref()),
                        },
                        status: "completed",
                    });
                } else if let Some(blob) = part.inline_data {
                    if role == Role::User {
                        if let Ok(bytes) = audio::b64_decode(&blob.data) {
                            let samples =
                                WireAudio::Pcm(rate_of(blob.mime_type.as_deref())).decode(&bytes);
                            self.push_item(
                                role,
                                Content::InputAudio {
                                    audio: Pcm::packed(samples),
                                    transcript: None,
                                },
                            );
                        }
                    }
                }
            }
        }
        if cc.turn_complete == Some(true) {
            self.user_turn(TurnInput {
                text: last_user.unwrap_or_default(),
                audio: None,
            })
            .await?;
        }
        Ok(())
    }

    pub(super) async fn on_tool_response(&mut self, tr: ToolResponse) -> R {
        for fr in tr.function_responses {
            let call_id = fr.id.clone().unwrap_or_default();
            let output = output_text(fr.response.as_ref());
            let id = self.shared.new_id("item");
            self.items.push(Item {
                id,
                kind: ItemKind::FunctionCallOutput {
                    call_id: call_id.clone(),
                    output: output.clone(),
                },
                status: "completed",
            });
            if let Some(run) = self.run.as_mut() {
                if let Some(p) = run.waiting.iter().position(|w| *w == call_id) {
                    run.waiting.remove(p);
                    run.outputs.push(output);
                }
            }
        }
        if let Some(run) = self.run.as_mut() {
            if run.waiting.is_empty() && !run.outputs.is_empty() {
                let out = std::mem::take(&mut run.outputs).join("\n");
                substitute(&mut run.steps, "{output}", &out);
                run.next_at = Instant::now();
            }
        }
        Ok(())
    }

    // ---------------------------------------------------------------- responses

    pub(super) async fn user_turn(&mut self, input: TurnInput) -> R {
        if self.run.is_some() {
            // NO_INTERRUPTION: answer once the current turn is over.
            self.unanswered = Some(input);
            return Ok(());
        }
        let plan = self.selected.brain.plan(&self.selected.state, &input);
        self.start_run(plan);
        Ok(())
    }
}
