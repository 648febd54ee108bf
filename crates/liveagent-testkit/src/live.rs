//! Helpers for a provider's own end-to-end tests against the local realtime server (the
//! wire details the provider-conformance suite does not look at): an [`EventLog`] to wait
//! on a conversation's events, [`speak`] into it as a microphone would, and the server's
//! recording of the wire ([`client_frames`], [`wait_recorded`], [`validate_client_lines`]).

use std::time::Duration;

use futures_util::StreamExt;
use liveagent_core::{AudioChunk, ConversationContext, EventStream, LiveEvent, RecordedAudio};
use serde_json::Value;

use crate::{silence_pcm, speech_pcm, validate_lines, Protocol};

/// A failsafe against hangs, never a timing assertion.
pub const FAILSAFE: Duration = Duration::from_secs(60);

/// Every event of a conversation, read in order by [`wait_for`](EventLog::wait_for).
pub struct EventLog {
    events: EventStream<LiveEvent>,
    /// The events read so far.
    pub seen: Vec<LiveEvent>,
}

impl EventLog {
    /// Subscribes to every event of `ctx` (subscribe before starting the session, so
    /// nothing is missed).
    pub fn new(ctx: &ConversationContext) -> Self {
        EventLog {
            events: ctx.stream().capacity(100_000).all(),
            seen: Vec::new(),
        }
    }

    /// Reads events until `f` returns `Some` for one; panics after [`FAILSAFE`] with a
    /// summary of what was seen.
    pub async fn wait_for<T>(
        &mut self,
        what: &str,
        mut f: impl FnMut(&LiveEvent) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + FAILSAFE;
        loop {
            match tokio::time::timeout_at(deadline, self.events.next()).await {
                Ok(Some(ev)) => {
                    let r = f(&ev);
                    self.seen.push(ev);
                    if let Some(r) = r {
                        return r;
                    }
                }
                Ok(None) => panic!("event stream ended waiting for {what}; {}", self.summary()),
                Err(_) => panic!("no {what} within the failsafe; {}", self.summary()),
            }
        }
    }

    /// [`wait_for`](EventLog::wait_for) an event that matches `f`.
    pub async fn wait(&mut self, what: &str, f: impl Fn(&LiveEvent) -> bool) {
        self.wait_for(what, |e| f(e).then_some(())).await
    }

    /// The kinds of the non-audio events seen, for failure messages.
    pub fn summary(&self) -> String {
        let kinds: Vec<String> = self
            .seen
            .iter()
            .filter(|e| !matches!(e, LiveEvent::SynthesizedAudio(_)))
            .map(|e| match e {
                LiveEvent::ErrorEvent(e) => format!("ErrorEvent({})", e.error),
                other => format!("{:?}", other.kind()),
            })
            .collect();
        format!("events so far: {kinds:?}")
    }

    /// The errors seen, as text.
    pub fn errors(&self) -> Vec<String> {
        self.seen
            .iter()
            .filter_map(|e| match e {
                LiveEvent::ErrorEvent(e) => Some(e.error.to_string()),
                _ => None,
            })
            .collect()
    }
}

/// Speaks `text` (espeak-ng, at the conversation's input rate) into `ctx` as the microphone
/// would: 200 ms of silence, the speech, 1.5 s of silence so turn detection ends the turn;
/// 100 ms chunks, faster than real time.
pub async fn speak(ctx: &ConversationContext, text: &str) {
    let rate = ctx.input_sample_rate();
    let mut pcm = silence_pcm(200, rate);
    pcm.extend(speech_pcm(text, rate));
    pcm.extend(silence_pcm(1500, rate));
    for chunk in pcm.chunks((rate / 10) as usize) {
        ctx.publish(RecordedAudio {
            audio: AudioChunk::new(chunk.to_vec(), rate),
        });
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The client frames (`> ` lines) of a server recording, parsed.
pub fn client_frames(recording: &[String]) -> Vec<Value> {
    recording
        .iter()
        .filter_map(|l| l.strip_prefix("> "))
        .map(|l| serde_json::from_str(l).expect("recorded client frame is JSON"))
        .collect()
}

/// Polls `recording` until a line satisfies `f`; panics after [`FAILSAFE`].
pub async fn wait_recorded(
    what: &str,
    recording: impl Fn() -> Vec<String>,
    f: impl Fn(&str) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + FAILSAFE;
    loop {
        if let Some(l) = recording().into_iter().find(|l| f(l)) {
            return l;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} never recorded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every client frame of a server recording passes the official validator; returns how
/// many there were (at least one).
pub fn validate_client_lines(recording: &[String], protocol: Protocol) -> usize {
    let lines: Vec<&String> = recording.iter().filter(|l| l.starts_with("> ")).collect();
    assert!(!lines.is_empty(), "no client frame recorded");
    validate_lines(&lines, protocol);
    lines.len()
}
