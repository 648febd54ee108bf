//! What the server says: the [`Brain`] turns a user turn into a [`Plan`] of [`Step`]s that
//! the protocol sessions render as wire events.
//!
//! - [`Brain::Echo`]: replies with the user's own audio (and "You said: …" as text).
//! - [`Brain::Script`]: follows a [`Scenario`] (see [`script`]).

pub mod script;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::Value;

pub use script::{AfterLast, Scenario, ScenarioError, StepSpec, TurnSpec};

/// Which brain answers a session.
#[derive(Clone, Debug, Default)]
pub enum Brain {
    /// Echo the user's audio back, with an honest transcript ("You said: [speech 1.4 s]").
    #[default]
    Echo,
    /// Follow a scripted scenario.
    Script(Scenario),
}

/// One thing a response does, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Speak `text`. `audio` is what to play (24 kHz PCM16); `None` synthesizes a tone
    /// sequence whose length follows the text. `drop_after_ms` drops the connection after
    /// that much audio was sent.
    Say {
        /// Transcript / text output. `{output}` and `{input}` are substituted.
        text: String,
        /// Audio to play instead of synthesized tones.
        audio: Option<crate::audio::Pcm>,
        /// Drop the connection mid-audio.
        drop_after_ms: Option<u64>,
    },
    /// Call a tool; the rest of the turn waits for its output.
    Call {
        /// Tool name.
        name: String,
        /// Arguments (a JSON object).
        args: Value,
        /// Drop the connection after the first arguments delta.
        drop_mid_arguments: bool,
    },
    /// Pause.
    Wait(Duration),
    /// Send this JSON frame as is (e.g. an unknown event type).
    Send(Value),
    /// Send this text frame as is (e.g. malformed JSON).
    SendText(String),
    /// Send a text frame of this many bytes.
    SendOversized(usize),
    /// Send the provider's error: an OpenAI `error` event; Gemini closes with code 1011.
    Error {
        /// Error message.
        message: String,
        /// Error code (OpenAI `error.code`).
        code: Option<String>,
    },
    /// Gemini `goAway` with this `timeLeft` (e.g. "5s"); OpenAI has no such message and skips it.
    GoAway(String),
    /// Drop the TCP connection without a close frame.
    Drop,
    /// Go silent for this long: read nothing, send nothing, answer no ping (a wedged proxy
    /// or a dead NAT entry: the connection is half-open), then drop the TCP connection
    /// without a close frame.
    Stall(Duration),
    /// Close the WebSocket with this code and reason.
    Close {
        /// Close code.
        code: u16,
        /// Close reason.
        reason: String,
    },
    /// Refuse the next N connection attempts (HTTP 503) to this scenario.
    RefuseNext(u32),
    /// Pace the rest of the turn `factor` times slower (2.0 = half speed).
    Slow(f32),
}

/// A response to run: steps plus turn-wide fault settings.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// The steps, in order.
    pub steps: VecDeque<Step>,
    /// Drop the connection after this many server frames of the response.
    pub drop_after_events: Option<u32>,
    /// Wait this long before the first event of the response.
    pub delay: Option<Duration>,
    /// 1-based turn number (scenario-wide for scripts, per session for echo).
    pub turn: u32,
}

/// What the user said in a turn.
#[derive(Clone, Debug, Default)]
pub struct TurnInput {
    /// The user's text, or `[speech 1.4 s]` for audio (there is no ASR).
    pub text: String,
    /// The user's audio (24 kHz), when the turn was spoken.
    pub audio: Option<crate::audio::Pcm>,
}

impl TurnInput {
    /// The honest transcript of `ms` of speech.
    pub fn speech_label(ms: u64) -> String {
        format!("[speech {:.1} s]", ms as f64 / 1000.0)
    }
}

/// State shared by every session of one scenario on one server, so that it survives a
/// client's reconnects: the turn counter and the connection-refusal counter.
#[derive(Debug, Default)]
pub struct ScenarioState {
    /// User turns answered so far.
    pub turns: AtomicU32,
    /// Connections still to refuse.
    pub refuse: AtomicU32,
    /// Connections accepted so far.
    pub connections: AtomicU32,
}

impl ScenarioState {
    /// A fresh state for `scenario`.
    pub fn new(scenario: Option<&Scenario>) -> Self {
        ScenarioState {
            refuse: AtomicU32::new(scenario.map(|s| s.refuse_connections).unwrap_or(0)),
            ..Default::default()
        }
    }

    /// Consumes one refusal if any is left.
    pub fn take_refusal(&self) -> bool {
        self.refuse
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

impl Brain {
    /// The plan for the next user turn.
    pub fn plan(&self, state: &ScenarioState, input: &TurnInput) -> Plan {
        let turn = state.turns.fetch_add(1, Ordering::SeqCst) + 1;
        match self {
            Brain::Echo => echo_plan(turn, input),
            Brain::Script(scenario) => match scenario.turn(turn) {
                Some(spec) => {
                    let mut plan = spec.to_plan(turn);
                    substitute(&mut plan.steps, "{input}", &input.text);
                    plan
                }
                None => match scenario.after_last {
                    // Cycle gets here only with no turns at all.
                    AfterLast::Echo | AfterLast::Cycle => echo_plan(turn, input),
                    AfterLast::Silent => Plan {
                        turn,
                        ..Plan::default()
                    },
                },
            },
        }
    }

    /// The scenario, when scripted.
    pub fn scenario(&self) -> Option<&Scenario> {
        match self {
            Brain::Echo => None,
            Brain::Script(s) => Some(s),
        }
    }
}

fn echo_plan(turn: u32, input: &TurnInput) -> Plan {
    let text = if input.text.is_empty() {
        "You said nothing.".to_owned()
    } else {
        format!("You said: {}", input.text)
    };
    Plan {
        steps: VecDeque::from([Step::Say {
            text,
            audio: input.audio.clone(),
            drop_after_ms: None,
        }]),
        turn,
        ..Plan::default()
    }
}

/// Replaces `pattern` in every `Say` text and string argument of the steps.
pub fn substitute(steps: &mut VecDeque<Step>, pattern: &str, value: &str) {
    for step in steps.iter_mut() {
        match step {
            Step::Say { text, .. } if text.contains(pattern) => {
                *text = text.replace(pattern, value);
            }
            Step::Call { args, .. } => substitute_value(args, pattern, value),
            _ => {}
        }
    }
}

fn substitute_value(v: &mut Value, pattern: &str, value: &str) {
    match v {
        Value::String(s) if s.contains(pattern) => *s = s.replace(pattern, value),
        Value::Array(a) => a
            .iter_mut()
            .for_each(|x| substitute_value(x, pattern, value)),
        Value::Object(o) => o
            .values_mut()
            .for_each(|x| substitute_value(x, pattern, value)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_repeats_text_and_audio() {
        let state = ScenarioState::default();
        let audio = crate::audio::Pcm::from(vec![1i16, 2, 3]);
        let plan = Brain::Echo.plan(
            &state,
            &TurnInput {
                text: "[speech 1.0 s]".into(),
                audio: Some(audio.clone()),
            },
        );
        assert_eq!(plan.turn, 1);
        assert_eq!(
            plan.steps[0],
            Step::Say {
                text: "You said: [speech 1.0 s]".into(),
                audio: Some(audio),
                drop_after_ms: None
            }
        );
    }
}
