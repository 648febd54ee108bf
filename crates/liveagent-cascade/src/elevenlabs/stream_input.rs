//! [`ElevenLabsStreamTts`]: ElevenLabs' `stream-input` text-to-speech WebSocket,
//! `wss://api.elevenlabs.io/v1/text-to-speech/{voice_id}/stream-input?model_id=…&output_format=pcm_24000`.
//!
//! One socket per piece of text (the API takes no text after the end of input):
//!
//! ```text
//! > {"text": " ", "voice_settings": {…}, "generation_config": {"chunk_length_schedule": […]}}
//! > {"text": "It is sunny in Paris. ", "flush": true}
//! > {"text": ""}                                   (end of input)
//! < {"audio": "<base64 pcm>", "isFinal": null, "alignment": …} …   → TtsEvent::Audio
//! < {"isFinal": true}                                               → TtsEvent::Done
//! ```
//!
//! Audio chunks are not sample-aligned; odd bytes are carried over. An audio message may
//! say `"isFinal": null` or `false`: only a true flag (`isFinal` or `is_final`) ends the
//! stream. An `{"error": …}` message ends it with the provider's error.

use std::sync::Arc;

use futures_util::stream::LocalBoxStream;
use liveagent_core::LiveError;
use serde_json::{json, Value};

use super::{VoiceSettings, ELEVENLABS, PCM_RATES};
use crate::http::{endpoint_builders, Endpoint, Pcm16Carry};
use crate::stage::{Tts, TtsCapabilities, TtsEvent};
use crate::streams::{audio_delta, TtsStreamExt};
use crate::ws::{path_segment, query, ws_stream, Step};

/// ElevenLabs text-to-speech over the `stream-input` WebSocket, PCM16 at 24 kHz (or another
/// `pcm_*` rate).
///
/// ```
/// use liveagent_cascade::elevenlabs::ElevenLabsStreamTts;
/// let tts = ElevenLabsStreamTts::new("eleven_flash_v2_5", "JBFqnCBsd6RMkjVDRZzb")
///     .chunk_length_schedule([50, 120, 160, 290]);
/// ```
#[derive(Clone, Debug)]
pub struct ElevenLabsStreamTts {
    model: Arc<str>,
    voice: Arc<str>,
    rate: u32,
    settings: VoiceSettings,
    language: Option<Arc<str>>,
    schedule: Option<Arc<[u32]>>,
    ep: Endpoint,
}

endpoint_builders!(ElevenLabsStreamTts, "without `/v1`");
voice_builders!(ElevenLabsStreamTts);

impl ElevenLabsStreamTts {
    /// Speech with `model` (`eleven_flash_v2_5`, `eleven_turbo_v2_5`...) and `voice_id`,
    /// key from `ELEVENLABS_API_KEY`.
    pub fn new(model: impl Into<Arc<str>>, voice_id: impl Into<Arc<str>>) -> Self {
        ElevenLabsStreamTts {
            model: model.into(),
            voice: voice_id.into(),
            rate: 24_000,
            settings: VoiceSettings::default(),
            language: None,
            schedule: None,
            ep: Endpoint::new(&ELEVENLABS, "elevenlabs-stream-tts"),
        }
    }

    /// `generation_config.chunk_length_schedule`: how many characters the server buffers
    /// before each generation (items 50 to 500; the API's default is `[120, 160, 250, 290]`).
    /// Each piece is flushed at its end anyway.
    pub fn chunk_length_schedule(mut self, schedule: impl IntoIterator<Item = u32>) -> Self {
        self.schedule = Some(schedule.into_iter().map(|n| n.clamp(50, 500)).collect());
        self
    }

    fn url(&self) -> String {
        let format = format!("pcm_{}", self.rate);
        let mut q = vec![
            ("model_id", &*self.model),
            ("output_format", format.as_str()),
        ];
        if let Some(l) = &self.language {
            q.push(("language_code", l));
        }
        self.ep.ws_url(&format!(
            "/v1/text-to-speech/{}/stream-input?{}",
            path_segment(&self.voice),
            query(&q)
        ))
    }

    /// The first message: one space, the voice settings and the chunk schedule.
    fn initialize(&self) -> Value {
        let mut init = json!({"text": " ", "voice_settings": self.settings.to_json()});
        if let Some(s) = &self.schedule {
            init["generation_config"] = json!({"chunk_length_schedule": &**s});
        }
        init
    }
}

impl Tts for ElevenLabsStreamTts {
    fn provider(&self) -> &'static str {
        ELEVENLABS.name
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn capabilities(&self) -> TtsCapabilities {
        TtsCapabilities {
            streaming: true,
            sample_rate: self.rate,
            max_chars: 5000,
        }
    }

    fn synthesize(&self, text: String) -> LocalBoxStream<'static, Result<TtsEvent, LiveError>> {
        let me = self.clone();
        let open = async move {
            let mut conn = me.ep.ws_connect(&me.url()).await?;
            conn.send_json(&me.initialize());
            // "End each chunk with a space"; flush: generate now, whatever the schedule.
            let text = format!("{} ", text.trim_end());
            conn.send_json(&json!({"text": text, "flush": true}));
            conn.send_json(&json!({"text": ""}));
            Ok(conn)
        };
        let ep = self.ep.clone();
        let mut carry = Pcm16Carry::default();
        ws_stream(open, move |v| {
            let is_final = ["isFinal", "is_final"]
                .iter()
                .any(|k| v.get(*k).and_then(Value::as_bool) == Some(true));
            let has_audio = v
                .get("audio")
                .and_then(Value::as_str)
                .is_some_and(|a| !a.is_empty());
            let done = TtsEvent::Done {
                input_tokens: 0,
                output_tokens: 0,
            };
            Ok(match (has_audio, is_final) {
                (true, false) => {
                    Step::Yield(audio_delta(&ep, &v, &["audio"], &mut |b| carry.push(b))?)
                }
                (true, true) => Step::YieldThenLast(
                    audio_delta(&ep, &v, &["audio"], &mut |b| carry.push(b))?,
                    done,
                ),
                (false, true) => Step::Last(done),
                (false, false) => Step::Skip,
            })
        })
        .ended_with_done(self.ep.clone())
    }
}
