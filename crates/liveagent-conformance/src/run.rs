//! [`Run`]: one conversation of a real [`LiveAgent`] against the local server, with every
//! event it published recorded; and [`milestones`], the normalized event sequence the cases
//! compare across providers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use liveagent::{Conversation, LiveAgent, LiveAgentBuilder, LiveEvent};
use liveagent_server::LocalServer;

use crate::Capabilities;

pub use liveagent_testkit::live::FAILSAFE;

/// A running conversation with every event it published recorded, and a cursor: each
/// [`wait_for`](Run::wait_for) looks at the events after the one the previous wait matched.
pub struct Run {
    /// The conversation.
    pub conversation: Conversation,
    events: Arc<Mutex<Vec<LiveEvent>>>,
    cursor: usize,
}

impl Run {
    /// Builds the agent from `builder` and runs it, recording every event.
    pub fn start(builder: LiveAgentBuilder) -> Run {
        let agent: LiveAgent = builder.build().expect("agent");
        let conversation = agent.run().expect("run");
        let events = Arc::new(Mutex::new(Vec::new()));
        let mut stream = conversation.stream().capacity(100_000).all();
        let sink = events.clone();
        actix::spawn(async move {
            while let Some(event) = stream.next().await {
                sink.lock().unwrap().push(event);
            }
        });
        Run {
            conversation,
            events,
            cursor: 0,
        }
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<LiveEvent> {
        self.events.lock().unwrap().clone()
    }

    /// Waits for the first event after the cursor for which `f` returns `Some`, moves the
    /// cursor past it and returns its index and `f`'s value. Panics after [`FAILSAFE`]
    /// with the events seen.
    pub async fn wait_for<T>(
        &mut self,
        what: &str,
        mut f: impl FnMut(&LiveEvent) -> Option<T>,
    ) -> (usize, T) {
        let deadline = std::time::Instant::now() + FAILSAFE;
        loop {
            {
                let events = self.events.lock().unwrap();
                while self.cursor < events.len() {
                    let i = self.cursor;
                    self.cursor += 1;
                    if let Some(v) = f(&events[i]) {
                        return (i, v);
                    }
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {what} within the failsafe; {}",
                self.summary()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// [`wait_for`](Run::wait_for) an event that matches `f`; returns its index.
    pub async fn wait(&mut self, what: &str, f: impl Fn(&LiveEvent) -> bool) -> usize {
        self.wait_for(what, |e| f(e).then_some(())).await.0
    }

    /// The kinds of the non-audio events so far, for failure messages.
    pub fn summary(&self) -> String {
        let kinds: Vec<String> = self
            .events()
            .iter()
            .filter(|e| {
                !matches!(
                    e,
                    LiveEvent::SynthesizedAudio(_) | LiveEvent::RecordedAudio(_)
                )
            })
            .map(|e| match e {
                LiveEvent::ErrorEvent(e) => format!("Error({})", e.error),
                LiveEvent::SessionReconnecting(r) => format!("Reconnecting({})", r.reason),
                other => format!("{:?}", other.kind()),
            })
            .collect();
        format!("events: {kinds:?}")
    }

    /// Speaks `text` into the conversation as the microphone would (see
    /// [`liveagent_testkit::live::speak`]).
    pub async fn speak(&self, text: &str) {
        liveagent_testkit::live::speak(&self.conversation, text).await;
    }

    /// The normalized sequence of the events up to and including index `upto`.
    pub fn milestones(&self, upto: usize, caps: &Capabilities) -> Vec<String> {
        let events = self.events.lock().unwrap();
        milestones(&events[..=upto.min(events.len().saturating_sub(1))], caps)
    }

    /// Stops the conversation and the server.
    pub async fn finish(self, server: LocalServer) {
        self.conversation.stop().await;
        server.stop().await;
    }
}

/// The events the suite compares across providers, in order, as short names: session
/// lifecycle, turn boundaries, tool calls and results, interruptions and errors.
///
/// Left out: streaming content (audio, transcript and text chunks: how a provider splits a
/// sentence is its own business; the cases check the content separately), `SessionUpdated`
/// (configuration acknowledgements differ by provider), events the application itself
/// publishes (`RecordedAudio`, `UserText`, `SessionControl`, `PlaybackStopped`, a repeated
/// `ToolResult` for a call that already has one: the provider must drop it), and
/// `SpeechStarted` / `SpeechStopped` when the provider does not report voice activity
/// ([`Capabilities::speech_events`]).
pub fn milestones(events: &[LiveEvent], caps: &Capabilities) -> Vec<String> {
    let mut results = std::collections::HashSet::new();
    events
        .iter()
        .filter_map(|e| match e {
            LiveEvent::SessionOpened(_) => Some("SessionOpened".to_owned()),
            LiveEvent::SpeechStarted(_) if caps.speech_events => Some("SpeechStarted".to_owned()),
            LiveEvent::SpeechStopped(_) if caps.speech_events => Some("SpeechStopped".to_owned()),
            LiveEvent::ResponseStarted(_) => Some("ResponseStarted".to_owned()),
            LiveEvent::ResponseDone(d) => Some(format!("ResponseDone({:?})", d.status)),
            LiveEvent::Interrupted(_) => Some("Interrupted".to_owned()),
            LiveEvent::ToolCallRequested(r) => {
                Some(format!("ToolCallRequested({})", r.calls.len()))
            }
            LiveEvent::ToolCallCancelled(_) => Some("ToolCallCancelled".to_owned()),
            LiveEvent::ToolResult(r) if results.insert(r.call_id.clone()) => {
                Some("ToolResult".to_owned())
            }
            LiveEvent::SessionReconnecting(_) => Some("SessionReconnecting".to_owned()),
            LiveEvent::SessionReconnected(_) => Some("SessionReconnected".to_owned()),
            LiveEvent::SessionClosed(_) => Some("SessionClosed".to_owned()),
            LiveEvent::ErrorEvent(e) => Some(format!(
                "ErrorEvent({:?}{})",
                e.error.kind,
                if e.fatal { ", fatal" } else { "" }
            )),
            _ => None,
        })
        .collect()
}
