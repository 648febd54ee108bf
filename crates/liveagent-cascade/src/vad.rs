//! [`VadTurnDetector`]: turn detection by a voice activity detector instead of loudness.
//!
//! [`SilenceTurnDetector`](crate::SilenceTurnDetector) starts a turn on anything loud: a
//! fan, traffic, music, a door. The VAD detector asks a small neural voice activity
//! model ([earshot](https://crates.io/crates/earshot), pure Rust, ~100 KiB, about 3,600×
//! faster than real time on one core) whether each 16 ms frame holds a voice, and runs the
//! same turn state machine with AG2's parameters on that verdict: a turn starts after
//! 0.2 s of voice (keeping the 0.3 s before it), ends after 0.7 s without voice, and is cut
//! at 30 s. How sure the model must be is the [`Aggressiveness`] (webrtc-vad's four modes,
//! or your own threshold).
//!
//! The model hears 16 kHz audio; input at another rate is resampled per frame (linear
//! interpolation, which keeps the speech band), and the turn's audio is returned at the
//! input rate, untouched.

use std::fmt;
use std::time::Duration;

use crate::turn::{Segmenter, TurnDetector, TurnEvent};

/// How sure the voice model must be before a frame counts as voice. Higher modes start
/// fewer turns on noise and miss more quiet speech (as webrtc-vad's modes 0 to 3).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Aggressiveness {
    /// Mode 0: a voice score of at least 0.5 (the model's own suggestion); hears quiet or
    /// distant speech, and the first fraction of a second of a loud noise may pass.
    Quality,
    /// Mode 1 (the default): at least 0.75. Clear speech scores about 0.9; steady noise
    /// about 0.2 and a loud mains hum about 0.7 do not start a turn.
    #[default]
    LowBitrate,
    /// Mode 2: at least 0.85.
    Aggressive,
    /// Mode 3: at least 0.92; for loud rooms (only clear, close speech).
    VeryAggressive,
    /// Your own threshold on the voice score (0..1).
    Threshold(f32),
}

impl Aggressiveness {
    /// The voice score (0..1) from which a frame counts as voice.
    pub fn threshold(self) -> f32 {
        match self {
            Aggressiveness::Quality => 0.5,
            Aggressiveness::LowBitrate => 0.75,
            Aggressiveness::Aggressive => 0.85,
            Aggressiveness::VeryAggressive => 0.92,
            Aggressiveness::Threshold(t) => t.clamp(0.0, 1.0),
        }
    }
}

/// Settings of [`VadTurnDetector`]; the durations default to AG2's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VadSettings {
    /// How sure the model must be (default [`Aggressiveness::LowBitrate`], score 0.75).
    pub aggressiveness: Aggressiveness,
    /// Voice needed before a turn starts (default 0.2 s).
    pub min_speech: Duration,
    /// Time without voice that ends a turn (default 0.7 s).
    pub silence: Duration,
    /// Audio kept from before the start (default 0.3 s).
    pub prefix_padding: Duration,
    /// A turn is cut after this long (default 30 s).
    pub max_turn: Duration,
}

impl Default for VadSettings {
    fn default() -> Self {
        VadSettings {
            aggressiveness: Aggressiveness::default(),
            min_speech: Duration::from_millis(200),
            silence: Duration::from_millis(700),
            prefix_padding: Duration::from_millis(300),
            max_turn: Duration::from_secs(30),
        }
    }
}

/// The model's frame: 16 ms at 16 kHz.
const MODEL_FRAME: usize = 256;
const FRAME_MS: u32 = 16;

/// A turn detector driven by a neural voice activity model. See the [module docs](self).
///
/// ```
/// use liveagent_cascade::{Aggressiveness, CascadeConfig, TurnDetector, VadSettings, VadTurnDetector};
/// let mut d = VadTurnDetector::new(VadSettings {
///     aggressiveness: Aggressiveness::Aggressive,
///     ..Default::default()
/// });
/// // A second of silence at 24 kHz is no turn.
/// assert!(d.push(&vec![0; 24_000], 24_000).is_empty());
/// // In a cascade: CascadeConfig::new(stt, llm, tts).vad(VadSettings::default())
/// ```
pub struct VadTurnDetector {
    settings: VadSettings,
    model: Box<earshot::Detector>,
    /// Samples of an unfinished frame, at the input rate.
    partial: Vec<i16>,
    /// The frame resampled for the model.
    scratch: Vec<i16>,
    segmenter: Segmenter,
    /// The last frame's voice score.
    last_score: f32,
}

impl fmt::Debug for VadTurnDetector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VadTurnDetector")
            .field("settings", &self.settings)
            .field("segmenter", &self.segmenter)
            .field("last_score", &self.last_score)
            .finish_non_exhaustive()
    }
}

impl Default for VadTurnDetector {
    fn default() -> Self {
        VadTurnDetector::new(VadSettings::default())
    }
}

impl VadTurnDetector {
    /// A detector with these settings.
    pub fn new(settings: VadSettings) -> Self {
        VadTurnDetector {
            segmenter: Segmenter::new(
                FRAME_MS,
                settings.min_speech,
                settings.silence,
                settings.prefix_padding,
                settings.max_turn,
            ),
            settings,
            model: earshot::Detector::default_boxed(),
            partial: Vec::new(),
            scratch: vec![0; MODEL_FRAME],
            last_score: 0.0,
        }
    }

    /// Its settings.
    pub fn settings(&self) -> &VadSettings {
        &self.settings
    }

    /// The voice score (0..1) of the last complete frame.
    pub fn last_score(&self) -> f32 {
        self.last_score
    }

    /// The model's voice score for one frame at the input rate.
    fn score(&mut self, frame: &[i16]) -> f32 {
        if frame.len() == MODEL_FRAME {
            return self.model.predict_i16(frame);
        }
        let n = frame.len();
        for (i, out) in self.scratch.iter_mut().enumerate() {
            let pos = i as f64 * n as f64 / MODEL_FRAME as f64;
            let j = pos as usize;
            let frac = pos - j as f64;
            let a = frame[j.min(n - 1)] as f64;
            let b = frame[(j + 1).min(n - 1)] as f64;
            *out = (a + (b - a) * frac).round() as i16;
        }
        self.model.predict_i16(&self.scratch)
    }
}

impl TurnDetector for VadTurnDetector {
    fn push(&mut self, samples: &[i16], sample_rate: u32) -> Vec<TurnEvent> {
        if sample_rate == 0 {
            return Vec::new();
        }
        if self.segmenter.set_rate(sample_rate) {
            self.partial.clear();
            self.model.reset();
        }
        let frame_len = (sample_rate as usize * FRAME_MS as usize / 1000).max(1);
        let threshold = self.settings.aggressiveness.threshold();
        let mut out = Vec::new();
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (frame_len - self.partial.len()).min(rest.len());
            self.partial.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.partial.len() == frame_len {
                let frame = std::mem::take(&mut self.partial);
                self.last_score = self.score(&frame);
                let voice = self.last_score >= threshold;
                self.segmenter.frame(frame, voice, &mut out);
            }
        }
        out
    }

    fn commit(&mut self) -> Option<TurnEvent> {
        self.segmenter.commit(&mut self.partial)
    }

    fn clear(&mut self) {
        self.segmenter.clear();
    }

    fn in_turn(&self) -> bool {
        self.segmenter.in_turn()
    }

    fn turn_audio(&self) -> &[i16] {
        self.segmenter.turn_audio()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_rise_with_aggressiveness() {
        let t: Vec<f32> = [
            Aggressiveness::Quality,
            Aggressiveness::LowBitrate,
            Aggressiveness::Aggressive,
            Aggressiveness::VeryAggressive,
        ]
        .iter()
        .map(|a| a.threshold())
        .collect();
        assert!(t.windows(2).all(|w| w[0] < w[1]), "{t:?}");
        assert_eq!(Aggressiveness::Threshold(7.0).threshold(), 1.0);
    }

    #[test]
    fn silence_at_any_rate_is_no_turn() {
        for rate in [8_000, 16_000, 24_000, 44_100, 48_000] {
            let mut d = VadTurnDetector::default();
            assert!(d.push(&vec![0; rate as usize * 2], rate).is_empty());
            assert!(!d.in_turn());
            assert_eq!(d.commit(), None);
        }
    }
}
