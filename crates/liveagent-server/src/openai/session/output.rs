//! Streaming one output item of a response: audio, transcript and text deltas, function-call
//! argument deltas, and the `*.done` events that finish the item.

use std::collections::VecDeque;

use tokio::time::Instant;

use super::super::wire::*;
use super::*;
use crate::audio::{self, INTERNAL_RATE};
use crate::conn::End;
use crate::items::{Content, Item, ItemKind, Role};

impl OaSession {
    /// Sends one chunk of the current item. Ok(true) when the item is finished.
    pub(super) async fn tick(&mut self, run: &mut Run, now: Instant) -> Result<bool, End> {
        let fmt = self.settings.output_fmt;
        let chunk_samples = audio::ms_to_samples(self.chunk.as_millis() as u64, INTERNAL_RATE);
        let rid = run.id.clone();
        let Some(cur) = run.cur.as_mut() else {
            return Ok(true);
        };
        match cur {
            Cur::Say {
                item_id,
                idx,
                audio: samples,
                pos,
                text,
                text_sent,
                words,
                drop_at,
            } => {
                let (item_id, idx) = (item_id.clone(), *idx);
                if run.text_only {
                    if let Some(w) = words.pop_front() {
                        run.out_text_chars += w.chars().count();
                        let ev = ServerEvent::TextDelta {
                            response_id: rid.clone(),
                            item_id: item_id.clone(),
                            output_index: idx,
                            content_index: 0,
                            delta: w,
                        };
                        let late = now.saturating_duration_since(run.next_at);
                        self.shared.stats.chunk_sent(late.as_micros() as u64);
                        self.with_run(run, ev).await?;
                        let Some(Cur::Say { words, .. }) = run.cur.as_ref() else {
                            return Ok(true);
                        };
                        if !words.is_empty() {
                            return Ok(false);
                        }
                    }
                    self.finish_say(run, false).await?;
                    return Ok(true);
                }
                let len = samples.len();
                let end = (*pos + chunk_samples).min(len);
                let drop_now = drop_at.is_some_and(|d| end >= d);
                let from = *pos;
                *pos = end;
                let target = if end >= len {
                    text.len()
                } else {
                    text.len() * end / len.max(1)
                };
                let tdelta: String = if target > *text_sent {
                    let d = text[*text_sent..target].iter().collect();
                    *text_sent = target;
                    d
                } else {
                    String::new()
                };
                let samples = samples.clone();
                if end > from {
                    run.out_audio_samples += end - from;
                    let late = now.saturating_duration_since(run.next_at);
                    self.shared.stats.chunk_sent(late.as_micros() as u64);
                    self.conn.mark_audio(end - from, INTERNAL_RATE);
                    self.with_run(
                        run,
                        ServerEvent::AudioDelta {
                            response_id: rid.clone(),
                            item_id: item_id.clone(),
                            output_index: idx,
                            content_index: 0,
                            delta: audio::b64_delta(&samples, from, end, fmt),
                        },
                    )
                    .await?;
                }
                if drop_now {
                    tracing::info!("scenario: dropping the connection mid-audio");
                    self.conn.drop_now();
                    return Err(End::Closed);
                }
                if !tdelta.is_empty() {
                    run.out_text_chars += tdelta.chars().count();
                    self.with_run(
                        run,
                        ServerEvent::TranscriptDelta {
                            response_id: rid,
                            item_id,
                            output_index: idx,
                            content_index: 0,
                            delta: tdelta,
                        },
                    )
                    .await?;
                }
                if end >= len {
                    self.finish_say(run, false).await?;
                    return Ok(true);
                }
                Ok(false)
            }
            Cur::Call {
                item_id,
                idx,
                call_id,
                pieces,
                drop_mid,
                ..
            } => {
                let (item_id, idx, call_id, drop_mid) =
                    (item_id.clone(), *idx, call_id.clone(), *drop_mid);
                if let Some(p) = pieces.pop_front() {
                    self.with_run(
                        run,
                        ServerEvent::ArgsDelta {
                            response_id: rid,
                            item_id,
                            output_index: idx,
                            call_id,
                            delta: p,
                        },
                    )
                    .await?;
                    if drop_mid {
                        tracing::info!(
                            "scenario: dropping the connection mid function-call arguments"
                        );
                        self.conn.drop_now();
                        return Err(End::Closed);
                    }
                    let Some(Cur::Call { pieces, .. }) = run.cur.as_ref() else {
                        return Ok(true);
                    };
                    if !pieces.is_empty() {
                        return Ok(false);
                    }
                }
                self.finish_call(run, false).await?;
                Ok(true)
            }
        }
    }

    /// Completes (or, when `cancelled`, cuts short) the current message item.
    pub(super) async fn finish_say(&mut self, run: &mut Run, cancelled: bool) -> R {
        let Some(Cur::Say {
            item_id,
            idx,
            audio: samples,
            pos,
            text,
            text_sent,
            ..
        }) = run.cur.take()
        else {
            return Ok(());
        };
        self.conn.answer_end();
        let rid = run.id.clone();
        let status = if cancelled { "incomplete" } else { "completed" };
        let full: String = text.iter().collect();
        let said: String = if cancelled {
            text[..text_sent].iter().collect()
        } else {
            full.clone()
        };
        let content = if run.text_only {
            Content::OutputText(said.clone())
        } else {
            Content::OutputAudio {
                // What was played: a view of the response's audio when it is kept packed
                // already (the echo of a user turn), else a packed copy of it.
                audio: samples.slice(0, pos).to_packed(),
                transcript: said.clone(),
            }
        };
        let item = Item {
            id: item_id.clone(),
            kind: ItemKind::Message {
                role: Role::Assistant,
                content: vec![content],
            },
            status,
        };
        if !cancelled {
            if run.text_only {
                self.with_run(
                    run,
                    ServerEvent::TextDone {
                        response_id: rid.clone(),
                        item_id: item_id.clone(),
                        output_index: idx,
                        content_index: 0,
                        text: said.clone(),
                    },
                )
                .await?;
            } else {
                self.with_run(
                    run,
                    ServerEvent::AudioDone {
                        response_id: rid.clone(),
                        item_id: item_id.clone(),
                        output_index: idx,
                        content_index: 0,
                    },
                )
                .await?;
                self.with_run(
                    run,
                    ServerEvent::TranscriptDone {
                        response_id: rid.clone(),
                        item_id: item_id.clone(),
                        output_index: idx,
                        content_index: 0,
                        transcript: said.clone(),
                    },
                )
                .await?;
            }
        }
        let part = if run.text_only {
            Part {
                kind: "text",
                transcript: None,
                text: Some(said),
            }
        } else {
            Part {
                kind: "audio",
                transcript: Some(said),
                text: None,
            }
        };
        self.with_run(
            run,
            ServerEvent::ContentPartDone {
                response_id: rid.clone(),
                item_id: item_id.clone(),
                output_index: idx,
                content_index: 0,
                part,
            },
        )
        .await?;
        self.finish_item(run, item, idx).await
    }

    pub(super) async fn finish_call(&mut self, run: &mut Run, cancelled: bool) -> R {
        let Some(Cur::Call {
            item_id,
            idx,
            call_id,
            name,
            args,
            ..
        }) = run.cur.take()
        else {
            return Ok(());
        };
        if !cancelled {
            self.with_run(
                run,
                ServerEvent::ArgsDone {
                    response_id: run.id.clone(),
                    item_id: item_id.clone(),
                    output_index: idx,
                    call_id: call_id.clone(),
                    name: name.clone(),
                    arguments: args.clone(),
                },
            )
            .await?;
            run.calls.push(call_id.clone());
        }
        let item = Item {
            id: item_id,
            kind: ItemKind::FunctionCall {
                call_id,
                name,
                arguments: args,
            },
            status: if cancelled { "incomplete" } else { "completed" },
        };
        self.finish_item(run, item, idx).await
    }

    pub(super) async fn finish_item(&mut self, run: &mut Run, item: Item, idx: u32) -> R {
        let wi = wire_item(&item, false, self.settings.output_fmt);
        run.output.push(wi.clone());
        self.with_run(
            run,
            ServerEvent::OutputItemDone {
                response_id: run.id.clone(),
                output_index: idx,
                item: wi.clone(),
            },
        )
        .await?;
        if run.in_conversation {
            let pos = self.items.iter().position(|i| i.id == item.id);
            let prev = pos
                .and_then(|p| p.checked_sub(1))
                .map(|p| self.items[p].id.clone());
            match pos {
                Some(p) => self.items[p] = item,
                None => self.items.push(item),
            }
            self.with_run(
                run,
                ServerEvent::ItemDone {
                    previous_item_id: prev,
                    item: wi,
                },
            )
            .await?;
        }
        Ok(())
    }
}

/// Splits text into words keeping their leading spaces, for word-by-word text deltas.
pub(super) fn split_words(text: &str) -> VecDeque<String> {
    let mut out = VecDeque::new();
    let mut cur = String::new();
    for ch in text.chars() {
        if ch == ' ' && !cur.trim().is_empty() {
            out.push_back(std::mem::take(&mut cur));
        }
        cur.push(ch);
    }
    if !cur.is_empty() {
        out.push_back(cur);
    }
    out
}
