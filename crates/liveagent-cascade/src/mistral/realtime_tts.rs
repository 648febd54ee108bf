//! [`MistralRealtimeTts`]: Mistral's realtime text-to-speech WebSocket,
//! `wss://api.mistral.ai/v1/audio/speech/realtime?model=voxtral-mini-tts-2603`.
//!
//! Known only from the `mistralai` SDK (3.7.0, `audio.realtime_speech`); no docs page
//! describes it (see the cascade API notes, §3.4). One socket per piece of text:
//!
//! ```text
//! > session.update {session: {voice, response_format: "pcm"}}
//! > input_text.append {text}
//! > input_text.flush
//! > input_text.end
//! < speech.audio.delta {audio_data} …   (float32 LE, 24 kHz) → TtsEvent::Audio (PCM16)
//! < speech.audio.done {usage}                                 → TtsEvent::Done
//! ```

use std::sync::Arc;

use futures_util::stream::LocalBoxStream;
use liveagent_core::LiveError;
use serde_json::{json, Value};

use super::MISTRAL;
use crate::http::{endpoint_builders, Endpoint, F32Carry};
use crate::stage::{Tts, TtsCapabilities, TtsEvent};
use crate::streams::{audio_delta, usage, TtsStreamExt};
use crate::ws::{query, ws_stream, Step};

/// Voxtral text-to-speech over the realtime WebSocket, 24 kHz.
///
/// ```
/// use liveagent_cascade::mistral::MistralRealtimeTts;
/// let tts = MistralRealtimeTts::new("voxtral-mini-tts-2603", "en_paul_neutral");
/// ```
#[derive(Clone, Debug)]
pub struct MistralRealtimeTts {
    model: Arc<str>,
    voice: Arc<str>,
    ep: Endpoint,
}

endpoint_builders!(MistralRealtimeTts, "without `/v1`");

impl MistralRealtimeTts {
    /// Speech with `model` and `voice_id`, key from `MISTRAL_API_KEY`.
    pub fn new(model: impl Into<Arc<str>>, voice_id: impl Into<Arc<str>>) -> Self {
        MistralRealtimeTts {
            model: model.into(),
            voice: voice_id.into(),
            ep: Endpoint::new(&MISTRAL, "mistral-realtime-tts"),
        }
    }
}

impl Tts for MistralRealtimeTts {
    fn provider(&self) -> &'static str {
        MISTRAL.name
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn capabilities(&self) -> TtsCapabilities {
        TtsCapabilities {
            streaming: true,
            sample_rate: 24_000,
            max_chars: 4000,
        }
    }

    fn synthesize(&self, text: String) -> LocalBoxStream<'static, Result<TtsEvent, LiveError>> {
        let me = self.clone();
        let open = async move {
            let path = format!(
                "/v1/audio/speech/realtime?{}",
                query(&[("model", &me.model)])
            );
            let mut conn = me.ep.ws_connect(&me.ep.ws_url(&path)).await?;
            conn.send_json(&json!({
                "type": "session.update",
                "session": {"voice": &*me.voice, "response_format": "pcm"},
            }));
            conn.send_json(&json!({"type": "input_text.append", "text": text}));
            conn.send_json(&json!({"type": "input_text.flush"}));
            conn.send_json(&json!({"type": "input_text.end"}));
            Ok(conn)
        };
        let ep = self.ep.clone();
        let mut carry = F32Carry::default();
        ws_stream(open, move |v| {
            Ok(match v.get("type").and_then(Value::as_str) {
                Some("speech.audio.delta") => {
                    Step::Yield(audio_delta(&ep, &v, &["audio_data"], &mut |b| {
                        carry.push(b)
                    })?)
                }
                Some("speech.audio.done") => Step::Last(TtsEvent::Done {
                    input_tokens: usage(&v, &["prompt_tokens", "input_tokens"]),
                    output_tokens: usage(&v, &["completion_tokens", "output_tokens"]),
                }),
                _ => Step::Skip,
            })
        })
        .ended_with_done(self.ep.clone())
    }
}
