//! Text-to-speech of the answer: the pieces the sentence buffer completes are queued
//! (long ones split at words) and synthesized one at a time, in order, so the audio plays
//! in the order of the text; each piece's audio is measured so that an interrupted answer
//! can be cut to what was spoken. With a multi-context stage the pieces go into the
//! answer's context instead (see `context`).

use std::time::Instant;

use liveagent_core::{AudioChunk, ErrorEvent, LiveError, Outbox, SynthesizedAudio};

use super::{boxed, CascadeProtocol};
use crate::heard::Segment;
use crate::stage::TtsEvent;

impl CascadeProtocol {
    pub(super) fn enqueue_tts(&mut self, round: usize, piece: String, out: &mut Outbox) {
        if self.config.text_only {
            return;
        }
        let max = self.config.tts.capabilities().max_chars.max(16);
        let Some(r) = self.response.as_mut() else {
            return;
        };
        if r.tts_failed {
            return;
        }
        if self.config.tts.multi_context() {
            for p in split_long(&piece, max) {
                self.send_to_context(round, p, out);
            }
            return;
        }
        r.tts_queue
            .extend(split_long(&piece, max).into_iter().map(|p| (round, p)));
        self.pump_tts(out);
    }

    pub(super) fn pump_tts(&mut self, out: &mut Outbox) {
        let Some(r) = self.response.as_ref() else {
            return;
        };
        if r.tts_task.is_some() || r.tts_failed || r.tts_queue.is_empty() {
            return;
        }
        let task = self.next_id();
        let Some(r) = self.response.as_mut() else {
            return;
        };
        let Some((round, text)) = r.tts_queue.pop_front() else {
            return;
        };
        r.usage[2].requests += 1;
        r.usage[2].characters += text.chars().count() as u64;
        r.spoken.segments.push(Segment {
            round,
            text: text.clone(),
            start_ms: r.spoken.total_ms,
            ms: 0,
            complete: false,
        });
        r.tts_task = Some(task);
        out.spawn(task, boxed(self.config.tts.synthesize(text)));
    }

    pub(super) fn on_tts(&mut self, item: Result<TtsEvent, LiveError>, out: &mut Outbox) {
        let out_rate = self.out_rate;
        let Some(r) = self.response.as_mut() else {
            return;
        };
        match item {
            Ok(TtsEvent::Audio(samples)) if !samples.is_empty() => {
                let ms_before = r.spoken.total_ms;
                let chunk = AudioChunk::new(samples, out_rate).with_origin(Instant::now());
                let us = chunk.duration_us();
                r.spoken.first_audio.get_or_insert_with(Instant::now);
                // The words are already on the stream as the LLM's `ModelMessageChunk`s;
                // what was spoken is published once, as the final `OutputTranscriptChunk`
                // (the session mirrors transcript deltas into `ModelMessageChunk`, which
                // would say them twice).
                if let Some(seg) = r.spoken.segments.last_mut() {
                    seg.ms += us.div_ceil(1000);
                }
                r.spoken.total_ms = ms_before + us.div_ceil(1000);
                r.usage[2].audio_ms += us.div_ceil(1000);
                out.publish(SynthesizedAudio {
                    response_id: Some(r.id.clone()),
                    item_id: r.item.clone(),
                    audio: chunk,
                });
            }
            Ok(TtsEvent::Audio(_)) => {}
            Ok(TtsEvent::Done {
                input_tokens,
                output_tokens,
            }) => {
                r.usage[2].input_tokens += input_tokens;
                r.usage[2].output_tokens += output_tokens;
                if let Some(seg) = r.spoken.segments.last_mut() {
                    seg.complete = true;
                }
            }
            Err(e) if e.is_permanent() => self.fatal(e, out),
            Err(e) => {
                r.tts_failed = true;
                r.tts_queue.clear();
                tracing::warn!(error = %e, "text-to-speech failed mid-answer");
                out.publish(ErrorEvent::new("cascade-tts", e));
            }
        }
    }

    pub(super) fn on_tts_end(&mut self, out: &mut Outbox) {
        if let Some(r) = self.response.as_mut() {
            r.tts_task = None;
        }
        self.pump_tts(out);
        self.maybe_finish(out);
    }
}

/// Splits `text` into pieces of at most `max` characters at whitespace.
pub(super) fn split_long(text: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for word in text.split_whitespace() {
        let wlen = word.chars().count();
        if !cur.is_empty() && cur.chars().count() + 1 + wlen > max {
            out.push(std::mem::take(&mut cur));
        }
        if wlen > max {
            let chars: Vec<char> = word.chars().collect();
            for part in chars.chunks(max) {
                out.push(part.iter().collect());
            }
            continue;
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_pieces_split_at_words() {
        assert_eq!(split_long("aa bb cc", 5), vec!["aa bb", "cc"]);
        assert_eq!(split_long("abcdefgh", 3), vec!["abc", "def", "gh"]);
    }
}
