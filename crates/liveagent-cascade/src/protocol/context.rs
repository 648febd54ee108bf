//! The cascade's side of a multi-context text-to-speech stage (`Tts::connect`):
//! one connection task for the conversation, opened with the first piece to speak (and
//! again after it was lost); each response is a context of it, each piece is sent into it
//! as soon as the sentence buffer yields it, the context is ended once the LLM is done,
//! and barge-in cancels it. Audio of any context but the current response's (a cancelled
//! one's late audio) is dropped here, never published.

use futures_util::stream::StreamExt;
use liveagent_core::{LiveError, Outbox, TaskId};

use super::{boxed, CascadeProtocol, Response};
use crate::heard::Segment;
use crate::stage::{TtsContextEvent, TtsEvent, TtsInput};

/// A multi-context text-to-speech connection: its task and its input.
pub(super) struct TtsConn {
    pub(super) task: TaskId,
    pub(super) input: tokio::sync::mpsc::UnboundedSender<TtsInput>,
}

impl CascadeProtocol {
    /// The input of the conversation's multi-context TTS connection, opened now if there
    /// is none (the first answer, or the one after the connection was lost).
    pub(super) fn tts_input(
        &mut self,
        out: &mut Outbox,
    ) -> tokio::sync::mpsc::UnboundedSender<TtsInput> {
        if let Some(c) = &self.tts_conn {
            return c.input.clone();
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let input = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .boxed_local();
        let task = self.next_id();
        out.spawn(task, boxed(self.config.tts.connect(input)));
        self.tts_conn = Some(TtsConn {
            task,
            input: tx.clone(),
        });
        tx
    }

    /// Sends a piece into the response's context (opening it with its first piece): it is
    /// synthesized while the pieces before it still play. The pieces of one round make one
    /// segment of what is spoken (the provider does not say where each one's audio ends).
    pub(super) fn send_to_context(&mut self, round: usize, text: String, out: &mut Outbox) {
        let input = self.tts_input(out);
        let fresh = self.next_id();
        let Some(r) = self.response.as_mut() else {
            return;
        };
        let context = match r.context {
            Some(c) => c,
            None if r.context_ended => return,
            None => {
                r.usage[2].requests += 1;
                r.context = Some(fresh);
                fresh
            }
        };
        r.usage[2].characters += text.chars().count() as u64;
        match r.spoken.segments.last_mut() {
            Some(seg) if seg.round == round && !seg.complete => {
                seg.text.push(' ');
                seg.text.push_str(&text);
            }
            _ => r.spoken.segments.push(Segment {
                round,
                text: text.clone(),
                start_ms: r.spoken.total_ms,
                ms: 0,
                complete: false,
            }),
        }
        let _ = input.send(TtsInput::Text { context, text });
    }

    /// Tells the response's context that its text is complete once the LLM is done and
    /// no tool result is awaited (its `Done` then ends the response).
    pub(super) fn end_context_if_due(&mut self) {
        let Some(r) = self.response.as_mut() else {
            return;
        };
        let due = r.llm_task.is_none()
            && !r.context_ended
            && !(r.awaiting_tools && !r.llm_failed && !r.tts_failed);
        let Some(context) = r.context.filter(|_| due) else {
            return;
        };
        r.context_ended = true;
        if let Some(c) = &self.tts_conn {
            let _ = c.input.send(TtsInput::End { context });
        }
    }

    /// Barge-in: the response's context stops; its audio still on the way is dropped.
    pub(super) fn cancel_context(&mut self, r: &mut Response) {
        if let (Some(context), Some(c)) = (r.context.take(), &self.tts_conn) {
            let _ = c.input.send(TtsInput::Cancel { context });
        }
    }

    /// An item of the multi-context connection: audio and ends of the current response's
    /// context go on like a per-piece stage's; anything of another context (one cancelled
    /// on barge-in) is dropped, never played.
    pub(super) fn on_tts_conn(
        &mut self,
        item: Result<TtsContextEvent, LiveError>,
        out: &mut Outbox,
    ) {
        let current = self.response.as_ref().and_then(|r| r.context);
        match item {
            Ok(TtsContextEvent::Audio { context, samples }) if current == Some(context) => {
                self.on_tts(Ok(TtsEvent::Audio(samples)), out)
            }
            Ok(TtsContextEvent::Done {
                context,
                input_tokens,
                output_tokens,
            }) if current == Some(context) => {
                self.on_tts(
                    Ok(TtsEvent::Done {
                        input_tokens,
                        output_tokens,
                    }),
                    out,
                );
                if let Some(r) = self.response.as_mut() {
                    r.context = None;
                }
                self.maybe_finish(out);
            }
            Ok(_) => tracing::trace!("text-to-speech of a cancelled answer dropped"),
            Err(e) => {
                self.tts_conn = None;
                if current.is_some() {
                    if let Some(r) = self.response.as_mut() {
                        r.context = None;
                    }
                    // The answer's audio is lost: a clear error, the response fails; the
                    // next answer opens a new connection.
                    self.on_tts(Err(e), out);
                    self.maybe_finish(out);
                } else if e.is_permanent() {
                    self.fatal(e, out);
                } else {
                    tracing::info!(error = %e, "the text-to-speech connection closed between answers; the next answer opens a new one");
                }
            }
        }
    }

    /// The multi-context connection ended (it failed, or the provider closed it).
    pub(super) fn on_tts_conn_end(&mut self, out: &mut Outbox) {
        self.tts_conn = None;
        if self.response.as_ref().is_some_and(|r| r.context.is_some()) {
            if let Some(r) = self.response.as_mut() {
                r.context = None;
            }
            let e = LiveError::new(
                liveagent_core::ErrorKind::Connection,
                "the text-to-speech connection ended before the answer was spoken",
            );
            self.on_tts(Err(e), out);
            self.maybe_finish(out);
        }
    }
}
