//! Scripted scenarios (TOML or JSON): "on turn N say T, call tool X, then say Y, drop the
//! connection here…". See `docs/local-server.md` for the format with examples.
//!
//! ```
//! use liveagent_server::Scenario;
//! let s = Scenario::from_toml(r#"
//!     [[turn]]
//!     say = "Hello!"
//!
//!     [[turn]]
//!     call = "get_weather"
//!     args = { city = "Paris" }
//!     then_say = "It is {output} in Paris."
//! "#).unwrap();
//! assert_eq!(s.turns.len(), 2);
//! ```

use std::collections::VecDeque;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::{Plan, Step};

/// A scenario could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read scenario {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// TOML syntax or shape error.
    #[error("invalid scenario TOML: {0}")]
    Toml(#[from] toml::de::Error),
    /// JSON syntax or shape error.
    #[error("invalid scenario JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A step is ambiguous or empty.
    #[error("invalid scenario: {0}")]
    Invalid(String),
}

/// What happens after the scripted turns run out.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AfterLast {
    /// Answer like the echo brain (the default).
    #[default]
    Echo,
    /// Answer with an empty response.
    Silent,
    /// Start again from the first turn (turn `n` follows turn `(n - 1) % len + 1`): a short
    /// scenario drives a conversation of any length, e.g. faults through a whole soak run.
    Cycle,
}

/// A scripted conversation. Turn numbers count user turns across every session of the
/// scenario on one server, so they survive reconnects.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A name (used in logs; the key in [`crate::ServerConfig::scenarios`] selects it).
    #[serde(default)]
    pub name: Option<String>,
    /// Refuse this many WebSocket connections (HTTP 503) before accepting one.
    #[serde(default)]
    pub refuse_connections: u32,
    /// Steps run on every new connection, right after `session.created` / `setupComplete`
    /// (only events, no audio: e.g. `go_away`, `send`, `error`, `drop`).
    #[serde(default)]
    pub on_connect: Vec<StepSpec>,
    /// Steps run only on the Nth connection (1-based), after `on_connect`.
    #[serde(default)]
    pub on_connection: Vec<ConnectionSpec>,
    /// The turns, in order: `[[turn]]` in TOML, `"turn": [...]` in JSON.
    #[serde(default, rename = "turn", alias = "turns")]
    pub turns: Vec<TurnSpec>,
    /// What to do after the last turn.
    #[serde(default)]
    pub after_last: AfterLast,
}

/// Steps for one specific connection number.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConnectionSpec {
    /// 1-based connection number.
    pub number: u32,
    /// The steps.
    pub steps: Vec<StepSpec>,
}

/// One turn. Shorthands `say`, `call`/`args`, `then_say` expand, in that order, before
/// `steps`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TurnSpec {
    /// Say this first.
    #[serde(default)]
    pub say: Option<String>,
    /// Then call this tool…
    #[serde(default)]
    pub call: Option<String>,
    /// …with these arguments (an object; default `{}`).
    #[serde(default)]
    pub args: Option<Value>,
    /// …and once its output arrives say this (`{output}` is replaced by the output).
    #[serde(default)]
    pub then_say: Option<String>,
    /// Then these steps.
    #[serde(default)]
    pub steps: Vec<StepSpec>,
    /// Drop the connection after this many server frames of the response.
    #[serde(default)]
    pub drop_after_events: Option<u32>,
    /// Wait this long before responding.
    #[serde(default)]
    pub delay_ms: Option<u64>,
}

/// One step of a turn. Set exactly one of the action fields (`say`, `call`, `wait_ms`,
/// `send`, `send_text`, `send_oversized`, `error`, `go_away`, `drop`, `stall_ms`, `close`,
/// `refuse_next`, `slow`); `args`, `audio_ms`, `drop_after_ms`, `drop_mid_arguments`,
/// `code`, `reason` qualify them.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// Speak this text (tones of matching length stand in for speech).
    #[serde(default)]
    pub say: Option<String>,
    /// With `say`: make the audio this long instead.
    #[serde(default)]
    pub audio_ms: Option<u64>,
    /// With `say`: drop the connection after this much audio.
    #[serde(default)]
    pub drop_after_ms: Option<u64>,
    /// Call this tool.
    #[serde(default)]
    pub call: Option<String>,
    /// With `call`: the arguments.
    #[serde(default)]
    pub args: Option<Value>,
    /// With `call`: drop the connection after the first arguments delta.
    #[serde(default)]
    pub drop_mid_arguments: bool,
    /// Pause.
    #[serde(default)]
    pub wait_ms: Option<u64>,
    /// Send this JSON frame verbatim.
    #[serde(default)]
    pub send: Option<Value>,
    /// Send this text frame verbatim (malformed JSON, say).
    #[serde(default)]
    pub send_text: Option<String>,
    /// Send a text frame of this many bytes.
    #[serde(default)]
    pub send_oversized: Option<usize>,
    /// Send a provider error with this message.
    #[serde(default)]
    pub error: Option<String>,
    /// With `error`: the error code; with `close`: the close code.
    #[serde(default)]
    pub code: Option<Value>,
    /// Gemini `goAway` with this `timeLeft`, e.g. `"5s"`.
    #[serde(default)]
    pub go_away: Option<String>,
    /// Drop the TCP connection (no close frame).
    #[serde(default)]
    pub drop: bool,
    /// Go silent (no reads, no frames, no pongs: half-open) for this many ms, then drop.
    #[serde(default)]
    pub stall_ms: Option<u64>,
    /// Close the WebSocket (`code` default 1000, `reason`).
    #[serde(default)]
    pub close: bool,
    /// With `close`: the reason.
    #[serde(default)]
    pub reason: Option<String>,
    /// Refuse the next N connections.
    #[serde(default)]
    pub refuse_next: Option<u32>,
    /// Slow the rest of the turn down by this factor.
    #[serde(default)]
    pub slow: Option<f32>,
}

impl Scenario {
    /// Parses TOML.
    pub fn from_toml(text: &str) -> Result<Self, ScenarioError> {
        let s: Scenario = toml::from_str(text)?;
        s.check()?;
        Ok(s)
    }

    /// Parses JSON.
    pub fn from_json(text: &str) -> Result<Self, ScenarioError> {
        let s: Scenario = serde_json::from_str(text)?;
        s.check()?;
        Ok(s)
    }

    /// Reads a `.json` file as JSON and anything else as TOML.
    pub fn from_file(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
            path: path.display().to_string(),
            source,
        })?;
        if path.extension().is_some_and(|e| e == "json") {
            Self::from_json(&text)
        } else {
            Self::from_toml(&text)
        }
    }

    /// The spec of 1-based turn `n`: `None` past the last turn, unless the scenario cycles
    /// ([`AfterLast::Cycle`]).
    pub fn turn(&self, n: u32) -> Option<&TurnSpec> {
        let i = (n as usize).checked_sub(1)?;
        match self.after_last {
            AfterLast::Cycle if !self.turns.is_empty() => self.turns.get(i % self.turns.len()),
            _ => self.turns.get(i),
        }
    }

    /// The steps to run on connection number `n` (1-based).
    pub fn connect_steps(&self, n: u32) -> Result<VecDeque<Step>, ScenarioError> {
        let mut out = VecDeque::new();
        for s in &self.on_connect {
            out.push_back(s.to_step()?);
        }
        for c in self.on_connection.iter().filter(|c| c.number == n) {
            for s in &c.steps {
                out.push_back(s.to_step()?);
            }
        }
        Ok(out)
    }

    fn check(&self) -> Result<(), ScenarioError> {
        for (i, t) in self.turns.iter().enumerate() {
            t.steps()
                .map_err(|e| ScenarioError::Invalid(format!("turn {}: {e}", i + 1)))?;
        }
        self.connect_steps(0)?;
        for c in &self.on_connection {
            for s in &c.steps {
                s.to_step()?;
            }
        }
        Ok(())
    }
}

impl TurnSpec {
    /// The turn's steps with the shorthands expanded.
    pub fn steps(&self) -> Result<VecDeque<Step>, ScenarioError> {
        let mut out = VecDeque::new();
        if let Some(text) = &self.say {
            out.push_back(say(text.clone(), None, None));
        }
        if let Some(name) = &self.call {
            out.push_back(Step::Call {
                name: name.clone(),
                args: object_args(self.args.clone())?,
                drop_mid_arguments: false,
            });
        } else if self.args.is_some() {
            return Err(ScenarioError::Invalid("`args` without `call`".into()));
        }
        if let Some(text) = &self.then_say {
            if self.call.is_none() {
                return Err(ScenarioError::Invalid("`then_say` without `call`".into()));
            }
            out.push_back(say(text.clone(), None, None));
        }
        for s in &self.steps {
            out.push_back(s.to_step()?);
        }
        Ok(out)
    }

    /// The plan for this turn (steps are checked when the scenario is loaded).
    pub fn to_plan(&self, turn: u32) -> Plan {
        Plan {
            steps: self.steps().unwrap_or_default(),
            drop_after_events: self.drop_after_events,
            delay: self.delay_ms.map(Duration::from_millis),
            turn,
        }
    }
}

fn say(text: String, audio_ms: Option<u64>, drop_after_ms: Option<u64>) -> Step {
    let audio = audio_ms.map(|ms| {
        let len = crate::audio::ms_to_samples(ms, crate::audio::INTERNAL_RATE);
        let mut a = crate::audio::synth_text_up_to(&text, len);
        a.resize(len, 0);
        if a.iter().all(|s| *s == 0) {
            a = crate::audio::synth_text("x".repeat((ms / 60).max(1) as usize).as_str());
            a.resize(
                crate::audio::ms_to_samples(ms, crate::audio::INTERNAL_RATE),
                0,
            );
        }
        crate::audio::Pcm::from(a)
    });
    Step::Say {
        text,
        audio,
        drop_after_ms,
    }
}

fn object_args(args: Option<Value>) -> Result<Value, ScenarioError> {
    match args {
        None => Ok(Value::Object(Default::default())),
        Some(v @ Value::Object(_)) => Ok(v),
        Some(other) => Err(ScenarioError::Invalid(format!(
            "`args` must be an object, got {other}"
        ))),
    }
}

impl StepSpec {
    /// The typed step; an error if not exactly one action is set.
    pub fn to_step(&self) -> Result<Step, ScenarioError> {
        let mut found: Vec<Step> = Vec::new();
        if let Some(text) = &self.say {
            found.push(say(text.clone(), self.audio_ms, self.drop_after_ms));
        }
        if let Some(name) = &self.call {
            found.push(Step::Call {
                name: name.clone(),
                args: object_args(self.args.clone())?,
                drop_mid_arguments: self.drop_mid_arguments,
            });
        }
        if let Some(ms) = self.wait_ms {
            found.push(Step::Wait(Duration::from_millis(ms)));
        }
        if let Some(v) = &self.send {
            found.push(Step::Send(v.clone()));
        }
        if let Some(t) = &self.send_text {
            found.push(Step::SendText(t.clone()));
        }
        if let Some(n) = self.send_oversized {
            found.push(Step::SendOversized(n));
        }
        if let Some(message) = &self.error {
            found.push(Step::Error {
                message: message.clone(),
                code: self.code.as_ref().map(|c| match c {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                }),
            });
        }
        if let Some(t) = &self.go_away {
            found.push(Step::GoAway(t.clone()));
        }
        if self.drop {
            found.push(Step::Drop);
        }
        if let Some(ms) = self.stall_ms {
            found.push(Step::Stall(Duration::from_millis(ms)));
        }
        if self.close {
            let code = match &self.code {
                None => 1000,
                Some(Value::Number(n)) => n
                    .as_u64()
                    .and_then(|n| u16::try_from(n).ok())
                    .ok_or_else(|| ScenarioError::Invalid(format!("bad close code {n}")))?,
                Some(other) => {
                    return Err(ScenarioError::Invalid(format!(
                        "close `code` must be a number, got {other}"
                    )))
                }
            };
            found.push(Step::Close {
                code,
                reason: self.reason.clone().unwrap_or_default(),
            });
        }
        if let Some(n) = self.refuse_next {
            found.push(Step::RefuseNext(n));
        }
        if let Some(f) = self.slow {
            if !(f.is_finite() && f > 0.0) {
                return Err(ScenarioError::Invalid(format!(
                    "`slow` must be > 0, got {f}"
                )));
            }
            found.push(Step::Slow(f));
        }
        match found.len() {
            1 => Ok(found.pop().unwrap_or(Step::Drop)),
            0 => Err(ScenarioError::Invalid(format!(
                "a step with no action: {self:?}"
            ))),
            _ => Err(ScenarioError::Invalid(format!(
                "a step with more than one action (split it into several steps): {self:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_and_json_forms() {
        let t = Scenario::from_toml(
            r#"
            refuse_connections = 1
            [[turn]]
            say = "Hi"
            [[turn]]
            call = "get_weather"
            args = { city = "Paris" }
            then_say = "It is {output}."
            [[turn]]
            steps = [ { say = "long", drop_after_ms = 200 }, { drop = true } ]
            "#,
        )
        .unwrap();
        assert_eq!(t.turns.len(), 3);
        let steps = t.turns[1].steps().unwrap();
        assert!(matches!(&steps[0], Step::Call { name, .. } if name == "get_weather"));
        let j = Scenario::from_json(
            r#"{"turn":[{"say":"Hi"},{"steps":[{"error":"boom","code":"server_error"}]}]}"#,
        )
        .unwrap();
        assert_eq!(j.turns.len(), 2);
    }

    #[test]
    fn cycle_repeats_the_turns() {
        let s =
            Scenario::from_json(r#"{"after_last":"cycle","turn":[{"say":"one"},{"say":"two"}]}"#)
                .unwrap();
        assert_eq!(s.turn(1).unwrap().say.as_deref(), Some("one"));
        assert_eq!(s.turn(4).unwrap().say.as_deref(), Some("two"));
        assert_eq!(s.turn(1001).unwrap().say.as_deref(), Some("one"));
        assert!(s.turn(0).is_none());
        let once = Scenario::from_json(r#"{"turn":[{"say":"one"}]}"#).unwrap();
        assert!(once.turn(2).is_none());
    }

    #[test]
    fn audio_ms_does_not_synthesize_the_whole_text() {
        // 70 KB of text is over an hour of tones; with `audio_ms` only 500 ms are made.
        let long = "word ".repeat(14 * 1024);
        let step = StepSpec {
            say: Some(long),
            audio_ms: Some(500),
            ..Default::default()
        }
        .to_step()
        .unwrap();
        let Step::Say { audio: Some(a), .. } = step else {
            panic!("no audio")
        };
        assert_eq!(
            a.len(),
            crate::audio::ms_to_samples(500, crate::audio::INTERNAL_RATE)
        );
    }

    #[test]
    fn ambiguous_or_empty_steps_are_rejected() {
        assert!(Scenario::from_toml("[[turn]]\nsteps = [ { say = \"a\", drop = true } ]").is_err());
        assert!(Scenario::from_toml("[[turn]]\nsteps = [ {} ]").is_err());
        assert!(Scenario::from_toml("[[turn]]\nthen_say = \"x\"").is_err());
        assert!(Scenario::from_toml("[[turn]]\nsya = \"typo\"").is_err());
    }
}
