//! Playing the brain's plans back: a run's steps, paced audio and transcripts,
//! interruption, and the turn's completion (usage, items, resumption).

use super::*;

impl GSession {
    pub(super) fn start_run(&mut self, plan: Plan) {
        self.responses += 1;
        self.shared.stats.responses.fetch_add(1, Ordering::Relaxed);
        self.run = Some(Run {
            steps: plan.steps,
            cur: None,
            next_at: Instant::now() + plan.delay.unwrap_or_default(),
            waiting: Vec::new(),
            outputs: Vec::new(),
            slow: 1.0,
            sent_at_start: self.conn.sent,
            drop_after_events: plan.drop_after_events,
            out_audio_samples: 0,
            out_text_chars: 0,
        });
    }

    pub(super) async fn interrupt(&mut self) -> R {
        let Some(mut run) = self.run.take() else {
            return Ok(());
        };
        if let Some(say) = run.cur.take() {
            self.finalize_say(&say, true);
        }
        self.content(ServerContent {
            interrupted: Some(true),
            ..Default::default()
        })
        .await?;
        if !run.waiting.is_empty() {
            self.send(ServerMessage {
                tool_call_cancellation: Some(ToolCallCancellation {
                    ids: std::mem::take(&mut run.waiting),
                }),
                ..Default::default()
            })
            .await?;
        }
        self.content(ServerContent {
            turn_complete: Some(true),
            ..Default::default()
        })
        .await?;
        self.publish(true);
        Ok(())
    }

    pub(super) async fn advance(&mut self) -> R {
        let Some(mut run) = self.run.take() else {
            return Ok(());
        };
        // Lend the drop settings while stepping.
        let r = self.step(&mut run).await;
        match r {
            Ok(true) => {
                self.run = Some(run);
                Ok(())
            }
            Ok(false) => {
                self.finish(run).await?;
                if let Some(input) = self.unanswered.take() {
                    self.user_turn(input).await?;
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    pub(super) async fn emit_in_run(&mut self, run: &Run, msg: ServerMessage) -> R {
        self.conn.send_json(&msg).await?;
        if let Some(k) = run.drop_after_events {
            if self.conn.sent - run.sent_at_start >= k as u64 {
                tracing::info!("scenario: dropping the connection after {k} response messages");
                self.conn.drop_now();
                return Err(End::Closed);
            }
        }
        Ok(())
    }

    /// One piece of work; Ok(false) when the turn is over.
    pub(super) async fn step(&mut self, run: &mut Run) -> Result<bool, End> {
        let now = Instant::now();
        loop {
            if run.cur.is_none() {
                let Some(step) = run.steps.pop_front() else {
                    return Ok(false);
                };
                match step {
                    Step::Say {
                        text,
                        audio,
                        drop_after_ms,
                    } => {
                        let audio = if self.text_only {
                            Pcm::default()
                        } else {
                            audio.unwrap_or_else(|| Pcm::from(audio::synth_text(&text)))
                        };
                        self.conn.answer_end();
                        let item_id = self.shared.new_id("item");
                        run.cur = Some(Say {
                            words: if self.text_only {
                                split_words(&text)
                            } else {
                                VecDeque::new()
                            },
                            audio,
                            pos: 0,
                            text: text.chars().collect(),
                            text_sent: 0,
                            drop_at: drop_after_ms
                                .map(|ms| audio::ms_to_samples(ms, INTERNAL_RATE)),
                            item_id,
                        });
                    }
                    Step::Call {
                        name,
                        args,
                        drop_mid_arguments,
                    } => {
                        if drop_mid_arguments {
                            tracing::info!("scenario: dropping the connection before the toolCall");
                            self.conn.drop_now();
                            return Err(End::Closed);
                        }
                        let mut calls = vec![(name, args)];
                        while let Some(Step::Call { .. }) = run.steps.front() {
                            if let Some(Step::Call { name, args, .. }) = run.steps.pop_front() {
                                calls.push((name, args));
                            }
                        }
                        let mut out = Vec::new();
                        for (name, args) in calls {
                            let id = self.shared.new_id("function-call");
                            self.items.push(Item {
                                id: self.shared.new_id("item"),
                                kind: ItemKind::FunctionCall {
                                    call_id: id.clone(),
                                    name: name.clone(),
                                    arguments: args.to_string(),
                                },
                                status: "completed",
                            });
                            run.waiting.push(id.clone());
                            out.push(FunctionCallOut { id, name, args });
                        }
                        self.emit_in_run(
                            run,
                            ServerMessage {
                                tool_call: Some(ToolCall {
                                    function_calls: out,
                                }),
                                ..Default::default()
                            },
                        )
                        .await?;
                        self.publish(true);
                        return Ok(true); // paused until the toolResponse
                    }
                    Step::Wait(d) => {
                        run.next_at = now + d;
                        return Ok(true);
                    }
                    Step::Slow(f) => run.slow = f,
                    other => {
                        let msg = self.simple_message(other);
                        match msg {
                            Ok(Some(m)) => self.emit_in_run(run, m).await?,
                            Ok(None) => {}
                            Err(step) => self.simple_step(step).await?,
                        }
                    }
                }
                continue;
            }
            let finished = self.tick(run, now).await?;
            let pace = self.chunk.mul_f32(run.slow);
            run.next_at = if self.paced {
                (run.next_at + pace).max(now - CATCH_UP)
            } else {
                now
            };
            if finished {
                if let Some(say) = run.cur.take() {
                    self.finalize_say(&say, false);
                }
            }
            return Ok(true);
        }
    }

    /// Sends one chunk; Ok(true) when the utterance is complete.
    pub(super) async fn tick(&mut self, run: &mut Run, now: Instant) -> Result<bool, End> {
        let chunk_samples = audio::ms_to_samples(self.chunk.as_millis() as u64, INTERNAL_RATE);
        let late = now.saturating_duration_since(run.next_at).as_micros() as u64;
        let Some(say) = run.cur.as_mut() else {
            return Ok(true);
        };
        if self.text_only {
            let Some(w) = say.words.pop_front() else {
                return Ok(true);
            };
            let last = say.words.is_empty();
            run.out_text_chars += w.chars().count();
            self.shared.stats.chunk_sent(late);
            let msg = ServerMessage {
                server_content: Some(ServerContent {
                    model_turn: Some(ModelTurn {
                        role: "model",
                        parts: vec![OutPart {
                            text: Some(w),
                            inline_data: None,
                        }],
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            };
            self.emit_in_run(run, msg).await?;
            return Ok(last);
        }
        let len = say.audio.len();
        let from = say.pos;
        let end = (from + chunk_samples).min(len);
        say.pos = end;
        let drop_now = say.drop_at.is_some_and(|d| end >= d);
        let target = if end >= len {
            say.text.len()
        } else {
            say.text.len() * end / len.max(1)
        };
        let tdelta: String = if target > say.text_sent {
            let d = say.text[say.text_sent..target].iter().collect();
            say.text_sent = target;
            d
        } else {
            String::new()
        };
        let data = audio::b64_delta(&say.audio, from, end, audio::WireAudio::Pcm(INTERNAL_RATE));
        if end > from {
            run.out_audio_samples += end - from;
            self.shared.stats.chunk_sent(late);
            let msg = ServerMessage {
                server_content: Some(ServerContent {
                    model_turn: Some(ModelTurn {
                        role: "model",
                        parts: vec![OutPart {
                            text: None,
                            inline_data: Some(OutBlob {
                                mime_type: "audio/pcm;rate=24000",
                                data,
                            }),
                        }],
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            };
            self.conn.mark_audio(end - from, INTERNAL_RATE);
            self.emit_in_run(run, msg).await?;
        }
        if drop_now {
            tracing::info!("scenario: dropping the connection mid-audio");
            self.conn.drop_now();
            return Err(End::Closed);
        }
        if !tdelta.is_empty() {
            run.out_text_chars += tdelta.chars().count();
            if self.out_transcription {
                let msg = ServerMessage {
                    server_content: Some(ServerContent {
                        output_transcription: Some(Transcription {
                            text: tdelta,
                            finished: None,
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                self.emit_in_run(run, msg).await?;
            }
        }
        Ok(end >= len)
    }

    /// Records what was said (all of it, or up to the interruption) as a model item.
    pub(super) fn finalize_say(&mut self, say: &Say, cut: bool) {
        self.conn.answer_end();
        // What was played is a view of the response's audio, not a copy.
        let (audio, text): (Pcm, String) = if cut {
            (
                say.audio.slice(0, say.pos),
                say.text[..say.text_sent].iter().collect(),
            )
        } else {
            (say.audio.clone(), say.text.iter().collect())
        };
        let content = if self.text_only {
            let n = say.text.len() - say.words.iter().map(|w| w.chars().count()).sum::<usize>();
            Content::OutputText(say.text[..n.min(say.text.len())].iter().collect())
        } else {
            Content::OutputAudio {
                // Kept packed (the echo of a user turn already is: then it is the same buffer).
                audio: audio.to_packed(),
                transcript: text,
            }
        };
        self.items.push(Item {
            id: say.item_id.clone(),
            kind: ItemKind::Message {
                role: Role::Assistant,
                content: vec![content],
            },
            status: if cut { "incomplete" } else { "completed" },
        });
    }

    pub(super) async fn finish(&mut self, run: Run) -> R {
        self.conn
            .send_json(&ServerMessage {
                server_content: Some(ServerContent {
                    generation_complete: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await?;
        let mut prompt_text = 0u64;
        let mut prompt_audio_ms = 0u64;
        for item in &self.items {
            prompt_text += (item.text().chars().count() as u64).div_ceil(4);
            if item.role() == Some(Role::User) {
                prompt_audio_ms += item.audio_ms();
            }
        }
        let prompt_audio = prompt_audio_ms * AUDIO_TOKENS_PER_S / 1000;
        let resp_text = (run.out_text_chars as u64).div_ceil(4);
        let resp_audio =
            audio::samples_to_ms(run.out_audio_samples, INTERNAL_RATE) * AUDIO_TOKENS_PER_S / 1000;
        let response_token_count = if self.text_only {
            resp_text
        } else {
            resp_audio
        };
        let prompt = prompt_text + prompt_audio;
        let thoughts = self.thinking;
        self.conn
            .send_json(&ServerMessage {
                server_content: Some(ServerContent {
                    turn_complete: Some(true),
                    ..Default::default()
                }),
                usage_metadata: Some(UsageMetadata {
                    prompt_token_count: prompt,
                    response_token_count,
                    thoughts_token_count: thoughts,
                    total_token_count: prompt + response_token_count + thoughts.unwrap_or(0),
                    prompt_tokens_details: vec![
                        ModalityCount {
                            modality: "TEXT",
                            token_count: prompt_text,
                        },
                        ModalityCount {
                            modality: "AUDIO",
                            token_count: prompt_audio,
                        },
                    ],
                    response_tokens_details: vec![ModalityCount {
                        modality: if self.text_only { "TEXT" } else { "AUDIO" },
                        token_count: response_token_count,
                    }],
                }),
                ..Default::default()
            })
            .await?;
        self.resumption_update().await?;
        self.publish(true);
        self.last_activity = Instant::now();
        Ok(())
    }

    /// A step that maps to one message, or the step back when it is not a message.
    pub(super) fn simple_message(&mut self, step: Step) -> Result<Option<ServerMessage>, Step> {
        match step {
            Step::GoAway(t) => {
                if let Some(ms) = parse_duration_ms(&t) {
                    self.close_at = Some(Instant::now() + Duration::from_millis(ms));
                }
                Ok(Some(ServerMessage {
                    go_away: Some(GoAway { time_left: t }),
                    ..Default::default()
                }))
            }
            other => Err(other),
        }
    }

    pub(super) async fn simple_step(&mut self, step: Step) -> R {
        let step = match self.simple_message(step) {
            Ok(Some(m)) => return self.send(m).await,
            Ok(None) => return Ok(()),
            Err(step) => step,
        };
        let step = match self
            .conn
            .transport_step(&self.selected.state.refuse, step)
            .await
        {
            Ok(r) => return r,
            Err(step) => step,
        };
        match step {
            Step::SendOversized(n) => {
                let head = "{\"serverContent\":{\"outputTranscription\":{\"text\":\"";
                let pad = n.saturating_sub(head.len() + 4);
                self.conn
                    .send_text(format!("{head}{}\"}}}}", "x".repeat(pad)))
                    .await
            }
            Step::Error { message, .. } => {
                self.conn.close(1011, &message).await;
                Err(End::Closed)
            }
            other => {
                tracing::warn!("scenario: {other:?} only works inside a turn; skipped");
                Ok(())
            }
        }
    }
}
