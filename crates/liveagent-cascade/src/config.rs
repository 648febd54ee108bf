//! [`CascadeConfig`]: a speech-to-text, an LLM and a text-to-speech stage composed into one
//! provider configuration, taken by `LiveAgent::builder().config(..)` like the realtime
//! ones (AG2's `CascadeConfig(stt, model, tts, turn_detector, barge_in, min_chars)`).

use std::fmt;
use std::sync::Arc;

use liveagent_core::{LiveError, RealtimeConfig, RealtimeProtocol, SessionSetup};

use crate::protocol::CascadeProtocol;
use crate::stage::{Llm, Stt, Tts};
use crate::turn::{SilenceSettings, SilenceTurnDetector, TurnDetector};
use crate::vad::{VadSettings, VadTurnDetector};

type DetectorFactory = Arc<dyn Fn() -> Box<dyn TurnDetector> + Send + Sync>;

/// A cascade provider configuration. See the [crate docs](crate) for an example.
#[derive(Clone)]
pub struct CascadeConfig {
    pub(crate) stt: Arc<dyn Stt>,
    pub(crate) llm: Arc<dyn Llm>,
    pub(crate) tts: Arc<dyn Tts>,
    detector: DetectorFactory,
    pub(crate) barge_in: bool,
    pub(crate) min_chars: usize,
    pub(crate) text_only: bool,
}

impl fmt::Debug for CascadeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CascadeConfig")
            .field("stt", &self.stt)
            .field("llm", &self.llm)
            .field("tts", &self.tts)
            .field("barge_in", &self.barge_in)
            .field("min_chars", &self.min_chars)
            .field("text_only", &self.text_only)
            .finish()
    }
}

impl CascadeConfig {
    /// A cascade of these stages, with AG2's defaults: a [`SilenceTurnDetector`] with
    /// [`SilenceSettings::default`], barge-in on, pieces of at least 20 characters for
    /// the synthesizer.
    pub fn new(stt: impl Stt, llm: impl Llm, tts: impl Tts) -> Self {
        CascadeConfig {
            stt: Arc::new(stt),
            llm: Arc::new(llm),
            tts: Arc::new(tts),
            detector: Arc::new(|| Box::new(SilenceTurnDetector::default())),
            barge_in: true,
            min_chars: 20,
            text_only: false,
        }
    }

    /// The turn detector: `factory` makes one per conversation.
    pub fn turn_detector<F, D>(mut self, factory: F) -> Self
    where
        F: Fn() -> D + Send + Sync + 'static,
        D: TurnDetector,
    {
        self.detector = Arc::new(move || Box::new(factory()));
        self
    }

    /// The silence detector with these settings.
    pub fn silence(self, settings: SilenceSettings) -> Self {
        self.turn_detector(move || SilenceTurnDetector::new(settings))
    }

    /// The voice-activity detector with these settings ([`VadTurnDetector`]): turns start
    /// on a voice, not on any loud noise.
    pub fn vad(self, settings: VadSettings) -> Self {
        self.turn_detector(move || VadTurnDetector::new(settings))
    }

    /// Whether the user speaking over the agent interrupts it (default true).
    pub fn barge_in(mut self, barge_in: bool) -> Self {
        self.barge_in = barge_in;
        self
    }

    /// The shortest piece of text sent to the synthesizer, except the answer's last
    /// (default 20; AG2's `min_chars`).
    pub fn min_chars(mut self, min_chars: usize) -> Self {
        self.min_chars = min_chars;
        self
    }

    /// Answer in text only: the LLM's words stream as `ModelMessageChunk`s and nothing is
    /// synthesized (like the realtime providers' text output; the TTS stage is not used).
    pub fn text_only(mut self, text_only: bool) -> Self {
        self.text_only = text_only;
        self
    }

    pub(crate) fn new_detector(&self) -> Box<dyn TurnDetector> {
        (self.detector)()
    }
}

impl RealtimeConfig for CascadeConfig {
    fn provider(&self) -> &'static str {
        "cascade"
    }

    fn input_sample_rate(&self) -> u32 {
        self.stt.capabilities().sample_rate
    }

    fn output_sample_rate(&self) -> u32 {
        self.tts.capabilities().sample_rate
    }

    fn build_protocol(&self, setup: SessionSetup) -> Result<Box<dyn RealtimeProtocol>, LiveError> {
        Ok(Box::new(CascadeProtocol::new(self.clone(), setup)))
    }
}
