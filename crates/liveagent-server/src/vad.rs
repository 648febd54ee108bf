//! Turn detection: an energy (RMS) voice-activity detector with hangover.
//!
//! Audio is examined in 10 ms frames. A frame is *voiced* when its RMS level is above the
//! threshold. Speech starts after [`VadConfig::min_speech_ms`] of consecutive voiced frames
//! (the start time is the first of them) and stops after
//! [`VadConfig::silence_duration_ms`] without a voiced frame (the hangover). Times are
//! milliseconds of audio since the detector was created, like OpenAI's `audio_start_ms`.

use crate::audio::INTERNAL_RATE;

const FRAME_MS: u64 = 10;
const FRAME_SAMPLES: usize = (INTERNAL_RATE as u64 * FRAME_MS / 1000) as usize;

/// Turn-detection settings (OpenAI `server_vad` names; Gemini's map onto them).
#[derive(Clone, Debug, PartialEq)]
pub struct VadConfig {
    /// 0.0 (most sensitive) to 1.0 (least). Maps to an RMS level between -60 dBFS and
    /// -10 dBFS; the default 0.5 is -35 dBFS.
    pub threshold: f32,
    /// Audio kept before the detected speech start in the committed user item.
    pub prefix_padding_ms: u32,
    /// Silence that ends a turn.
    pub silence_duration_ms: u32,
    /// Voiced audio needed before speech counts as started (filters clicks).
    pub min_speech_ms: u32,
}

impl Default for VadConfig {
    fn default() -> Self {
        VadConfig {
            threshold: 0.5,
            prefix_padding_ms: 300,
            silence_duration_ms: 500,
            min_speech_ms: 60,
        }
    }
}

impl VadConfig {
    /// How much input audio a session keeps while nobody speaks: the prefix padding of a
    /// turn that may be starting. A voiced run that has not yet become speech began less than
    /// `min_speech_ms` (and one 10 ms frame) ago, and the detected start is that run's start,
    /// so the padding before it reaches back at most this far (with 30 ms to spare).
    pub fn idle_keep_ms(&self) -> u64 {
        self.prefix_padding_ms as u64 + self.min_speech_ms.max(10) as u64 + 2 * FRAME_MS + 30
    }

    /// The RMS level (on the PCM16 scale) above which a frame is voiced.
    pub fn rms_threshold(&self) -> f64 {
        let t = self.threshold.clamp(0.0, 1.0) as f64;
        32768.0 * 10f64.powf((-60.0 + 50.0 * t) / 20.0)
    }
}

/// What the detector saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VadEvent {
    /// Speech began at `start_ms`.
    SpeechStarted {
        /// Start of the first voiced frame.
        start_ms: u64,
    },
    /// Speech ended: `end_ms` is where the hangover ran out (the OpenAI meaning of
    /// `audio_end_ms`), `last_voiced_ms` the end of the last voiced frame.
    SpeechStopped {
        /// End of the audio examined when the silence ran out.
        end_ms: u64,
        /// End of the last voiced frame.
        last_voiced_ms: u64,
    },
}

/// The detector state for one input stream (24 kHz PCM16).
#[derive(Debug)]
pub struct Vad {
    cfg: VadConfig,
    pending: Vec<i16>,
    pos_ms: u64,
    in_speech: bool,
    voiced_run_ms: u64,
    run_start_ms: u64,
    silence_ms: u64,
    last_voiced_ms: u64,
}

impl Vad {
    /// A detector with these settings.
    pub fn new(cfg: VadConfig) -> Self {
        Vad {
            cfg,
            pending: Vec::with_capacity(FRAME_SAMPLES),
            pos_ms: 0,
            in_speech: false,
            voiced_run_ms: 0,
            run_start_ms: 0,
            silence_ms: 0,
            last_voiced_ms: 0,
        }
    }

    /// Changes the settings, keeping the timeline.
    pub fn set_config(&mut self, cfg: VadConfig) {
        self.cfg = cfg;
    }

    /// The settings in force.
    pub fn config(&self) -> &VadConfig {
        &self.cfg
    }

    /// Whether speech is in progress.
    pub fn in_speech(&self) -> bool {
        self.in_speech
    }

    /// Milliseconds of audio examined so far.
    pub fn position_ms(&self) -> u64 {
        self.pos_ms
    }

    /// Ends speech now if it is in progress (e.g. Gemini `audioStreamEnd`).
    pub fn flush(&mut self) -> Option<VadEvent> {
        self.voiced_run_ms = 0;
        if self.in_speech {
            self.in_speech = false;
            self.silence_ms = 0;
            return Some(VadEvent::SpeechStopped {
                end_ms: self.pos_ms,
                last_voiced_ms: self.last_voiced_ms,
            });
        }
        None
    }

    /// Feeds 24 kHz samples; returns the events they caused, in order.
    pub fn push(&mut self, samples: &[i16]) -> Vec<VadEvent> {
        let mut events = Vec::new();
        let threshold = self.cfg.rms_threshold();
        let mut rest = samples;
        while !rest.is_empty() {
            let need = FRAME_SAMPLES - self.pending.len();
            let take = need.min(rest.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.pending.len() < FRAME_SAMPLES {
                break;
            }
            let energy: f64 = self.pending.iter().map(|s| (*s as f64).powi(2)).sum();
            let rms = (energy / FRAME_SAMPLES as f64).sqrt();
            self.pending.clear();
            let frame_start = self.pos_ms;
            self.pos_ms += FRAME_MS;
            if let Some(ev) = self.frame(rms > threshold, frame_start) {
                events.push(ev);
            }
        }
        events
    }

    fn frame(&mut self, voiced: bool, frame_start: u64) -> Option<VadEvent> {
        if voiced {
            if self.voiced_run_ms == 0 {
                self.run_start_ms = frame_start;
            }
            self.voiced_run_ms += FRAME_MS;
            self.silence_ms = 0;
            self.last_voiced_ms = self.pos_ms;
            if !self.in_speech && self.voiced_run_ms >= self.cfg.min_speech_ms.max(10) as u64 {
                self.in_speech = true;
                return Some(VadEvent::SpeechStarted {
                    start_ms: self.run_start_ms,
                });
            }
        } else {
            self.voiced_run_ms = 0;
            if self.in_speech {
                self.silence_ms += FRAME_MS;
                if self.silence_ms >= self.cfg.silence_duration_ms.max(10) as u64 {
                    self.in_speech = false;
                    self.silence_ms = 0;
                    return Some(VadEvent::SpeechStopped {
                        end_ms: self.pos_ms,
                        last_voiced_ms: self.last_voiced_ms,
                    });
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(ms: u64) -> Vec<i16> {
        let n = (ms * 24) as usize;
        (0..n)
            .map(|i| ((i as f32 * 0.1).sin() * 8000.0) as i16)
            .collect()
    }

    #[test]
    fn detects_a_tone_between_silences() {
        let mut vad = Vad::new(VadConfig::default());
        let mut ev = vad.push(&vec![0; 24 * 500]);
        assert!(ev.is_empty());
        ev.extend(vad.push(&tone(1000)));
        ev.extend(vad.push(&vec![0; 24 * 800]));
        assert_eq!(
            ev,
            vec![
                VadEvent::SpeechStarted { start_ms: 500 },
                VadEvent::SpeechStopped {
                    end_ms: 2000,
                    last_voiced_ms: 1500
                }
            ]
        );
    }

    #[test]
    fn short_clicks_and_short_pauses_do_not_split_turns() {
        let mut vad = Vad::new(VadConfig::default());
        let mut ev = vad.push(&tone(20));
        ev.extend(vad.push(&vec![0; 24 * 300]));
        assert!(ev.is_empty(), "a 20 ms click is not speech");
        ev.extend(vad.push(&tone(300)));
        ev.extend(vad.push(&vec![0; 24 * 200]));
        ev.extend(vad.push(&tone(300)));
        ev.extend(vad.push(&vec![0; 24 * 600]));
        assert_eq!(ev.len(), 2, "{ev:?}");
    }

    #[test]
    fn flush_ends_speech() {
        let mut vad = Vad::new(VadConfig::default());
        vad.push(&tone(200));
        assert!(vad.in_speech());
        assert!(matches!(vad.flush(), Some(VadEvent::SpeechStopped { .. })));
        assert_eq!(vad.flush(), None);
    }
}
