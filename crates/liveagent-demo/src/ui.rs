//! What the demo prints: transcripts of both sides, tool calls, interruptions, reconnects,
//! latency per turn and a level meter while it listens.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use liveagent::{LiveEvent, ResponseStatus};

/// Turns events into lines on stdout, and keeps the figures the demo reports at the end.
pub struct Ui {
    tty: bool,
    speech_stopped_at: Option<Instant>,
    awaiting_first_audio: bool,
    agent_line_open: bool,
    meter_at: Instant,
    meter_shown: bool,
    /// First-audio latencies of the turns so far.
    pub latencies: Vec<Duration>,
    /// Responses completed.
    pub responses_done: u32,
    /// When the last response finished.
    pub last_response_done: Option<Instant>,
    /// When the user last stopped speaking.
    pub last_speech_stopped: Option<Instant>,
    /// Errors seen.
    pub errors: u32,
}

impl Ui {
    pub fn new() -> Self {
        Ui {
            tty: std::io::stdout().is_terminal(),
            speech_stopped_at: None,
            awaiting_first_audio: false,
            agent_line_open: false,
            meter_at: Instant::now(),
            meter_shown: false,
            latencies: Vec::new(),
            responses_done: 0,
            last_response_done: None,
            last_speech_stopped: None,
            errors: 0,
        }
    }

    fn line(&mut self, text: impl AsRef<str>) {
        let mut out = std::io::stdout().lock();
        if self.meter_shown {
            let _ = write!(out, "\r\x1b[2K");
            self.meter_shown = false;
        }
        if self.agent_line_open {
            let _ = writeln!(out);
            self.agent_line_open = false;
        }
        let _ = writeln!(out, "{}", text.as_ref());
    }

    fn close_agent_line(&mut self) {
        if self.agent_line_open {
            println!();
            self.agent_line_open = false;
        }
    }

    fn agent_text(&mut self, text: &str) {
        let mut out = std::io::stdout().lock();
        if self.meter_shown {
            let _ = write!(out, "\r\x1b[2K");
            self.meter_shown = false;
        }
        if !self.agent_line_open {
            let _ = write!(out, "agent: ");
            self.agent_line_open = true;
        }
        let _ = write!(out, "{text}");
        let _ = out.flush();
    }

    fn first_audio(&mut self) {
        if self.awaiting_first_audio {
            self.awaiting_first_audio = false;
            if let Some(at) = self.speech_stopped_at.take() {
                let latency = at.elapsed();
                self.latencies.push(latency);
                self.line(format!(
                    "   (first audio {} ms after you stopped speaking)",
                    latency.as_millis()
                ));
            }
        }
    }

    /// Shows one event.
    pub fn show(&mut self, event: &LiveEvent) {
        match event {
            LiveEvent::RecordedAudio(a)
                if self.tty
                    && !self.agent_line_open
                    && self.meter_at.elapsed() >= Duration::from_millis(100) =>
            {
                self.meter_at = Instant::now();
                let db = a.audio.level_dbfs().max(-60.0);
                let bars = ((db + 60.0) / 3.0) as usize;
                let mut out = std::io::stdout().lock();
                let _ = write!(
                    out,
                    "\r\x1b[2Klistening {:<20} {:>4.0} dBFS",
                    "#".repeat(bars.min(20)),
                    db
                );
                let _ = out.flush();
                self.meter_shown = true;
            }
            LiveEvent::SessionOpened(e) => self.line(format!("* connected to {}", e.provider)),
            LiveEvent::SpeechStarted(_) => self.line("you: (speaking...)"),
            LiveEvent::SpeechStopped(_) => {
                self.speech_stopped_at = Some(Instant::now());
                self.last_speech_stopped = Some(Instant::now());
                self.awaiting_first_audio = true;
                self.line("you: (done)");
            }
            LiveEvent::InputTranscriptChunk(t) if t.is_final => {
                self.line(format!("you said: {}", t.text.trim()))
            }
            // The model's words, spoken or written: transcripts of its speech are mirrored
            // into `ModelMessageChunk`, so `OutputTranscriptChunk` is not printed as well.
            LiveEvent::ModelMessageChunk(t) => {
                self.first_audio();
                self.agent_text(&t.text)
            }
            LiveEvent::SynthesizedAudio(_) => self.first_audio(),
            LiveEvent::ResponseDone(r) => {
                self.responses_done += 1;
                self.last_response_done = Some(Instant::now());
                if r.status != ResponseStatus::Completed {
                    self.line(format!(
                        "   (response {:?}{})",
                        r.status,
                        r.reason
                            .as_deref()
                            .map(|x| format!(": {x}"))
                            .unwrap_or_default()
                    ));
                } else {
                    self.close_agent_line();
                }
            }
            LiveEvent::ToolCallRequested(c) => {
                for call in &c.calls {
                    self.line(format!("tool call: {}({})", call.name, call.arguments));
                }
            }
            LiveEvent::ToolResult(r) => match &r.output {
                Ok(v) => self.line(format!("tool result: {} -> {v}", r.name)),
                Err(e) => self.line(format!("tool error: {} -> {e}", r.name)),
            },
            LiveEvent::Interrupted(_) => self.line("(interrupted: you barged in)"),
            LiveEvent::SessionReconnecting(r) => self.line(format!(
                "* connection lost ({}); reconnecting, attempt {} in {} ms",
                r.reason, r.attempt, r.delay_ms
            )),
            LiveEvent::SessionReconnected(r) => self.line(format!(
                "* reconnected after {} ms ({})",
                r.outage_ms,
                if r.resumed {
                    "session resumed"
                } else {
                    "history replayed"
                }
            )),
            LiveEvent::SessionClosed(c) => self.line(format!("* session closed: {}", c.reason)),
            LiveEvent::AudioDropped(d) => self.line(format!(
                "* {} ms of audio dropped: {}",
                d.dropped_ms, d.reason
            )),
            LiveEvent::ErrorEvent(e) => {
                self.errors += 1;
                self.line(format!(
                    "! {} error from {}: {}",
                    if e.fatal { "fatal" } else { "an" },
                    e.source,
                    e.error
                ))
            }
            _ => {}
        }
    }
}
