//! The streaming (WebSocket) STT and TTS stages against the local server's fakes, in each
//! provider's message shapes (see `shared/protocols/cascade-apis.md`): OpenAI's realtime
//! transcription session, ElevenLabs' realtime STT and `stream-input` TTS, Mistral's
//! realtime STT and TTS. What each stage sends (as the server recorded it), what comes back
//! (partial then final transcripts; PCM16 audio of the right length although the server
//! splits samples across messages), provider errors on the stream (with their codes), a
//! wrong key (an auth error that never shows the key), and the fakes' strictness towards a
//! client that breaks the protocol (raw WebSocket).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use liveagent_cascade::elevenlabs::{ElevenLabsRealtimeStt, ElevenLabsStreamTts};
use liveagent_cascade::mistral::{MistralRealtimeStt, MistralRealtimeTts};
use liveagent_cascade::openai::OpenAiRealtimeStt;
use liveagent_cascade::{Stt, SttEvent, Tts, TtsEvent};
use liveagent_core::{ErrorKind, LiveError};
use serde_json::{json, Value};

mod common;
use common::*;

/// Partials, then one final transcript (the honest label of the speech), and the partials
/// add up to a prefix of it.
fn check_transcript(events: Vec<Result<SttEvent, LiveError>>) -> String {
    let events: Vec<SttEvent> = events.into_iter().map(|e| e.expect("stt event")).collect();
    assert!(events.len() >= 2, "{events:?}");
    assert!(matches!(events[0], SttEvent::Partial(_)), "{events:?}");
    let Some(SttEvent::Final { text, .. }) = events.last() else {
        panic!("no final transcript: {events:?}")
    };
    assert!(
        text.starts_with("[speech ") && text.ends_with(" s]"),
        "{text}"
    );
    let partials = partials(&events);
    assert!(
        text.starts_with(partials.trim_end()),
        "{partials:?} vs {text:?}"
    );
    text.clone()
}

#[actix_rt::test]
async fn openai_realtime_transcription_session() {
    let server = server().await;
    let stt = OpenAiRealtimeStt::new("gpt-4o-mini-transcribe")
        .base_url(format!("{}/v1", server.http_url()))
        .api_key("local-key")
        .language("en");
    assert_eq!(stt.capabilities().sample_rate, 24_000);
    check_transcript(transcribe(&stt).await);
    let sent = received(&server);
    let update = &sent[0];
    assert_eq!(update["type"], "session.update");
    assert_eq!(update["session"]["type"], "transcription");
    let input = &update["session"]["audio"]["input"];
    assert_eq!(input["format"], json!({"type": "audio/pcm", "rate": 24000}));
    assert_eq!(
        input["transcription"],
        json!({"model": "gpt-4o-mini-transcribe", "language": "en"})
    );
    assert!(input["turn_detection"].is_null());
    assert_eq!(sent[1]["type"], "input_audio_buffer.append");
    assert!(sent[1]["audio"].is_string());
    assert_eq!(
        sent.last().unwrap(),
        &json!({"type": "input_audio_buffer.commit"})
    );
    let note = &notes(&server, "openai realtime transcription: ")[0];
    assert!(note.contains("model=gpt-4o-mini-transcribe"), "{note}");

    // A failed transcription is the provider's error, with its code.
    let failing = OpenAiRealtimeStt::new("gpt-4o-mini-transcribe-fail-always")
        .base_url(format!("{}/v1", server.http_url()))
        .api_key("local-key");
    let events = transcribe(&failing).await;
    let err = events.last().unwrap().as_ref().unwrap_err();
    assert_eq!(err.code.as_deref(), Some("audio_unintelligible"), "{err}");
    assert!(err.to_string().contains("openai-realtime-stt"), "{err}");
    server.stop().await;
}

#[actix_rt::test]
async fn elevenlabs_realtime_stt_partials_and_commit() {
    let server = server().await;
    let stt = ElevenLabsRealtimeStt::new("scribe_v2_realtime")
        .base_url(server.http_url())
        .api_key("local-key")
        .language("en");
    assert_eq!(stt.capabilities().sample_rate, 16_000);
    check_transcript(transcribe(&stt).await);
    let note = &notes(&server, "elevenlabs realtime stt: ")[0];
    assert!(
        note.contains("model_id=scribe_v2_realtime")
            && note.contains("audio_format=pcm_16000")
            && note.contains("commit_strategy=manual"),
        "{note}"
    );
    let sent = received(&server);
    assert!(sent.iter().all(|m| m["message_type"] == "input_audio_chunk"
        && m["sample_rate"] == 16000
        && m["audio_base_64"].is_string()));
    assert!(sent[..sent.len() - 1].iter().all(|m| m["commit"] == false));
    assert_eq!(sent.last().unwrap()["commit"], true);

    let failing = ElevenLabsRealtimeStt::new("scribe_v2_realtime-fail-always")
        .base_url(server.http_url())
        .api_key("local-key");
    let events = transcribe(&failing).await;
    let err = events.last().unwrap().as_ref().unwrap_err();
    assert_eq!(err.code.as_deref(), Some("transcriber_error"), "{err}");
    server.stop().await;
}

#[actix_rt::test]
async fn mistral_realtime_stt_flush_and_end() {
    let server = server().await;
    let stt = MistralRealtimeStt::new("voxtral-mini-transcribe-realtime-2602")
        .base_url(server.http_url())
        .api_key("local-key");
    check_transcript(transcribe(&stt).await);
    let sent = received(&server);
    assert_eq!(
        sent[0],
        json!({"type": "session.update", "session": {"audio_format": {"encoding": "pcm_s16le", "sample_rate": 16000}}})
    );
    assert_eq!(sent[1]["type"], "input_audio.append");
    let n = sent.len();
    assert_eq!(sent[n - 2], json!({"type": "input_audio.flush"}));
    assert_eq!(sent[n - 1], json!({"type": "input_audio.end"}));
    server.stop().await;
}

#[actix_rt::test]
async fn elevenlabs_stream_input_tts() {
    let server = server().await;
    let text = "It is sunny in Paris.";
    let tts = ElevenLabsStreamTts::new("eleven_flash_v2_5", "JBFqnCBsd6RMkjVDRZzb")
        .base_url(server.http_url())
        .api_key("local-key")
        .chunk_length_schedule([50, 120, 160, 290]);
    let (audio, rest) = synthesize(&tts, text).await;
    assert_eq!(rest.len(), 1, "{rest:?}");
    // Messages split inside samples: no sample lost or shifted.
    assert_eq!(audio.len(), expected_samples(text, 24_000));
    let sent = received(&server);
    assert_eq!(sent[0]["text"], " ");
    assert_eq!(
        sent[0]["generation_config"]["chunk_length_schedule"],
        json!([50, 120, 160, 290])
    );
    assert!(sent[0]["voice_settings"]["similarity_boost"].is_number());
    assert!(
        sent[0].get("xi-api-key").is_none(),
        "the key goes in the header"
    );
    assert_eq!(
        sent[1],
        json!({"text": "It is sunny in Paris. ", "flush": true})
    );
    assert_eq!(sent[2], json!({"text": ""}));
    let note = &notes(&server, "elevenlabs stream-input: ")[0];
    assert!(
        note.contains("voice=JBFqnCBsd6RMkjVDRZzb")
            && note.contains("model_id=eleven_flash_v2_5")
            && note.contains("output_format=pcm_24000"),
        "{note}"
    );

    // A connection cut mid-audio is an error, never a short "done" answer.
    let cut = ElevenLabsStreamTts::new("eleven_flash_v2_5", "voice-fail-always")
        .base_url(server.http_url())
        .api_key("local-key");
    let events: Vec<_> = cut
        .synthesize("A long enough sentence to be cut in the middle of its audio.".into())
        .collect()
        .await;
    assert!(
        matches!(events.first(), Some(Ok(TtsEvent::Audio(_)))),
        "{events:?}"
    );
    assert!(
        matches!(events.last(), Some(Err(e)) if e.kind == ErrorKind::Connection),
        "{:?}",
        events.last()
    );
    assert!(!events
        .iter()
        .any(|e| matches!(e, Ok(TtsEvent::Done { .. }))));
    server.stop().await;
}

#[actix_rt::test]
async fn mistral_realtime_tts_float32_audio() {
    let server = server().await;
    let text = "Bonjour Paris.";
    let tts = MistralRealtimeTts::new("voxtral-mini-tts-2603", "en_paul_neutral")
        .base_url(server.http_url())
        .api_key("local-key");
    let (audio, rest) = synthesize(&tts, text).await;
    assert_eq!(audio.len(), expected_samples(text, 24_000));
    assert!(
        matches!(rest[..], [TtsEvent::Done { input_tokens, output_tokens }] if input_tokens > 0 && output_tokens > 0),
        "{rest:?}"
    );
    let sent = received(&server);
    assert_eq!(
        sent[0],
        json!({"type": "session.update", "session": {"voice": "en_paul_neutral", "response_format": "pcm"}})
    );
    assert_eq!(sent[1], json!({"type": "input_text.append", "text": text}));
    assert_eq!(sent[2], json!({"type": "input_text.flush"}));
    assert_eq!(sent[3], json!({"type": "input_text.end"}));
    server.stop().await;
}

/// A wrong key, whichever way the provider refuses it (an in-band error and close 1008, an
/// `auth_error` message, HTTP 401 on the upgrade), is an auth error without the key.
#[actix_rt::test]
async fn a_wrong_key_is_an_auth_error_on_every_socket() {
    let server = server().await;
    let http = server.http_url();
    let key = "sk-secret-wrong-key";
    let stts: Vec<Box<dyn Stt>> = vec![
        Box::new(
            OpenAiRealtimeStt::new("gpt-4o-mini-transcribe")
                .base_url(format!("{http}/v1"))
                .api_key(key),
        ),
        Box::new(
            ElevenLabsRealtimeStt::new("scribe_v2_realtime")
                .base_url(&http)
                .api_key(key),
        ),
        Box::new(
            MistralRealtimeStt::new("voxtral-mini-transcribe-realtime-2602")
                .base_url(&http)
                .api_key(key),
        ),
    ];
    for stt in stts {
        let events = transcribe(stt.as_ref()).await;
        assert_eq!(events.len(), 1, "{events:?}");
        let err = events[0].as_ref().unwrap_err();
        assert_eq!(err.kind, ErrorKind::Auth, "{err}");
        assert!(!format!("{err} {err:?} {stt:?}").contains(key));
    }
    let ttss: Vec<Box<dyn Tts>> = vec![
        Box::new(
            ElevenLabsStreamTts::new("eleven_flash_v2_5", "v")
                .base_url(&http)
                .api_key(key),
        ),
        Box::new(
            MistralRealtimeTts::new("voxtral-mini-tts-2603", "v")
                .base_url(&http)
                .api_key(key),
        ),
    ];
    for tts in ttss {
        let events: Vec<_> = tts.synthesize("Hi.".into()).collect().await;
        assert_eq!(events.len(), 1, "{events:?}");
        let err = events[0].as_ref().unwrap_err();
        assert_eq!(err.kind, ErrorKind::Auth, "{err}");
        assert!(!format!("{err} {err:?} {tts:?}").contains(key));
    }
    server.stop().await;
}

/// A raw client on one of the fakes' sockets.
struct Raw {
    ws: actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>,
}

impl Raw {
    async fn open(url: &str, header: (&str, &str)) -> Raw {
        let (_, ws) = awc::Client::new()
            .ws(url)
            .set_header(header.0, header.1)
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
}

/// The fakes refuse what the real APIs refuse, as the real APIs do.
#[actix_rt::test]
async fn the_fakes_are_strict_about_bad_input() {
    let server = server().await;
    let ws = server.http_url().replace("http://", "ws://");
    let bearer = ("authorization", "Bearer local-key");

    // OpenAI: an empty `model=` (what the official SDK sends without a model) is no model.
    let mut c = Raw::open(
        &format!("{ws}/v1/realtime?intent=transcription&model="),
        bearer,
    )
    .await;
    c.next().await.unwrap();
    c.send(json!({"type": "session.update", "session": {"type": "transcription"}}))
        .await;
    assert_eq!(c.next().await.unwrap()["type"], "session.updated");

    // OpenAI: a model on the transcription URL; less than 100 ms committed; bad base64.
    let mut c = Raw::open(
        &format!("{ws}/v1/realtime?intent=transcription&model=gpt-realtime"),
        bearer,
    )
    .await;
    assert_eq!(c.next().await.unwrap()["type"], "session.created");
    c.send(json!({"type": "session.update", "session": {"type": "transcription"}}))
        .await;
    let e = c.next().await.unwrap();
    assert_eq!(e["error"]["code"], "invalid_model", "{e}");
    let mut c = Raw::open(&format!("{ws}/v1/realtime?intent=transcription"), bearer).await;
    c.next().await.unwrap();
    c.send(json!({"type": "input_audio_buffer.append", "audio": "AAAAAA=="}))
        .await;
    c.send(json!({"type": "input_audio_buffer.commit"})).await;
    let e = c.next().await.unwrap();
    assert_eq!(e["error"]["code"], "input_audio_buffer_commit_empty", "{e}");
    c.send(json!({"type": "input_audio_buffer.append", "audio": "not base64!"}))
        .await;
    assert_eq!(c.next().await.unwrap()["error"]["code"], "invalid_value");
    c.send(json!({"type": "session.update", "session": {"type": "realtime"}}))
        .await;
    assert_eq!(c.next().await.unwrap()["type"], "error");

    // ElevenLabs realtime STT: bad base64 is an input_error.
    let xi = ("xi-api-key", "local-key");
    let mut c = Raw::open(
        &format!("{ws}/v1/speech-to-text/realtime?model_id=scribe_v2_realtime&audio_format=pcm_16000&commit_strategy=manual"),
        xi,
    )
    .await;
    assert_eq!(c.next().await.unwrap()["message_type"], "session_started");
    c.send(json!({"message_type": "input_audio_chunk", "audio_base_64": "%%%", "commit": false, "sample_rate": 16000}))
        .await;
    assert_eq!(c.next().await.unwrap()["message_type"], "input_error");

    // ElevenLabs stream-input: the first message must be {"text": " "}.
    let mut c = Raw::open(
        &format!("{ws}/v1/text-to-speech/v1/stream-input?model_id=eleven_flash_v2_5&output_format=pcm_24000"),
        xi,
    )
    .await;
    c.send(json!({"text": "Hello "})).await;
    assert!(c.next().await.unwrap()["error"].is_string());
    assert_eq!(c.next().await.unwrap_err(), Some(1008));

    // Mistral: an unknown event is an error event and the session goes on.
    let mut c = Raw::open(
        &format!(
            "{ws}/v1/audio/transcriptions/realtime?model=voxtral-mini-transcribe-realtime-2602"
        ),
        bearer,
    )
    .await;
    assert_eq!(c.next().await.unwrap()["type"], "session.created");
    c.send(json!({"type": "input_audio.commit"})).await;
    assert_eq!(c.next().await.unwrap()["type"], "error");
    c.send(json!({"type": "session.update", "session": {"audio_format": {"encoding": "pcm_s16le", "sample_rate": 16000}}}))
        .await;
    assert_eq!(c.next().await.unwrap()["type"], "session.updated");
    server.stop().await;
}

/// Without a `model` the Mistral socket is refused before the upgrade (HTTP 422).
#[actix_rt::test]
async fn mistral_realtime_needs_a_model() {
    let server = server().await;
    let url = format!(
        "{}/v1/audio/transcriptions/realtime",
        server.http_url().replace("http://", "ws://")
    );
    let r = awc::Client::new()
        .ws(url)
        .set_header("authorization", "Bearer local-key")
        .connect()
        .await;
    assert!(
        matches!(r, Err(awc::error::WsClientError::InvalidResponseStatus(s)) if s.as_u16() == 422)
    );
    server.stop().await;
}

/// The next message of type `kind` (skipping others), as the fakes send them.
async fn until(c: &mut Raw, key: &str, kind: &str) -> Value {
    loop {
        let m = c.next().await.expect("a message before the close");
        if m[key] == kind {
            return m;
        }
    }
}

/// Speech then a second of silence, PCM16 LE at `rate`, in 100 ms base64 pieces.
fn spoken_then_silent(rate: u32) -> Vec<String> {
    use base64::Engine;
    let mut pcm = liveagent_testkit::speech_pcm("What is the weather in Paris?", rate);
    pcm.extend(std::iter::repeat_n(0i16, rate as usize));
    pcm.chunks(rate as usize / 10)
        .map(|c| {
            let bytes: Vec<u8> = c.iter().flat_map(|s| s.to_le_bytes()).collect();
            base64::engine::general_purpose::STANDARD.encode(bytes)
        })
        .collect()
}

/// With server-side turn detection (OpenAI `server_vad`, ElevenLabs `commit_strategy=vad`)
/// the fakes commit by themselves when the speech ends.
#[actix_rt::test]
async fn the_fakes_commit_on_silence_with_server_vad() {
    let server = server().await;
    let ws = server.http_url().replace("http://", "ws://");

    let mut c = Raw::open(
        &format!("{ws}/v1/realtime?intent=transcription"),
        ("authorization", "Bearer local-key"),
    )
    .await;
    until(&mut c, "type", "session.created").await;
    c.send(json!({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
        "format": {"type": "audio/pcm", "rate": 24000},
        "transcription": {"model": "gpt-4o-transcribe"},
        "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 300}}}}}))
        .await;
    let updated = until(&mut c, "type", "session.updated").await;
    assert_eq!(
        updated["session"]["audio"]["input"]["turn_detection"]["silence_duration_ms"],
        300
    );
    for audio in spoken_then_silent(24_000) {
        c.send(json!({"type": "input_audio_buffer.append", "audio": audio}))
            .await;
    }
    until(&mut c, "type", "input_audio_buffer.speech_started").await;
    until(&mut c, "type", "input_audio_buffer.speech_stopped").await;
    let committed = until(&mut c, "type", "input_audio_buffer.committed").await;
    let done = until(
        &mut c,
        "type",
        "conversation.item.input_audio_transcription.completed",
    )
    .await;
    assert_eq!(done["item_id"], committed["item_id"]);
    assert!(done["transcript"].as_str().unwrap().starts_with("[speech "));

    let mut c = Raw::open(
        &format!("{ws}/v1/speech-to-text/realtime?model_id=scribe_v2_realtime&audio_format=pcm_16000&commit_strategy=vad&vad_silence_threshold_secs=0.3"),
        ("xi-api-key", "local-key"),
    )
    .await;
    until(&mut c, "message_type", "session_started").await;
    for audio in spoken_then_silent(16_000) {
        c.send(json!({"message_type": "input_audio_chunk", "audio_base_64": audio, "commit": false, "sample_rate": 16000}))
            .await;
    }
    let committed = until(&mut c, "message_type", "committed_transcript").await;
    assert!(committed["text"].as_str().unwrap().starts_with("[speech "));
    server.stop().await;
}

/// `stream-input` speaks μ-law for telephony (`ulaw_8000`: 8 bytes a millisecond) and
/// closes an idle socket with 1008 after `inactivity_timeout`.
#[actix_rt::test]
async fn stream_input_ulaw_and_inactivity() {
    let server = server().await;
    let ws = server.http_url().replace("http://", "ws://");
    let xi = ("xi-api-key", "local-key");
    let mut c = Raw::open(
        &format!("{ws}/v1/text-to-speech/v/stream-input?model_id=eleven_flash_v2_5&output_format=ulaw_8000"),
        xi,
    )
    .await;
    c.send(json!({"text": " "})).await;
    c.send(json!({"text": "Hello there. "})).await;
    c.send(json!({"text": ""})).await;
    let mut bytes = 0;
    loop {
        match c.next().await {
            Ok(m) if m["isFinal"] == true => break,
            Ok(m) => {
                use base64::Engine;
                let a = m["audio"].as_str().unwrap();
                bytes += base64::engine::general_purpose::STANDARD
                    .decode(a)
                    .unwrap()
                    .len();
            }
            Err(code) => panic!("closed early: {code:?}"),
        }
    }
    assert_eq!(bytes, expected_samples("Hello there.", 8000));
    assert_eq!(c.next().await.unwrap_err(), Some(1000));

    let mut c = Raw::open(
        &format!("{ws}/v1/text-to-speech/v/stream-input?model_id=eleven_flash_v2_5&output_format=pcm_16000&inactivity_timeout=1"),
        xi,
    )
    .await;
    c.send(json!({"text": " "})).await;
    let err = c.next().await.unwrap();
    assert!(
        err["message"].as_str().unwrap().contains("1 seconds"),
        "{err}"
    );
    assert_eq!(c.next().await.unwrap_err(), Some(1008));
    server.stop().await;
}

/// `multi-stream-input`: audio routed by context, `close_context` (barge-in) finals the
/// context at once, a 6th live context is refused with 1008, `close_socket` speaks what is
/// left and closes normally.
#[actix_rt::test]
async fn multi_stream_input_contexts() {
    let server = server().await;
    let url = format!(
        "{}/v1/text-to-speech/v/multi-stream-input?model_id=eleven_flash_v2_5&output_format=pcm_16000",
        server.http_url().replace("http://", "ws://")
    );
    let xi = ("xi-api-key", "local-key");
    let mut c = Raw::open(&url, xi).await;
    c.send(json!({"text": " ", "context_id": "turn-1"})).await;
    c.send(json!({"text": "It is sunny in Paris. ", "context_id": "turn-1"}))
        .await;
    c.send(json!({"context_id": "turn-1", "flush": true})).await;
    c.send(json!({"context_id": "turn-1", "close_context": true}))
        .await;
    let mut bytes = 0;
    loop {
        let m = c.next().await.expect("message");
        assert_eq!(m["contextId"], "turn-1", "{m}");
        if m["isFinal"] == true {
            break;
        }
        use base64::Engine;
        bytes += base64::engine::general_purpose::STANDARD
            .decode(m["audio"].as_str().unwrap())
            .unwrap()
            .len();
    }
    assert_eq!(bytes, expected_samples("It is sunny in Paris.", 16_000) * 2);
    for i in 1..=5 {
        c.send(json!({"text": " ", "context_id": format!("c{i}")}))
            .await;
    }
    c.send(json!({"text": " ", "context_id": "c6"})).await;
    let e = c.next().await.unwrap();
    assert_eq!(e["error"], "max_active_conversations", "{e}");
    assert_eq!(c.next().await.unwrap_err(), Some(1008));

    let mut c = Raw::open(&url, xi).await;
    c.send(json!({"text": " ", "context_id": "a"})).await;
    c.send(json!({"text": "Hello. ", "context_id": "a"})).await;
    c.send(json!({"close_socket": true})).await;
    let mut finals = 0;
    loop {
        match c.next().await {
            Ok(m) if m["isFinal"] == true => finals += 1,
            Ok(m) => assert!(m["audio"].is_string(), "{m}"),
            Err(code) => {
                assert_eq!(code, Some(1000));
                break;
            }
        }
    }
    assert_eq!(finals, 1);
    server.stop().await;
}
