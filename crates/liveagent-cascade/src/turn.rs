//! Turn detection on the client: a cascade has no provider that hears the user, so the
//! [`TurnDetector`] decides when a user turn starts (the barge-in trigger) and ends (the
//! moment the utterance goes to speech-to-text).
//!
//! [`SilenceTurnDetector`] is AG2's energy detector with its defaults: a 10 ms frame is
//! speech when its RMS level is at least 500 (of 32767); a turn starts after 0.2 s of speech
//! and keeps the 0.3 s before it (so the first syllable is not cut), ends after 0.7 s of
//! silence, and is cut at 30 s.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

/// What a detector saw in the audio it was given.
#[derive(Clone, Debug, PartialEq)]
pub enum TurnEvent {
    /// The user started speaking, `start_ms` into the input (prefix padding excluded).
    Started {
        /// Where speech started, in ms of input audio.
        start_ms: u64,
    },
    /// The user stopped speaking: the utterance (with prefix padding) is complete.
    Stopped {
        /// Where the turn ended, in ms of input audio.
        end_ms: u64,
        /// The utterance, PCM16 mono at the rate the detector was fed.
        audio: Vec<i16>,
    },
}

/// Decides where user turns start and end. Fed with microphone audio as it arrives.
pub trait TurnDetector: fmt::Debug + Send + 'static {
    /// Feeds PCM16 mono audio at `sample_rate`; returns the turn boundaries it crossed.
    fn push(&mut self, samples: &[i16], sample_rate: u32) -> Vec<TurnEvent>;
    /// Ends the current turn now (manual commit); `None` when no turn is in progress.
    fn commit(&mut self) -> Option<TurnEvent>;
    /// Forgets the audio of the turn in progress.
    fn clear(&mut self);
    /// True while a turn is in progress.
    fn in_turn(&self) -> bool;
    /// The audio of the turn in progress so far (prefix padding first), which a streaming
    /// speech-to-text stage is fed while the user speaks. Empty when no turn is in
    /// progress; the default (a detector that does not expose it) is always empty, and
    /// the audio then goes out with [`TurnEvent::Stopped`].
    fn turn_audio(&self) -> &[i16] {
        &[]
    }
}

/// Settings of [`SilenceTurnDetector`]; the defaults are AG2's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SilenceSettings {
    /// RMS level (0..32767) from which a 10 ms frame counts as speech (default 500).
    pub energy_threshold: f32,
    /// Silence that ends a turn (default 0.7 s).
    pub silence: Duration,
    /// Speech needed before a turn starts (default 0.2 s).
    pub min_speech: Duration,
    /// Audio kept from before the start (default 0.3 s).
    pub prefix_padding: Duration,
    /// A turn is cut after this long (default 30 s).
    pub max_turn: Duration,
}

impl Default for SilenceSettings {
    fn default() -> Self {
        SilenceSettings {
            energy_threshold: 500.0,
            silence: Duration::from_millis(700),
            min_speech: Duration::from_millis(200),
            prefix_padding: Duration::from_millis(300),
            max_turn: Duration::from_secs(30),
        }
    }
}

/// The energy (RMS) turn detector. See the [module docs](self).
///
/// ```
/// use liveagent_cascade::{SilenceTurnDetector, TurnDetector, TurnEvent};
/// let mut d = SilenceTurnDetector::default();
/// let loud: Vec<i16> = (0..4800).map(|i| if i % 2 == 0 { 3000 } else { -3000 }).collect();
/// let events = d.push(&loud, 16_000); // 0.3 s of speech
/// assert_eq!(events, vec![TurnEvent::Started { start_ms: 0 }]);
/// let events = d.push(&vec![0; 16_000], 16_000); // 1 s of silence
/// assert!(matches!(&events[0], TurnEvent::Stopped { end_ms: 1000, .. }));
/// ```
#[derive(Debug)]
pub struct SilenceTurnDetector {
    settings: SilenceSettings,
    /// Samples of an unfinished 10 ms frame.
    partial: Vec<i16>,
    segmenter: Segmenter,
}

impl Default for SilenceTurnDetector {
    fn default() -> Self {
        SilenceTurnDetector::new(SilenceSettings::default())
    }
}

impl SilenceTurnDetector {
    /// A detector with these settings.
    pub fn new(settings: SilenceSettings) -> Self {
        SilenceTurnDetector {
            segmenter: Segmenter::new(
                10,
                settings.min_speech,
                settings.silence,
                settings.prefix_padding,
                settings.max_turn,
            ),
            settings,
            partial: Vec::new(),
        }
    }

    /// Its settings.
    pub fn settings(&self) -> &SilenceSettings {
        &self.settings
    }
}

impl TurnDetector for SilenceTurnDetector {
    fn push(&mut self, samples: &[i16], sample_rate: u32) -> Vec<TurnEvent> {
        if self.segmenter.set_rate(sample_rate) {
            self.partial.clear();
        }
        let frame_len = (sample_rate / 100).max(1) as usize;
        let mut out = Vec::new();
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (frame_len - self.partial.len()).min(rest.len());
            self.partial.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.partial.len() == frame_len {
                let frame = std::mem::take(&mut self.partial);
                let speech = rms(&frame) >= self.settings.energy_threshold;
                self.segmenter.frame(frame, speech, &mut out);
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

/// The turn state machine the detectors share: fed fixed-length frames, each with a
/// speech or not-speech verdict, it starts a turn after `min_speech` of consecutive speech
/// (keeping `prefix_padding` of audio from before), ends it after `silence`, and cuts it at
/// `max_turn`.
#[derive(Debug)]
pub(crate) struct Segmenter {
    min_speech_frames: u32,
    silence_frames: u32,
    pad_frames: usize,
    max_turn: Duration,
    rate: u32,
    /// Input consumed, in samples (whole frames).
    position: u64,
    /// Recent frames before a turn (prefix padding plus the speech being confirmed).
    recent: VecDeque<Vec<i16>>,
    /// Consecutive speech frames while not in a turn, and where they started.
    candidate: Option<(u64, u32)>,
    /// The turn in progress: its audio, the silence run at its end (frames), its start.
    turn: Option<(Vec<i16>, u32, u64)>,
}

impl Segmenter {
    /// A segmenter for frames of `frame_ms`.
    pub(crate) fn new(
        frame_ms: u32,
        min_speech: Duration,
        silence: Duration,
        prefix_padding: Duration,
        max_turn: Duration,
    ) -> Self {
        let frames = |d: Duration| (d.as_millis() as u32).div_ceil(frame_ms.max(1)).max(1);
        Segmenter {
            min_speech_frames: frames(min_speech),
            silence_frames: frames(silence),
            pad_frames: frames(prefix_padding) as usize,
            max_turn,
            rate: 0,
            position: 0,
            recent: VecDeque::new(),
            candidate: None,
            turn: None,
        }
    }

    /// Sets the input rate; true when it changed (a partial frame must be dropped).
    pub(crate) fn set_rate(&mut self, rate: u32) -> bool {
        let changed = rate != self.rate;
        self.rate = rate;
        changed
    }

    fn ms(&self, samples: u64) -> u64 {
        if self.rate == 0 {
            0
        } else {
            samples * 1000 / self.rate as u64
        }
    }

    /// One frame of input audio, `speech` or not.
    pub(crate) fn frame(&mut self, frame: Vec<i16>, speech: bool, out: &mut Vec<TurnEvent>) {
        let frame_len = frame.len() as u64;
        let start_of_frame = self.position;
        self.position += frame_len;
        if let Some((audio, silent, started)) = self.turn.as_mut() {
            audio.extend_from_slice(&frame);
            *silent = if speech { 0 } else { *silent + 1 };
            let silent = *silent;
            let started = *started;
            let too_long = self.position - started
                >= self.max_turn.as_millis() as u64 * self.rate as u64 / 1000;
            if silent >= self.silence_frames || too_long {
                let (audio, _, _) = self.turn.take().unwrap_or_default();
                out.push(TurnEvent::Stopped {
                    end_ms: self.ms(self.position),
                    audio,
                });
            }
            return;
        }
        self.recent.push_back(frame);
        if speech {
            let (start, n) = self.candidate.unwrap_or((start_of_frame, 0));
            self.candidate = Some((start, n + 1));
            if n + 1 >= self.min_speech_frames {
                self.candidate = None;
                let audio: Vec<i16> = self.recent.drain(..).flatten().collect();
                self.turn = Some((audio, 0, start));
                out.push(TurnEvent::Started {
                    start_ms: self.ms(start),
                });
                return;
            }
        } else {
            self.candidate = None;
        }
        let keep = self.pad_frames + self.candidate.map(|(_, n)| n as usize).unwrap_or(0);
        while self.recent.len() > keep {
            self.recent.pop_front();
        }
    }

    /// Ends the turn in progress now, with `partial` (an unfinished frame) appended.
    pub(crate) fn commit(&mut self, partial: &mut Vec<i16>) -> Option<TurnEvent> {
        let (mut audio, _, _) = self.turn.take()?;
        self.position += partial.len() as u64;
        audio.append(partial);
        Some(TurnEvent::Stopped {
            end_ms: self.ms(self.position),
            audio,
        })
    }

    pub(crate) fn clear(&mut self) {
        self.turn = None;
        self.candidate = None;
        self.recent.clear();
    }

    pub(crate) fn in_turn(&self) -> bool {
        self.turn.is_some()
    }

    /// The audio of the turn in progress so far.
    pub(crate) fn turn_audio(&self) -> &[i16] {
        self.turn
            .as_ref()
            .map(|(a, _, _)| a.as_slice())
            .unwrap_or(&[])
    }
}

/// Root-mean-square level of PCM16 samples.
pub fn rms(samples: &[i16]) -> f32 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|&s| (s as f64) * (s as f64)).sum();
    (sum / samples.len() as f64).sqrt() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loud(ms: u32, rate: u32) -> Vec<i16> {
        (0..rate * ms / 1000)
            .map(|i| if i % 2 == 0 { 2000 } else { -2000 })
            .collect()
    }

    #[test]
    fn short_clicks_do_not_start_a_turn() {
        let mut d = SilenceTurnDetector::default();
        for _ in 0..5 {
            assert!(d.push(&loud(100, 24_000), 24_000).is_empty());
            assert!(d.push(&vec![0; 2400], 24_000).is_empty());
        }
        assert!(!d.in_turn());
    }

    #[test]
    fn utterance_keeps_prefix_padding_and_ends_after_silence() {
        let mut d = SilenceTurnDetector::default();
        let rate = 16_000;
        let mut events = d.push(&vec![0; 16_000], rate); // 1 s silence
        events.extend(d.push(&loud(500, rate), rate));
        assert_eq!(events, vec![TurnEvent::Started { start_ms: 1000 }]);
        // 0.6 s of silence: not yet
        assert!(d.push(&vec![0; 9_600], rate).is_empty());
        let events = d.push(&vec![0; 1_600], rate);
        let TurnEvent::Stopped { end_ms, audio } = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(*end_ms, 2200);
        // 0.3 s padding + 0.5 s speech + 0.7 s silence
        assert_eq!(audio.len(), 16 * (300 + 500 + 700));
    }

    #[test]
    fn max_turn_cuts_a_long_turn() {
        let mut d = SilenceTurnDetector::new(SilenceSettings {
            max_turn: Duration::from_secs(1),
            ..Default::default()
        });
        let events = d.push(&loud(1500, 8000), 8000);
        assert!(matches!(events[0], TurnEvent::Started { .. }));
        assert!(matches!(events[1], TurnEvent::Stopped { .. }));
    }

    #[test]
    fn manual_commit_ends_the_turn() {
        let mut d = SilenceTurnDetector::default();
        d.push(&loud(400, 8000), 8000);
        assert!(d.in_turn());
        assert!(matches!(d.commit(), Some(TurnEvent::Stopped { .. })));
        assert_eq!(d.commit(), None);
    }
}
