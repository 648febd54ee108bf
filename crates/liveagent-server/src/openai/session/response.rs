//! Responses: choosing the plan, `response.created`, stepping through a scripted turn,
//! `response.done`, cancellation, the idle timeout and scenario steps.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;

use serde_json::{json, Value};
use tokio::time::Instant;

use super::super::wire::*;
use super::*;
use crate::audio::{self, INTERNAL_RATE};
use crate::brain::{substitute, Plan, Step, TurnInput};
use crate::conn::End;
use crate::items::{Item, ItemKind, Role};
use crate::Pacing;

impl OaSession {
    pub(super) fn turn_input(&mut self, item_id: &str) -> TurnInput {
        // Each user turn is answered once, so its echo copy can go.
        if let Some((audio, label)) = self.echo_audio.remove(item_id) {
            return TurnInput {
                text: label,
                audio: (!audio.is_empty()).then_some(audio),
            };
        }
        let text = self
            .items
            .iter()
            .find(|i| i.id == item_id)
            .map(Item::text)
            .unwrap_or_default();
        TurnInput { text, audio: None }
    }

    pub(super) fn next_plan(&mut self) -> Plan {
        if let Some(p) = self.pending.take() {
            if !p.outputs.is_empty() && self.unanswered.is_none() {
                let output = p
                    .call_ids
                    .iter()
                    .filter_map(|c| p.outputs.get(c).cloned())
                    .collect::<Vec<_>>()
                    .join("\n");
                let mut steps = p.steps;
                substitute(&mut steps, "{output}", &output);
                return Plan {
                    steps,
                    drop_after_events: None,
                    delay: None,
                    turn: p.turn,
                };
            }
            if p.outputs.is_empty() && self.unanswered.is_none() {
                // response.create with no tool output yet: keep waiting for it.
                self.pending = Some(p);
                return Plan::default();
            }
        }
        let input = match self.unanswered.take() {
            Some(id) => self.turn_input(&id),
            None => TurnInput::default(),
        };
        self.selected.brain.plan(&self.selected.state, &input)
    }

    pub(super) async fn start_response(&mut self, params: ResponseParams) -> R {
        let text_only = match params.output_modalities.as_deref() {
            Some([Modality::Text]) => true,
            Some([Modality::Audio]) => false,
            _ => self.settings.text_only,
        };
        let in_conversation = params.conversation.as_deref() != Some("none");
        let plan = self.next_plan();
        self.idle_at = None;
        self.responses += 1;
        self.shared.stats.responses.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let run = Run {
            id: self.shared.new_id("resp"),
            steps: plan.steps,
            cur: None,
            next_at: now + plan.delay.unwrap_or_default(),
            paced: self.shared.cfg.pacing == Pacing::RealTime,
            next_index: 0,
            output: Vec::new(),
            text_only,
            in_conversation,
            slow: 1.0,
            sent_at_start: self.conn.sent,
            drop_after_events: plan.drop_after_events,
            turn: plan.turn,
            calls: Vec::new(),
            out_audio_samples: 0,
            out_text_chars: 0,
            metadata: params.metadata.map(Value::Object),
        };
        let response = self.wire_response(&run, "in_progress", None, false);
        self.run = Some(run);
        self.emit(ServerEvent::ResponseCreated { response }).await?;
        self.emit(ServerEvent::RateLimits {
            rate_limits: vec![
                RateLimit {
                    name: "requests",
                    limit: 1000,
                    remaining: 999,
                    reset_seconds: 60.0,
                },
                RateLimit {
                    name: "tokens",
                    limit: 50000,
                    remaining: 49000,
                    reset_seconds: 1.2,
                },
            ],
        })
        .await
    }

    pub(super) fn wire_response(
        &self,
        run: &Run,
        status: &'static str,
        details: Option<StatusDetails>,
        with_usage: bool,
    ) -> WireResponse {
        WireResponse {
            object: "realtime.response",
            id: run.id.clone(),
            status,
            status_details: details,
            output: run.output.clone(),
            conversation_id: run.in_conversation.then(|| self.conv_id.clone()),
            output_modalities: vec![if run.text_only { "text" } else { "audio" }],
            max_output_tokens: json!("inf"),
            usage: with_usage.then(|| self.usage(run)),
            metadata: run.metadata.clone(),
        }
    }

    /// Token-like counts: text 1 token per 4 characters, input audio 10 tokens/s, output
    /// audio 20 tokens/s (documented in docs/local-server.md).
    pub(super) fn usage(&self, run: &Run) -> Usage {
        let mut in_text = 0u64;
        let mut in_audio_ms = 0u64;
        for item in &self.items {
            in_text += (item.text().chars().count() as u64).div_ceil(4);
            if item.role() == Some(Role::User) {
                in_audio_ms += item.audio_ms();
            }
        }
        let in_audio = in_audio_ms / 100;
        let out_text = (run.out_text_chars as u64).div_ceil(4);
        let out_audio = audio::samples_to_ms(run.out_audio_samples, INTERNAL_RATE) / 50;
        Usage {
            total_tokens: in_text + in_audio + out_text + out_audio,
            input_tokens: in_text + in_audio,
            output_tokens: out_text + out_audio,
            input_token_details: InputTokenDetails {
                text_tokens: in_text,
                audio_tokens: in_audio,
                image_tokens: 0,
                cached_tokens: 0,
            },
            output_token_details: OutputTokenDetails {
                text_tokens: out_text,
                audio_tokens: out_audio,
            },
        }
    }

    pub(super) async fn advance(&mut self) -> R {
        let Some(mut run) = self.run.take() else {
            return Ok(());
        };
        // Put the run back at once so that emit() sees its drop settings.
        let id = run.id.clone();
        let keep = {
            let r = self.step_run(&mut run).await;
            match r {
                Ok(k) => k,
                Err(e) => {
                    return Err(e);
                }
            }
        };
        if keep && self.run.is_none() {
            self.run = Some(run);
        } else if keep {
            tracing::warn!("response {id} replaced while running");
        } else if self.deferred_response && self.run.is_none() {
            self.deferred_response = false;
            self.start_response(ResponseParams::default()).await?;
        }
        Ok(())
    }

    /// Does the run's next piece of work. Ok(false) when the response finished.
    pub(super) async fn step_run(&mut self, run: &mut Run) -> Result<bool, End> {
        let now = Instant::now();
        loop {
            if run.cur.is_none() {
                let Some(step) = run.steps.pop_front() else {
                    self.finish_run(run, "completed", None).await?;
                    return Ok(false);
                };
                match step {
                    Step::Say {
                        text,
                        audio,
                        drop_after_ms,
                    } => self.start_say(run, text, audio, drop_after_ms).await?,
                    Step::Call {
                        name,
                        args,
                        drop_mid_arguments,
                    } => self.start_call(run, name, args, drop_mid_arguments).await?,
                    Step::Wait(d) => {
                        run.next_at = now + d;
                        return Ok(true);
                    }
                    Step::Slow(f) => run.slow = f,
                    other => self.simple_step_in_run(run, other).await?,
                }
                continue;
            }
            let finished = self.tick(run, now).await?;
            let pace = self.chunk.mul_f32(run.slow);
            if run.paced {
                run.next_at = (run.next_at + pace).max(now - CATCH_UP);
            } else {
                run.next_at = now;
            }
            if finished {
                run.cur = None;
                if let Some(Step::Call { .. }) = run.steps.front() {
                    return Ok(true);
                }
                if !run.calls.is_empty() {
                    // The rest of the turn waits for the tool outputs.
                    self.finish_run(run, "completed", None).await?;
                    return Ok(false);
                }
            }
            return Ok(true);
        }
    }

    pub(super) async fn simple_step_in_run(&mut self, run: &mut Run, step: Step) -> R {
        // emit() checks self.run for drop_after_events; lend it the settings.
        self.run = Some(Run {
            id: run.id.clone(),
            steps: VecDeque::new(),
            cur: None,
            next_at: run.next_at,
            paced: run.paced,
            next_index: 0,
            output: Vec::new(),
            text_only: run.text_only,
            in_conversation: run.in_conversation,
            slow: run.slow,
            sent_at_start: run.sent_at_start,
            drop_after_events: run.drop_after_events,
            turn: run.turn,
            calls: Vec::new(),
            out_audio_samples: 0,
            out_text_chars: 0,
            metadata: None,
        });
        let r = self.simple_step(step).await;
        self.run = None;
        r
    }

    pub(super) async fn start_say(
        &mut self,
        run: &mut Run,
        text: String,
        audio: Option<Pcm>,
        drop_after_ms: Option<u64>,
    ) -> R {
        let audio = if run.text_only {
            Pcm::default()
        } else {
            audio.unwrap_or_else(|| Pcm::from(audio::synth_text(&text)))
        };
        self.conn.answer_end();
        let item_id = self.shared.new_id("item");
        let idx = run.next_index;
        run.next_index += 1;
        let item = Item {
            id: item_id.clone(),
            kind: ItemKind::Message {
                role: Role::Assistant,
                content: Vec::new(),
            },
            status: "in_progress",
        };
        self.add_output_item(run, idx, item).await?;
        let part = if run.text_only {
            Part {
                kind: "text",
                transcript: None,
                text: Some(String::new()),
            }
        } else {
            Part {
                kind: "audio",
                transcript: Some(String::new()),
                text: None,
            }
        };
        self.with_run(
            run,
            ServerEvent::ContentPartAdded {
                response_id: run.id.clone(),
                item_id: item_id.clone(),
                output_index: idx,
                content_index: 0,
                part,
            },
        )
        .await?;
        let words = if run.text_only {
            split_words(&text)
        } else {
            VecDeque::new()
        };
        run.cur = Some(Cur::Say {
            item_id,
            idx,
            drop_at: drop_after_ms.map(|ms| audio::ms_to_samples(ms, INTERNAL_RATE)),
            audio,
            pos: 0,
            text: text.chars().collect(),
            text_sent: 0,
            words,
        });
        Ok(())
    }

    pub(super) async fn start_call(
        &mut self,
        run: &mut Run,
        name: String,
        args: Value,
        drop_mid: bool,
    ) -> R {
        let item_id = self.shared.new_id("item");
        let call_id = self.shared.new_id("call");
        let idx = run.next_index;
        run.next_index += 1;
        let args = serde_json::to_string(&args).unwrap_or_else(|_| "{}".into());
        let item = Item {
            id: item_id.clone(),
            kind: ItemKind::FunctionCall {
                call_id: call_id.clone(),
                name: name.clone(),
                arguments: String::new(),
            },
            status: "in_progress",
        };
        self.add_output_item(run, idx, item).await?;
        let chars: Vec<char> = args.chars().collect();
        let piece = chars.len().div_ceil(3).max(1);
        let pieces = chars.chunks(piece).map(|c| c.iter().collect()).collect();
        run.cur = Some(Cur::Call {
            item_id,
            idx,
            call_id,
            name,
            args,
            pieces,
            drop_mid,
        });
        Ok(())
    }

    /// Emits with `run` lent to `self.run` so drop_after_events applies.
    /// Announces a new output item of the response (`response.output_item.added`) and, for
    /// in-conversation responses, adds it to the conversation (`conversation.item.added`).
    pub(super) async fn add_output_item(&mut self, run: &Run, idx: u32, item: Item) -> R {
        let wi = wire_item(&item, false, self.settings.output_fmt);
        self.with_run(
            run,
            ServerEvent::OutputItemAdded {
                response_id: run.id.clone(),
                output_index: idx,
                item: wi.clone(),
            },
        )
        .await?;
        if run.in_conversation {
            let prev = self.items.last().map(|i| i.id.clone());
            self.items.push(item);
            self.with_run(
                run,
                ServerEvent::ItemAdded {
                    previous_item_id: prev,
                    item: wi,
                },
            )
            .await?;
        }
        Ok(())
    }

    pub(super) async fn with_run(&mut self, run: &Run, event: ServerEvent) -> R {
        if let Some(k) = run.drop_after_events {
            let r = self.emit(event).await;
            if r.is_ok() && self.conn.sent - run.sent_at_start >= k as u64 {
                tracing::info!("scenario: dropping the connection after {k} response events");
                self.conn.drop_now();
                return Err(End::Closed);
            }
            return r;
        }
        self.emit(event).await
    }

    pub(super) async fn finish_run(
        &mut self,
        run: &mut Run,
        status: &'static str,
        reason: Option<&'static str>,
    ) -> R {
        let details = reason.map(|r| StatusDetails {
            kind: status,
            reason: Some(r),
        });
        let response = self.wire_response(run, status, details, true);
        if status == "completed" && !run.calls.is_empty() {
            self.pending = Some(Pending {
                steps: std::mem::take(&mut run.steps),
                call_ids: run.calls.clone(),
                outputs: HashMap::new(),
                turn: run.turn,
            });
        }
        let r = self
            .with_run(run, ServerEvent::ResponseDone { response })
            .await;
        self.publish(true);
        self.last_activity = Instant::now();
        // The idle timeout counts from the end of the response's audio (sent in real time).
        self.idle_at = self
            .settings
            .turn
            .as_ref()
            .and_then(|t| t.idle_timeout)
            .map(|d| Instant::now() + d);
        r
    }

    /// server_vad `idle_timeout_ms` ran out: report it, commit what was heard, answer.
    pub(super) async fn idle_timeout(&mut self) -> R {
        self.idle_at = None;
        if self.speech.is_some() {
            return Ok(());
        }
        let item_id = self.shared.new_id("item");
        let start_ms = self.input.start() / SPS_MS;
        let end_ms = self.input.total() / SPS_MS;
        self.emit(ServerEvent::TimeoutTriggered {
            audio_start_ms: start_ms,
            audio_end_ms: end_ms,
            item_id: item_id.clone(),
        })
        .await?;
        let all = self.input.take_all();
        let idle = self
            .settings
            .turn
            .as_ref()
            .and_then(|t| t.idle_timeout)
            .unwrap_or_default();
        let label = format!("[no speech for {:.1} s]", idle.as_secs_f64());
        self.commit_audio(item_id.clone(), all, 0, label.clone())
            .await?;
        // Answer with words, not with the recorded silence.
        self.echo_audio.insert(item_id, (Pcm::default(), label));
        self.start_response(ResponseParams::default()).await
    }

    pub(super) async fn cancel_run(&mut self, reason: &'static str) -> R {
        let Some(mut run) = self.run.take() else {
            return Ok(());
        };
        match run.cur {
            Some(Cur::Say { .. }) => self.finish_say(&mut run, true).await?,
            Some(Cur::Call { .. }) => self.finish_call(&mut run, true).await?,
            None => {}
        }
        run.steps.clear();
        run.calls.clear();
        self.pending = None;
        self.finish_run(&mut run, "cancelled", Some(reason)).await
    }

    /// Steps that only send or change connection state.
    pub(super) async fn simple_step(&mut self, step: Step) -> R {
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
                let event_id = format!("event_{}", self.next_event);
                self.next_event += 1;
                let head = format!(
                    "{{\"type\":\"rate_limits.updated\",\"event_id\":\"{event_id}\",\"rate_limits\":[],\"padding\":\""
                );
                let pad = n.saturating_sub(head.len() + 2);
                let text = format!("{head}{}\"}}", "x".repeat(pad));
                self.conn.send_text(text).await
            }
            Step::Error { message, code } => {
                self.error_event(
                    None,
                    "server_error",
                    code.as_deref().unwrap_or("server_error"),
                    &message,
                    None,
                )
                .await
            }
            Step::GoAway(_) => {
                tracing::debug!("scenario: go_away is a Gemini message; skipped on OpenAI");
                Ok(())
            }
            other => {
                tracing::warn!("scenario: {other:?} only works inside a turn; skipped");
                Ok(())
            }
        }
    }
}
