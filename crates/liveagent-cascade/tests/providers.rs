//! Each provider's STT and TTS stage against the local server's fake endpoints in that
//! provider's shape (see `shared/protocols/cascade-apis.md`): the request each stage sends
//! (as the server recorded it), what comes back (partial and final transcripts, PCM16
//! audio of the right length even when the server splits samples across chunks), and
//! errors (a wrong key is an auth error that never shows the key).

use futures_util::StreamExt;
use liveagent_cascade::elevenlabs::{ElevenLabsStt, ElevenLabsTts};
use liveagent_cascade::mistral::{MistralStt, MistralTts};
use liveagent_cascade::openai::{OpenAiStt, OpenAiTts};
use liveagent_cascade::{Stt, SttEvent, Tts, TtsEvent};
use liveagent_core::ErrorKind;

mod common;
use common::*;

#[actix_rt::test]
async fn openai_transcription_streams_partials_then_the_final_text() {
    let server = server().await;
    let base = format!("{}/v1", server.http_url());
    let stt = OpenAiStt::new("gpt-4o-mini-transcribe")
        .base_url(&base)
        .api_key("local-key")
        .language("en");
    let events = transcribe_ok(&stt).await;
    assert!(matches!(events[0], SttEvent::Partial(_)), "{events:?}");
    let text = final_text(&events);
    assert!(text.starts_with("[speech "), "{text}");
    let partials = partials(&events);
    assert_eq!(partials.trim(), text);
    let req = &notes(&server, "openai transcription request: ")[0];
    assert!(
        req.contains("model=gpt-4o-mini-transcribe")
            && req.contains("utterance.wav")
            && req.contains("stream=Some(\"true\")"),
        "{req}"
    );
    // whisper-1 cannot stream: a JSON answer, only the final transcript.
    let whisper = OpenAiStt::new("whisper-1")
        .base_url(&base)
        .api_key("local-key");
    let events = transcribe_ok(&whisper).await;
    assert_eq!(events.len(), 1);
    final_text(&events);
    server.stop().await;
}

#[actix_rt::test]
async fn openai_speech_streams_pcm_raw_or_as_events() {
    let server = server().await;
    let base = format!("{}/v1", server.http_url());
    let text = "It is sunny in Paris.";
    for sse in [false, true] {
        let tts = OpenAiTts::new("gpt-4o-mini-tts", "marin")
            .base_url(&base)
            .api_key("local-key")
            .sse(sse);
        let (audio, rest) = synthesize(&tts, text).await;
        let done = rest.len();
        assert_eq!(done, 1);
        // Chunks split at odd byte offsets: no sample lost or shifted.
        assert_eq!(audio.len(), expected_samples(text, 24_000), "sse={sse}");
    }
    let reqs = notes(&server, "openai speech request: ");
    let body: serde_json::Value = serde_json::from_str(&reqs[0]).unwrap();
    assert_eq!(body["response_format"], "pcm");
    assert_eq!(body["voice"], "marin");
    assert_eq!(body["input"], text);
    assert_eq!(body["stream_format"], "audio");
    let body: serde_json::Value = serde_json::from_str(&reqs[1]).unwrap();
    assert_eq!(body["stream_format"], "sse");
    server.stop().await;
}

#[actix_rt::test]
async fn elevenlabs_scribe_and_streaming_tts() {
    let server = server().await;
    let base = server.http_url();
    let stt = ElevenLabsStt::new("scribe_v1")
        .base_url(&base)
        .api_key("local-key");
    let events = transcribe_ok(&stt).await;
    assert_eq!(events.len(), 1);
    assert!(final_text(&events).starts_with("[speech "));
    let req = &notes(&server, "elevenlabs stt request: ")[0];
    assert!(
        req.contains("model_id=scribe_v1") && req.contains("pcm_s16le_16"),
        "{req}"
    );

    let tts = ElevenLabsTts::new("eleven_flash_v2_5", "JBFqnCBsd6RMkjVDRZzb")
        .base_url(&base)
        .api_key("local-key");
    let (audio, rest) = synthesize(&tts, "Hello there.").await;
    let done = rest.len();
    assert_eq!(done, 1);
    assert_eq!(audio.len(), expected_samples("Hello there.", 24_000));
    let req = &notes(&server, "elevenlabs tts request: ")[0];
    assert!(req.starts_with("voice=JBFqnCBsd6RMkjVDRZzb"), "{req}");
    assert!(
        req.contains("\"model_id\":\"eleven_flash_v2_5\"") && req.contains("similarity_boost"),
        "{req}"
    );
    server.stop().await;
}

#[actix_rt::test]
async fn mistral_voxtral_stt_and_float32_tts() {
    let server = server().await;
    let base = server.http_url();
    let stt = MistralStt::new("voxtral-mini-latest")
        .base_url(&base)
        .api_key("local-key");
    let events = transcribe_ok(&stt).await;
    assert!(events.len() >= 2, "{events:?}");
    assert!(final_text(&events).starts_with("[speech "));
    let tts = MistralTts::new("voxtral-mini-tts-2603", "en_paul_neutral")
        .base_url(&base)
        .api_key("local-key");
    let (audio, rest) = synthesize(&tts, "Bonjour Paris.").await;
    let done = rest.len();
    assert_eq!(done, 1);
    // float32 deltas split inside samples: every sample comes out once.
    assert_eq!(audio.len(), expected_samples("Bonjour Paris.", 24_000));
    let req = &notes(&server, "mistral speech request: ")[0];
    let body: serde_json::Value = serde_json::from_str(req).unwrap();
    assert_eq!(body["voice_id"], "en_paul_neutral");
    assert_eq!(body["stream"], true);
    assert_eq!(body["response_format"], "pcm");
    server.stop().await;
}

/// A wrong key: each provider's 401 shape becomes an auth error naming the stage, and the
/// key never shows.
#[actix_rt::test]
async fn a_wrong_key_is_an_auth_error_without_the_key() {
    let server = server().await;
    let http = server.http_url();
    let v1 = format!("{http}/v1");
    let key = "sk-secret-wrong-key";
    let stts: Vec<Box<dyn Stt>> = vec![
        Box::new(
            OpenAiStt::new("gpt-4o-mini-transcribe")
                .base_url(&v1)
                .api_key(key),
        ),
        Box::new(ElevenLabsStt::new("scribe_v1").base_url(&http).api_key(key)),
        Box::new(
            MistralStt::new("voxtral-mini-latest")
                .base_url(&http)
                .api_key(key),
        ),
    ];
    for stt in stts {
        let events: Vec<_> = stt.transcribe(vec![0i16; 1600].into()).collect().await;
        let err = events.into_iter().next().unwrap().unwrap_err();
        assert_eq!(err.kind, ErrorKind::Auth, "{err}");
        assert!(!format!("{err} {err:?} {stt:?}").contains(key));
    }
    let ttss: Vec<Box<dyn Tts>> = vec![
        Box::new(
            OpenAiTts::new("gpt-4o-mini-tts", "marin")
                .base_url(&v1)
                .api_key(key),
        ),
        Box::new(
            ElevenLabsTts::new("eleven_flash_v2_5", "v")
                .base_url(&http)
                .api_key(key),
        ),
        Box::new(
            MistralTts::new("voxtral-mini-tts-2603", "v")
                .base_url(&http)
                .api_key(key),
        ),
    ];
    for tts in ttss {
        let events: Vec<_> = tts.synthesize("Hi.".into()).collect().await;
        let err = events.into_iter().next().unwrap().unwrap_err();
        assert_eq!(err.kind, ErrorKind::Auth, "{err}");
        assert!(!format!("{err} {err:?} {tts:?}").contains(key));
    }
    server.stop().await;
}

/// A TTS stream cut mid-audio ends with a connection error, not a silent short answer.
#[actix_rt::test]
async fn a_cut_speech_stream_is_an_error() {
    let server = server().await;
    let base = format!("{}/v1", server.http_url());
    let tts = OpenAiTts::new("gpt-4o-mini-tts", "marin-fail-always")
        .base_url(&base)
        .api_key("local-key");
    let events: Vec<_> = tts
        .synthesize("A long enough sentence to be cut in the middle of its audio.".into())
        .collect()
        .await;
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
