//! Cascade mode end to end with streaming stages: a real `LiveAgent` whose cascade
//! transcribes over a realtime STT WebSocket and speaks over a streaming TTS WebSocket,
//! against the local server's fakes (real sockets, real JSON, real audio bytes). Partial
//! transcripts reach the event stream as `InputTranscriptChunk`s before the final one, the
//! answer (with a tool call mid-answer) is spoken through the socket piece by piece, and a
//! TTS socket cut mid-answer is a clear error after which the conversation goes on.

use liveagent::cascade::elevenlabs::{ElevenLabsRealtimeStt, ElevenLabsStreamTts};
use liveagent::cascade::mistral::{MistralRealtimeStt, MistralRealtimeTts};
use liveagent::cascade::openai::OpenAiRealtimeStt;
use liveagent::cascade::{CascadeConfig, Stt, Tts};
use liveagent::{LiveAgent, LiveEvent, ResponseStatus, Stage};
use liveagent_e2e::cascade::*;
use liveagent_e2e::*;
use liveagent_server::LocalServer;
use serde_json::Value;

fn cascade(server: &LocalServer, stt: impl Stt, tts: impl Tts) -> CascadeConfig {
    CascadeConfig::new(stt, chat_llm(server), tts)
}

/// OpenAI's realtime transcription session in, ElevenLabs' `stream-input` out, a tool call
/// between the two parts of the answer.
#[actix_rt::test]
async fn realtime_stt_and_stream_input_tts_with_a_tool_call() {
    let server = server(Some(WEATHER)).await;
    let stt = OpenAiRealtimeStt::new("gpt-4o-mini-transcribe")
        .base_url(format!("{}/v1", server.http_url()))
        .api_key("local-key");
    let tts = ElevenLabsStreamTts::new("eleven_flash_v2_5", "JBFqnCBsd6RMkjVDRZzb")
        .base_url(server.http_url())
        .api_key("local-key");
    let run = Run::start(
        LiveAgent::builder("cascade")
            .prompt("You are a weather assistant.")
            .config(cascade(&server, stt, tts))
            .tool(get_weather()),
    );
    run.speak(question()).await;
    // One response spans the tool call (the LLM goes on with the result).
    run.wait_count(
        "the response",
        1,
        |e| matches!(e, LiveEvent::ResponseDone(d) if d.status == ResponseStatus::Completed),
    )
    .await;

    // Live partials first, then one final transcript they lead up to.
    let said = transcripts(&run);
    let partials: String = said
        .iter()
        .filter(|(f, _)| !f)
        .map(|(_, t)| t.as_str())
        .collect();
    let finals: Vec<&String> = said.iter().filter(|(f, _)| *f).map(|(_, t)| t).collect();
    assert!(!partials.is_empty(), "{}", run.summary());
    assert_eq!(finals.len(), 1, "{said:?}");
    assert!(finals[0].starts_with("[speech "), "{said:?}");
    assert_eq!(partials.trim(), finals[0].as_str());
    assert!(!said[0].0, "a partial comes first: {said:?}");

    let text: String = run
        .collect(|e| match e {
            LiveEvent::ModelMessageChunk(c) => Some(c.text.to_string()),
            _ => None,
        })
        .concat();
    assert!(text.contains("Let me look that up for you."), "{text}");
    assert!(
        text.contains("It is sunny and 21 degrees in Paris."),
        "{text}"
    );
    let audio_ms: u64 = run
        .collect(|e| match e {
            LiveEvent::SynthesizedAudio(a) => Some(a.audio.duration_ms()),
            _ => None,
        })
        .iter()
        .sum();
    assert!(audio_ms > 1000, "{audio_ms} ms of speech");
    assert_eq!(
        run.count(|e| matches!(e, LiveEvent::ToolResult(r) if r.output.is_ok())),
        1
    );

    // What went over the sockets: one transcription session, one stream-input socket per
    // piece of the answer, each initialized, flushed and ended.
    let sent = ws_received(&server);
    let updates: Vec<&Value> = sent
        .iter()
        .filter(|m| m["type"] == "session.update")
        .collect();
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0]["session"]["type"], "transcription");
    let inits = sent.iter().filter(|m| m["text"] == " ").count();
    let ends = sent.iter().filter(|m| m["text"] == "").count();
    let pieces: Vec<&str> = sent
        .iter()
        .filter(|m| m["flush"] == true)
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert!(
        inits >= 2 && inits == ends && ends == pieces.len(),
        "{sent:?}"
    );
    let spoken: String = pieces.concat();
    assert!(spoken.contains("Let me look that up for you."), "{spoken}");

    let done = run.collect(|e| match e {
        LiveEvent::ResponseDone(d) => Some((**d).clone()),
        _ => None,
    });
    let usage = done[0].usage.as_ref().expect("usage");
    let stage = |s: Stage| usage.stages.iter().find(|u| u.stage == s).expect("stage");
    assert_eq!(&*stage(Stage::Stt).provider, "openai");
    assert_eq!(stage(Stage::Stt).requests, 1);
    assert_eq!(&*stage(Stage::Tts).provider, "elevenlabs");
    server.stop().await;
}

/// ElevenLabs' realtime STT in, Mistral's realtime speech out; then a TTS socket cut
/// mid-answer: an error event names the stage, the response ends failed, and the next turn
/// works.
#[actix_rt::test]
async fn realtime_stages_survive_a_cut_tts_socket() {
    let server = server(None).await;
    let stt = ElevenLabsRealtimeStt::new("scribe_v2_realtime")
        .base_url(server.http_url())
        .api_key("local-key");
    let tts = MistralRealtimeTts::new("voxtral-mini-tts-2603", "en_paul_neutral-fail-once")
        .base_url(server.http_url())
        .api_key("local-key");
    let run = Run::start(
        LiveAgent::builder("cascade")
            .prompt("Repeat what you hear.")
            .config(cascade(&server, stt, tts)),
    );
    run.speak(question()).await;
    run.wait_count("a response", 1, |e| matches!(e, LiveEvent::ResponseDone(_)))
        .await;
    let errors = run.collect(|e| match e {
        LiveEvent::ErrorEvent(x) if &*x.source == "cascade-tts" && !x.fatal => {
            Some(x.error.to_string())
        }
        _ => None,
    });
    assert_eq!(errors.len(), 1, "{}", run.summary());
    assert!(
        errors.iter().any(|e| e.contains("mistral-realtime-tts")),
        "{errors:?}"
    );

    run.speak(question()).await;
    run.wait_count(
        "a completed response",
        1,
        |e| matches!(e, LiveEvent::ResponseDone(d) if d.status == ResponseStatus::Completed),
    )
    .await;
    let said = transcripts(&run);
    assert!(said.iter().any(|(f, _)| !f), "partials: {said:?}");
    assert_eq!(said.iter().filter(|(f, _)| *f).count(), 2, "{said:?}");
    server.stop().await;
}

/// Mistral's realtime STT through a whole turn.
#[actix_rt::test]
async fn mistral_realtime_stt_turn() {
    let server = server(None).await;
    let stt = MistralRealtimeStt::new("voxtral-mini-transcribe-realtime-2602")
        .base_url(server.http_url())
        .api_key("local-key");
    let tts = ElevenLabsStreamTts::new("eleven_flash_v2_5", "JBFqnCBsd6RMkjVDRZzb")
        .base_url(server.http_url())
        .api_key("local-key");
    let run = Run::start(
        LiveAgent::builder("cascade")
            .prompt("Repeat what you hear.")
            .config(cascade(&server, stt, tts)),
    );
    run.speak(question()).await;
    run.wait_count(
        "a completed response",
        1,
        |e| matches!(e, LiveEvent::ResponseDone(d) if d.status == ResponseStatus::Completed),
    )
    .await;
    let said = transcripts(&run);
    let finals: Vec<_> = said.iter().filter(|(f, _)| *f).collect();
    assert_eq!(finals.len(), 1, "{said:?}");
    assert!(finals[0].1.starts_with("[speech "), "{said:?}");
    assert!(run.count(|e| matches!(e, LiveEvent::SynthesizedAudio(_))) > 0);
    server.stop().await;
}
