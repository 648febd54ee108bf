//! [`ElevenLabsMultiTts`]: ElevenLabs' multi-context text-to-speech WebSocket,
//! `wss://api.elevenlabs.io/v1/text-to-speech/{voice_id}/multi-stream-input?model_id=…&output_format=pcm_24000&auto_mode=true`.
//!
//! One socket per conversation, opened when the cascade first has something to say and
//! kept open between turns; one context per response, its sentences streamed in as the
//! LLM produces them (with `auto_mode`, the default, each is synthesized at once: the
//! cascade sends whole sentences):
//!
//! ```text
//! > {"text": " ", "context_id": "ctx-1", "voice_settings": {…}}     (opens the context)
//! > {"text": "It is sunny in Paris. ", "context_id": "ctx-1"}       (each sentence)
//! > {"context_id": "ctx-1", "flush": true}                          (end of the answer:
//! > {"context_id": "ctx-1", "close_context": true}                   speak the rest, then close)
//! < {"audio": "<base64 pcm>", "contextId": "ctx-1", "alignment": …} …   → TtsContextEvent::Audio
//! < {"isFinal": true, "contextId": "ctx-1"}                          → TtsContextEvent::Done
//! ```
//!
//! Barge-in sends only `close_context`: the context's unspoken text is dropped, and its
//! audio that was already on the way arrives after it and is dropped here (never yielded),
//! as is its `isFinal`. While the socket is open, a keep-alive goes out every
//! [`keepalive`](ElevenLabsMultiTts::keepalive) (10 s by default, well within the
//! API's 20 s `inactivity_timeout`): `{"text": "", "context_id"}` for each context still
//! speaking, or `{"text": ""}` between answers. Ending the cascade's input sends
//! `{"close_socket": true}` and closes the socket.
//!
//! The server may spell the context id `contextId` or `context_id` and the final flag
//! `isFinal` or `is_final`: both are read. An `{"error": …}` message, a close with an
//! error code or a broken socket ends the connection with the error; the cascade reports
//! it if an answer was being spoken and opens a new socket for the next one.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::Either;
use futures_util::stream::{self, LocalBoxStream, StreamExt};
use liveagent_core::{ErrorKind, LiveError};
use serde_json::{json, Value};

use super::{VoiceSettings, ELEVENLABS, PCM_RATES};
use crate::http::{endpoint_builders, Endpoint, Pcm16Carry};
use crate::stage::{Tts, TtsCapabilities, TtsContextEvent, TtsEvent, TtsInput, TtsInputStream};
use crate::streams::{audio_delta, opened};
use crate::ws::{path_segment, query, WsConn};

/// ElevenLabs text-to-speech over the multi-context WebSocket: one socket per
/// conversation, one context per response. PCM16 at 24 kHz (or another `pcm_*` rate).
///
/// ```
/// use liveagent_cascade::elevenlabs::ElevenLabsMultiTts;
/// let tts = ElevenLabsMultiTts::new("eleven_flash_v2_5", "JBFqnCBsd6RMkjVDRZzb");
/// ```
#[derive(Clone, Debug)]
pub struct ElevenLabsMultiTts {
    model: Arc<str>,
    voice: Arc<str>,
    rate: u32,
    settings: VoiceSettings,
    language: Option<Arc<str>>,
    schedule: Option<Arc<[u32]>>,
    auto_mode: bool,
    keepalive: Duration,
    inactivity_timeout: Option<u32>,
    ep: Endpoint,
}

endpoint_builders!(ElevenLabsMultiTts, "without `/v1`");
voice_builders!(ElevenLabsMultiTts);

impl ElevenLabsMultiTts {
    /// Speech with `model` (`eleven_flash_v2_5`, `eleven_turbo_v2_5`...) and `voice_id`,
    /// key from `ELEVENLABS_API_KEY`.
    pub fn new(model: impl Into<Arc<str>>, voice_id: impl Into<Arc<str>>) -> Self {
        ElevenLabsMultiTts {
            model: model.into(),
            voice: voice_id.into(),
            rate: 24_000,
            settings: VoiceSettings::default(),
            language: None,
            schedule: None,
            auto_mode: true,
            keepalive: Duration::from_secs(10),
            inactivity_timeout: None,
            ep: Endpoint::new(&ELEVENLABS, "elevenlabs-multi-tts"),
        }
    }

    /// `auto_mode` (default true): the server synthesizes each message at once instead of
    /// buffering text by its chunk schedule. Right for the cascade, which sends whole
    /// sentences; turn it off (and set a [`chunk_length_schedule`](Self::chunk_length_schedule))
    /// to let the server gather longer text first.
    pub fn auto_mode(mut self, on: bool) -> Self {
        self.auto_mode = on;
        self
    }

    /// `generation_config.chunk_length_schedule` of each context (items 50 to 500; the
    /// API's default is `[120, 160, 250, 290]`); only used without `auto_mode`.
    pub fn chunk_length_schedule(mut self, schedule: impl IntoIterator<Item = u32>) -> Self {
        self.schedule = Some(schedule.into_iter().map(|n| n.clamp(50, 500)).collect());
        self
    }

    /// How often a keep-alive goes out while the socket is open (default 10 s; at most
    /// half the [`inactivity_timeout`](Self::inactivity_timeout)).
    pub fn keepalive(mut self, every: Duration) -> Self {
        self.keepalive = every.max(Duration::from_millis(10));
        self
    }

    /// The `inactivity_timeout` query parameter in seconds (1 to 180; the API's default
    /// is 20): how long the server waits for a message before closing the socket.
    pub fn inactivity_timeout(mut self, seconds: u32) -> Self {
        self.inactivity_timeout = Some(seconds.clamp(1, 180));
        self
    }

    fn url(&self) -> String {
        let format = format!("pcm_{}", self.rate);
        let idle = self.inactivity_timeout.map(|s| s.to_string());
        let mut q = vec![
            ("model_id", &*self.model),
            ("output_format", format.as_str()),
            ("auto_mode", if self.auto_mode { "true" } else { "false" }),
        ];
        if let Some(l) = &self.language {
            q.push(("language_code", l));
        }
        if let Some(s) = &idle {
            q.push(("inactivity_timeout", s));
        }
        self.ep.ws_url(&format!(
            "/v1/text-to-speech/{}/multi-stream-input?{}",
            path_segment(&self.voice),
            query(&q)
        ))
    }

    /// The keep-alive period: the configured one, at most half the inactivity timeout.
    fn keepalive_every(&self) -> Duration {
        let idle = Duration::from_secs(self.inactivity_timeout.unwrap_or(20) as u64);
        self.keepalive.min(idle / 2)
    }

    /// The first message of a context: one space, the voice settings (and the schedule).
    fn open_context(&self, id: &str) -> Value {
        let mut init = json!({"text": " ", "context_id": id,
            "voice_settings": self.settings.to_json()});
        if let (Some(s), false) = (&self.schedule, self.auto_mode) {
            init["generation_config"] = json!({"chunk_length_schedule": &**s});
        }
        init
    }
}

/// A context of the socket, by its wire id.
struct Live {
    context: u64,
    carry: Pcm16Carry,
}

/// The connection's state between two items.
struct Conn {
    me: ElevenLabsMultiTts,
    ws: WsConn,
    input: TtsInputStream,
    /// Live contexts by wire id: audio of any other is dropped.
    live: HashMap<String, Live>,
    ready: VecDeque<Result<TtsContextEvent, LiveError>>,
    /// The last message from the server (or the last time one was awaited from scratch).
    heard: Instant,
    /// The last message sent.
    said: Instant,
    finished: bool,
}

fn wire_id(context: u64) -> String {
    format!("ctx-{context}")
}

impl Conn {
    fn on_input(&mut self, input: TtsInput) {
        match input {
            TtsInput::Text { context, text } => {
                let id = wire_id(context);
                if !self.live.contains_key(&id) {
                    self.ws.send_json(&self.me.open_context(&id));
                    self.live.insert(
                        id.clone(),
                        Live {
                            context,
                            carry: Pcm16Carry::default(),
                        },
                    );
                    self.heard = Instant::now();
                }
                // "Should end with a single space."
                let text = format!("{} ", text.trim_end());
                self.ws.send_json(&json!({"text": text, "context_id": id}));
            }
            TtsInput::End { context } => {
                let id = wire_id(context);
                if self.live.contains_key(&id) {
                    // Speak what is buffered, then close: `isFinal` follows the last audio.
                    self.ws.send_json(&json!({"context_id": id, "flush": true}));
                    self.ws
                        .send_json(&json!({"context_id": id, "close_context": true}));
                    self.heard = Instant::now();
                } else {
                    // Nothing was said in it.
                    self.ready.push_back(Ok(TtsContextEvent::Done {
                        context,
                        input_tokens: 0,
                        output_tokens: 0,
                    }));
                }
            }
            TtsInput::Cancel { context } => {
                let id = wire_id(context);
                if self.live.remove(&id).is_some() {
                    self.ws
                        .send_json(&json!({"context_id": id, "close_context": true}));
                }
            }
        }
        self.said = Instant::now();
    }

    fn on_message(&mut self, v: Value) {
        let id = ["contextId", "context_id"]
            .iter()
            .find_map(|k| v.get(*k).and_then(Value::as_str))
            .unwrap_or("");
        let is_final = ["isFinal", "is_final"]
            .iter()
            .any(|k| v.get(*k).and_then(Value::as_bool) == Some(true));
        let has_audio = v
            .get("audio")
            .and_then(Value::as_str)
            .is_some_and(|a| !a.is_empty());
        let Some(live) = self.live.get_mut(id) else {
            if has_audio || is_final {
                // A context closed on barge-in: what it still had on the way is dropped.
                tracing::trace!(context = id, "audio of a closed context dropped");
            }
            return;
        };
        let context = live.context;
        if has_audio {
            let carry = &mut live.carry;
            match audio_delta(&self.me.ep, &v, &["audio"], &mut |b| carry.push(b)) {
                Ok(TtsEvent::Audio(samples)) => self
                    .ready
                    .push_back(Ok(TtsContextEvent::Audio { context, samples })),
                Ok(_) => {}
                Err(e) => {
                    self.ready.push_back(Err(e));
                    self.finished = true;
                    return;
                }
            }
        }
        if is_final {
            self.live.remove(id);
            self.ready.push_back(Ok(TtsContextEvent::Done {
                context,
                input_tokens: 0,
                output_tokens: 0,
            }));
        }
    }

    fn keepalive(&mut self) {
        if self.live.is_empty() {
            self.ws.send_json(&json!({"text": ""}));
        } else {
            let ids: Vec<String> = self.live.keys().cloned().collect();
            for id in ids {
                self.ws.send_json(&json!({"text": "", "context_id": id}));
            }
        }
        self.said = Instant::now();
    }

    /// The next item of the connection, `None` once it is over.
    async fn next(&mut self) -> Option<Result<TtsContextEvent, LiveError>> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(item);
            }
            if self.finished {
                return None;
            }
            let every = self.me.keepalive_every();
            let wait = every.saturating_sub(self.said.elapsed());
            if wait.is_zero() {
                self.keepalive();
                continue;
            }
            // A context waiting for audio that does not come: the socket stalled.
            if !self.live.is_empty() && self.heard.elapsed() >= self.me.ep.timeout {
                self.finished = true;
                return Some(Err(self
                    .me
                    .ep
                    .err(ErrorKind::Connection, "the WebSocket stalled")
                    .with_code("timeout")));
            }
            let next = {
                let msg = std::pin::pin!(self.ws.next_json());
                let both = futures_util::future::select(self.input.next(), msg);
                match tokio::time::timeout(wait, both).await {
                    Err(_) => continue, // time for a keep-alive
                    Ok(Either::Left((item, _))) => Either::Left(item),
                    Ok(Either::Right((msg, _))) => Either::Right(msg),
                }
            };
            match next {
                Either::Left(Some(input)) => self.on_input(input),
                Either::Left(None) => {
                    // The conversation is over: close every context and the socket.
                    self.ws.send_json(&json!({"close_socket": true}));
                    self.finished = true;
                }
                Either::Right(Some(Ok(v))) => {
                    self.heard = Instant::now();
                    self.on_message(v);
                }
                Either::Right(Some(Err(e))) => {
                    self.finished = true;
                    return Some(Err(e));
                }
                Either::Right(None) => {
                    self.finished = true;
                    if !self.live.is_empty() {
                        return Some(Err(self.me.ep.err(
                            ErrorKind::Connection,
                            "the provider closed the WebSocket before the answer was spoken",
                        )));
                    }
                }
            }
        }
    }
}

impl Tts for ElevenLabsMultiTts {
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

    fn multi_context(&self) -> bool {
        true
    }

    fn connect(
        &self,
        input: TtsInputStream,
    ) -> LocalBoxStream<'static, Result<TtsContextEvent, LiveError>> {
        let me = self.clone();
        opened(async move {
            let ws = me.ep.ws_connect(&me.url()).await?;
            let conn = Conn {
                me,
                ws,
                input,
                live: HashMap::new(),
                ready: VecDeque::new(),
                heard: Instant::now(),
                said: Instant::now(),
                finished: false,
            };
            Ok(stream::unfold(conn, |mut conn| async move {
                match conn.next().await {
                    Some(item) => Some((item, conn)),
                    None => {
                        conn.ws.close().await;
                        None
                    }
                }
            })
            .boxed_local())
        })
    }

    /// One piece on a socket of its own (the cascade uses [`connect`](Tts::connect)
    /// instead): one context, its text, its end; the socket closes after its final.
    fn synthesize(&self, text: String) -> LocalBoxStream<'static, Result<TtsEvent, LiveError>> {
        let input = stream::iter([
            TtsInput::Text { context: 1, text },
            TtsInput::End { context: 1 },
        ])
        .chain(stream::pending())
        .boxed_local();
        let conn = self.connect(input);
        // Ends right after the final (or an error), without waiting on the socket.
        stream::unfold(Some(conn), |conn| async move {
            let mut conn = conn?;
            let item = conn.next().await?.map(|e| match e {
                TtsContextEvent::Audio { samples, .. } => TtsEvent::Audio(samples),
                TtsContextEvent::Done {
                    input_tokens,
                    output_tokens,
                    ..
                } => TtsEvent::Done {
                    input_tokens,
                    output_tokens,
                },
            });
            let last = matches!(item, Ok(TtsEvent::Done { .. }) | Err(_));
            Some((item, (!last).then_some(conn)))
        })
        .boxed_local()
    }
}
