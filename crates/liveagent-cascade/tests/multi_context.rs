//! ElevenLabs' multi-context TTS stage and its fake, and connection reuse of the HTTP
//! stages, against the local server (real sockets, real JSON, real audio bytes):
//!
//! - `ElevenLabsMultiTts::connect` speaks two contexts over one socket, and a context
//!   cancelled mid-stream yields nothing more (its late audio is dropped);
//! - the fake `multi-stream-input` is strict like the API's schema (unknown fields, bad
//!   context ids, settings for an open context are `invalid_message` and close 1008) and
//!   tolerant where a client cannot help it (closing a context that is gone, a context-less
//!   keep-alive);
//! - per-sentence HTTP TTS requests (OpenAI, ElevenLabs) share one keep-alive connection.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use liveagent_cascade::elevenlabs::{ElevenLabsMultiTts, ElevenLabsTts};
use liveagent_cascade::openai::OpenAiTts;
use liveagent_cascade::{Tts, TtsContextEvent, TtsEvent, TtsInput};
use liveagent_server::{LocalServer, Pacing, ServerConfig};
use serde_json::{json, Value};

async fn server(pacing: Pacing) -> LocalServer {
    let mut cfg = ServerConfig::default().recording_in_memory();
    cfg.api_key = Some("local-key".into());
    cfg.pacing = pacing;
    LocalServer::start(cfg).await.expect("server")
}

fn sockets(server: &LocalServer) -> usize {
    server
        .recording()
        .iter()
        .filter(|l| l.contains("elevenlabs multi-stream-input: voice="))
        .count()
}

/// Two contexts over one socket: the first is spoken whole and ends with `Done`; the
/// second is cancelled after its first audio, and nothing of it follows (though the fake
/// keeps sending it audio that was on the way).
#[actix_rt::test]
async fn contexts_over_one_socket_and_a_cancelled_one_is_silent() {
    let server = server(Pacing::RealTime).await;
    let tts = ElevenLabsMultiTts::new("eleven_flash_v2_5", "v-late-audio")
        .base_url(server.http_url())
        .api_key("local-key")
        .sample_rate(16_000);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let input =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|i| (i, rx)) })
            .boxed_local();
    let mut conn = tts.connect(input);
    for text in ["One short sentence.", "And a second one."] {
        tx.send(TtsInput::Text {
            context: 1,
            text: text.into(),
        })
        .unwrap();
    }
    tx.send(TtsInput::End { context: 1 }).unwrap();
    let mut samples = 0;
    loop {
        match next(&mut conn).await.expect("no error") {
            TtsContextEvent::Audio {
                context,
                samples: s,
            } => {
                assert_eq!(context, 1);
                samples += s.len();
            }
            TtsContextEvent::Done { context, .. } => {
                assert_eq!(context, 1);
                break;
            }
        }
    }
    // The fake speaks 60 ms a character of each word plus 40 ms a word.
    let ms: usize = "One short sentence. And a second one."
        .split_whitespace()
        .map(|w| w.chars().count() * 60 + 40)
        .sum();
    assert_eq!(samples, ms * 16);

    tx.send(TtsInput::Text {
        context: 2,
        text: "A long answer that the user will not let finish at all.".into(),
    })
    .unwrap();
    assert!(matches!(
        next(&mut conn).await,
        Ok(TtsContextEvent::Audio { context: 2, .. })
    ));
    tx.send(TtsInput::Cancel { context: 2 }).unwrap();
    // Whatever still arrives for context 2 is dropped: the next event is of context 3.
    tx.send(TtsInput::Text {
        context: 3,
        text: "Yes?".into(),
    })
    .unwrap();
    tx.send(TtsInput::End { context: 3 }).unwrap();
    let mut audio_of_2 = 0;
    let mut seen_3 = false;
    loop {
        match next(&mut conn).await.expect("no error") {
            TtsContextEvent::Audio { context: 2, .. } if !seen_3 => audio_of_2 += 1,
            TtsContextEvent::Audio { context, .. } => {
                assert_eq!(context, 3);
                seen_3 = true;
            }
            TtsContextEvent::Done { context, .. } => {
                assert_eq!(context, 3);
                break;
            }
        }
    }
    // At most the messages read before the cancel went out could be of context 2: none,
    // since each event was read right after the one before.
    assert_eq!(audio_of_2, 0);
    assert_eq!(sockets(&server), 1);
    let late = server
        .recording()
        .iter()
        .skip_while(|l| {
            !(l.contains("cascade ws <- ") && l.contains("close_context") && l.contains("ctx-2"))
        })
        .filter(|l| {
            l.contains("cascade ws -> ")
                && l.contains("\"contextId\":\"ctx-2\"")
                && l.contains("\"audio\"")
        })
        .count();
    assert!(
        late >= 1,
        "the fake sent audio of the closed context after the close"
    );
    // Ending the input closes the socket: close_socket, then the closing handshake.
    drop(tx);
    assert!(tokio::time::timeout(Duration::from_secs(5), conn.next())
        .await
        .expect("the end in time")
        .is_none());
    let closed = || {
        server
            .recording()
            .iter()
            .any(|l| l.contains("cascade ws <- ") && l.contains("close_socket"))
    };
    for _ in 0..200 {
        if closed() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(closed(), "close_socket reached the server");
    server.stop().await;
}

type Conn = futures_util::stream::LocalBoxStream<
    'static,
    Result<TtsContextEvent, liveagent_core::LiveError>,
>;

async fn next(conn: &mut Conn) -> Result<TtsContextEvent, liveagent_core::LiveError> {
    tokio::time::timeout(Duration::from_secs(10), conn.next())
        .await
        .expect("an event in time")
        .expect("the connection goes on")
}

/// A raw client on the fake socket.
struct Raw {
    ws: actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>,
}

impl Raw {
    async fn open(url: &str) -> Raw {
        let (_, ws) = awc::Client::new()
            .ws(url)
            .set_header("xi-api-key", "local-key")
            .connect()
            .await
            .expect("connect");
        Raw { ws }
    }

    async fn send(&mut self, v: Value) {
        self.ws
            .send(awc::ws::Message::Text(v.to_string().into()))
            .await
            .expect("send");
    }

    /// The next JSON message, or the close code.
    async fn next(&mut self) -> Result<Value, Option<u16>> {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(5), self.ws.next())
                .await
                .expect("an answer in time");
            match frame {
                Some(Ok(awc::ws::Frame::Text(t))) => return Ok(serde_json::from_slice(&t).unwrap()),
                Some(Ok(awc::ws::Frame::Close(r))) => return Err(r.map(|r| r.code.into())),
                Some(Ok(_)) => continue,
                None | Some(Err(_)) => return Err(None),
            }
        }
    }

    /// Expects `invalid_message` and close 1008.
    async fn refused(mut self) {
        let e = self.next().await.expect("an error message");
        assert_eq!(e["error"], "invalid_message", "{e}");
        assert!(e["message"].is_string(), "{e}");
        assert_eq!(self.next().await.unwrap_err(), Some(1008));
    }
}

#[actix_rt::test]
async fn the_fake_multi_stream_input_is_strict_like_the_schema() {
    let server = server(Pacing::AsFastAsPossible).await;
    let url = format!(
        "{}/v1/text-to-speech/v/multi-stream-input?model_id=eleven_flash_v2_5&output_format=pcm_16000&auto_mode=true",
        server.http_url().replace("http://", "ws://")
    );
    let bad = [
        json!({"text": " ", "context_id": "a", "voice": "x"}),
        json!({"text": " ", "context_id": 7}),
        json!({"text": " ", "context_id": ""}),
        json!({"text": " ", "context_id": "x".repeat(300)}),
        json!({"text": 5, "context_id": "a"}),
        json!({"context_id": "a", "flush": "yes"}),
        json!({"text": "Hello. "}),
    ];
    for m in bad {
        let mut c = Raw::open(&url).await;
        c.send(m).await;
        c.refused().await;
    }
    // Settings go in a context's first message only (a keep-alive opened it first).
    let mut c = Raw::open(&url).await;
    c.send(json!({"text": "", "context_id": "a"})).await;
    c.send(json!({"text": " ", "context_id": "a", "voice_settings": {"stability": 0.5}}))
        .await;
    c.refused().await;

    // Tolerated: a context-less keep-alive, closing a context that is gone; then a context
    // is spoken as usual (auto_mode: at once, without a flush).
    let mut c = Raw::open(&url).await;
    c.send(json!({"text": ""})).await;
    c.send(json!({"context_id": "gone", "close_context": true}))
        .await;
    c.send(json!({"text": " ", "context_id": "b", "voice_settings": {"stability": 0.5}}))
        .await;
    c.send(json!({"text": "Hi there. ", "context_id": "b"}))
        .await;
    let m = c.next().await.expect("audio");
    assert_eq!(m["contextId"], "b", "{m}");
    assert!(m["audio"].is_string(), "{m}");
    c.send(json!({"context_id": "b", "close_context": true}))
        .await;
    loop {
        let m = c.next().await.expect("message");
        assert_eq!(m["contextId"], "b", "{m}");
        if m["isFinal"] == true {
            break;
        }
    }
    server.stop().await;
}

/// Sentences synthesized one request after the other share one keep-alive connection:
/// no TCP (or TLS) handshake per sentence.
#[actix_rt::test]
async fn per_sentence_http_tts_reuses_one_connection() {
    let server = server(Pacing::AsFastAsPossible).await;
    let openai = OpenAiTts::new("gpt-4o-mini-tts", "marin")
        .base_url(format!("{}/v1", server.http_url()))
        .api_key("local-key");
    let eleven = ElevenLabsTts::new("eleven_flash_v2_5", "JBFqnCBsd6RMkjVDRZzb")
        .base_url(server.http_url())
        .api_key("local-key");
    let before = server.stats().tcp_accepted;
    for tts in [&openai as &dyn Tts, &eleven] {
        for text in ["It is sunny.", "Take a hat.", "Have a nice day.", "Bye."] {
            let events: Vec<_> = tts.synthesize(text.into()).collect().await;
            assert!(
                matches!(events.last(), Some(Ok(TtsEvent::Done { .. }))),
                "{events:?}"
            );
        }
    }
    let opened = server.stats().tcp_accepted - before;
    assert_eq!(opened, 1, "8 requests over {opened} connections");
    server.stop().await;
}
