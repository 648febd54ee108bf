//! [`Output`]: what a realtime model answers with, audio or text: one modality per session,
//! the same choice in every provider's configuration. Each provider supplies its own audio
//! settings (voice, speed, language) as the type parameter and names the result `Output`
//! (`liveagent_openai::Output`, `liveagent_gemini::Output`).

/// Text-only output: the model answers in text
/// ([`ModelMessageChunk`](crate::ModelMessageChunk)) and never produces audio.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TextOutput;

/// What the model answers with; `A` is the provider's audio settings.
///
/// ```
/// use liveagent_core::{Output, TextOutput};
///
/// #[derive(Clone, Debug, Default, PartialEq)]
/// struct Voice(String);
///
/// let spoken: Output<Voice> = Output::default();
/// assert_eq!(spoken.audio(), Some(&Voice::default()));
/// let text: Output<Voice> = TextOutput.into();
/// assert!(!text.is_audio());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output<A> {
    /// Spoken answers (with their transcript where the provider transcribes them).
    Audio(A),
    /// Text answers only.
    Text(TextOutput),
}

impl<A: Default> Default for Output<A> {
    /// Audio, in the provider's default voice.
    fn default() -> Self {
        Output::Audio(A::default())
    }
}

impl<A> From<TextOutput> for Output<A> {
    fn from(o: TextOutput) -> Self {
        Output::Text(o)
    }
}

impl<A> Output<A> {
    /// True when the model answers in audio.
    pub fn is_audio(&self) -> bool {
        matches!(self, Output::Audio(_))
    }

    /// The audio settings, when the model answers in audio.
    pub fn audio(&self) -> Option<&A> {
        match self {
            Output::Audio(a) => Some(a),
            Output::Text(_) => None,
        }
    }
}
