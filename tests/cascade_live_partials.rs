//! Live partial transcripts in cascade mode (issue 16): a streaming speech-to-text stage's
//! session opens when the turn detector hears speech start and is fed the audio as it
//! arrives, so partial transcripts reach the event stream while the user is still speaking
//! when the provider's model streams them (ElevenLabs' realtime Scribe, Mistral's Voxtral
//! realtime, OpenAI's `gpt-realtime-whisper`); OpenAI's other models transcribe on the
//! commit, so their partials follow the end of the turn.
//!
//! Through the public `LiveAgent` API against the local server's fakes (real sockets, real
//! JSON, real audio). The order is made deterministic without timing: the test speaks a
//! multi-second utterance with no trailing silence (so the turn cannot end), waits for a
//! partial, and only then sends the silence that ends the turn. A one-shot STT (opened at
//! turn end) can never pass the wait.

use liveagent::cascade::elevenlabs::{ElevenLabsRealtimeStt, ElevenLabsStreamTts};
use liveagent::cascade::mistral::MistralRealtimeStt;
use liveagent::cascade::openai::OpenAiRealtimeStt;
use liveagent::cascade::{CascadeConfig, Stt};
use liveagent::{ControlCommand, LiveAgent, LiveEvent, ResponseStatus, SessionControl};
use liveagent_e2e::cascade::*;
use liveagent_e2e::*;
use liveagent_server::LocalServer;

fn cascade(server: &LocalServer, stt: impl Stt) -> CascadeConfig {
    let tts = ElevenLabsStreamTts::new("eleven_flash_v2_5", "JBFqnCBsd6RMkjVDRZzb")
        .base_url(server.http_url())
        .api_key("local-key");
    CascadeConfig::new(stt, chat_llm(server), tts)
}

fn position(events: &[LiveEvent], f: impl Fn(&LiveEvent) -> bool) -> Option<usize> {
    events.iter().position(f)
}

/// Speaks a multi-second utterance into a cascade with `stt` and no silence after it (so
/// the turn cannot end), waits for a partial transcript, then sends the silence that ends
/// the turn. Checks the order (speech started < partial < speech stopped) and that the one
/// final transcript covers the whole utterance and extends the partials.
async fn partial_while_speaking(server: &LocalServer, stt: impl Stt) -> Run {
    let run = Run::start(
        LiveAgent::builder("cascade")
            .prompt("Repeat what you hear.")
            .config(cascade(server, stt)),
    );
    // A multi-second utterance, no silence after it: the turn stays open.
    let long = speech_pcm(
        "What is two plus three, and what is the weather like in Paris today?",
        24_000,
    );
    assert!(long.len() > 2 * 24_000, "the utterance is multi-second");
    mic(&run, &long).await;
    run.wait_count(
        "a partial transcript while speaking",
        1,
        |e| matches!(e, LiveEvent::InputTranscriptChunk(t) if !t.is_final),
    )
    .await;
    assert_eq!(
        run.count(|e| matches!(e, LiveEvent::SpeechStopped(_))),
        0,
        "{}",
        run.summary()
    );
    // Now the silence that ends the turn.
    mic(&run, &silence_pcm(1200, 24_000)).await;
    run.wait_count(
        "a completed response",
        1,
        |e| matches!(e, LiveEvent::ResponseDone(d) if d.status == ResponseStatus::Completed),
    )
    .await;

    let events = run.events();
    let started = position(&events, |e| matches!(e, LiveEvent::SpeechStarted(_)));
    let partial = position(
        &events,
        |e| matches!(e, LiveEvent::InputTranscriptChunk(t) if !t.is_final),
    );
    let stopped = position(&events, |e| matches!(e, LiveEvent::SpeechStopped(_)));
    let finals = finals(&run);
    let (Some(started), Some(partial), Some(stopped)) = (started, partial, stopped) else {
        panic!("missing turn events: {}", run.summary());
    };
    assert!(started < partial && partial < stopped, "{}", run.summary());
    // One final transcript, of the whole utterance (the fake labels the speech it heard:
    // the complete utterance is well over a second of speech).
    assert_eq!(finals.len(), 1, "{finals:?}");
    let secs: f64 = finals[0]
        .trim_start_matches("[speech ")
        .trim_end_matches(" s]")
        .parse()
        .unwrap_or_else(|_| panic!("a speech label: {finals:?}"));
    assert!(
        secs >= 2.0,
        "the final covers the whole utterance: {finals:?}"
    );
    // The partials lead up to the final.
    let partials = partials(&run).concat();
    assert!(
        finals[0].starts_with(partials.trim()),
        "{partials:?} {finals:?}"
    );
    run
}

fn finals(run: &Run) -> Vec<String> {
    run.collect(|e| match e {
        LiveEvent::InputTranscriptChunk(t) if t.is_final => Some(t.text.to_string()),
        _ => None,
    })
}

fn partials(run: &Run) -> Vec<String> {
    run.collect(|e| match e {
        LiveEvent::InputTranscriptChunk(t) if !t.is_final => Some(t.text.to_string()),
        _ => None,
    })
}

/// ElevenLabs' realtime Scribe sends `partial_transcript`s as the audio arrives.
#[actix_rt::test]
async fn partials_arrive_while_the_user_speaks() {
    let server = server(None).await;
    let stt = ElevenLabsRealtimeStt::new("scribe_v2_realtime")
        .base_url(server.http_url())
        .api_key("local-key");
    partial_while_speaking(&server, stt).await;
    // The audio went to the socket before the commit, in several chunks.
    let frames: Vec<serde_json::Value> = ws_received(&server)
        .into_iter()
        .filter(|v| v["message_type"] == "input_audio_chunk")
        .collect();
    let commits = frames.iter().filter(|v| v["commit"] == true).count();
    assert_eq!(commits, 1, "one commit");
    assert!(
        frames.len() > 10,
        "audio streamed in pieces: {}",
        frames.len()
    );
    assert_eq!(frames.last().map(|v| v["commit"] == true), Some(true));
    server.stop().await;
}

/// OpenAI's natively streaming transcription model (`gpt-realtime-whisper`) sends
/// `…input_audio_transcription.delta`s while the audio is appended, before the commit.
#[actix_rt::test]
async fn openai_streaming_model_partials_arrive_while_the_user_speaks() {
    let server = server(None).await;
    let stt = OpenAiRealtimeStt::new("gpt-realtime-whisper")
        .delay("low")
        .base_url(format!("{}/v1", server.http_url()))
        .api_key("local-key");
    partial_while_speaking(&server, stt).await;
    // The transcription socket's messages (the TTS socket's carry no `type`).
    let sent: Vec<serde_json::Value> = ws_received(&server)
        .into_iter()
        .filter(|v| v["type"].is_string())
        .collect();
    let update = sent
        .iter()
        .find(|v| v["type"] == "session.update")
        .expect("session.update");
    let input = &update["session"]["audio"]["input"];
    assert_eq!(input["transcription"]["model"], "gpt-realtime-whisper");
    assert_eq!(input["transcription"]["delay"], "low");
    assert!(input["turn_detection"].is_null(), "{update}");
    let appends = sent
        .iter()
        .filter(|v| v["type"] == "input_audio_buffer.append")
        .count();
    let commits: Vec<usize> = sent
        .iter()
        .enumerate()
        .filter(|(_, v)| v["type"] == "input_audio_buffer.commit")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(commits.len(), 1, "one commit");
    assert!(appends > 10, "audio streamed in pieces: {appends}");
    assert_eq!(commits[0], sent.len() - 1, "the commit comes last");
    server.stop().await;
}

/// Mistral's Voxtral realtime model streams `transcription.text.delta`s while the audio is
/// appended (about `target_streaming_delay_ms` behind the speech), before the flush.
#[actix_rt::test]
async fn mistral_partials_arrive_while_the_user_speaks() {
    let server = server(None).await;
    let stt = MistralRealtimeStt::new("voxtral-mini-transcribe-realtime-2602")
        .streaming_delay(std::time::Duration::from_millis(240))
        .base_url(server.http_url())
        .api_key("local-key");
    partial_while_speaking(&server, stt).await;
    let sent = ws_received(&server);
    let update = sent
        .iter()
        .find(|v| v["type"] == "session.update")
        .expect("session.update");
    assert_eq!(update["session"]["target_streaming_delay_ms"], 240);
    let kinds: Vec<&str> = sent.iter().filter_map(|v| v["type"].as_str()).collect();
    let flush = kinds.iter().position(|k| *k == "input_audio.flush");
    assert_eq!(
        flush,
        kinds.len().checked_sub(2),
        "flush then end, after the audio: {kinds:?}"
    );
    assert_eq!(kinds.last(), Some(&"input_audio.end"));
    server.stop().await;
}

/// The OpenAI models that transcribe on the commit (`gpt-4o-mini-transcribe` here) give no
/// partial before the turn ends: every delta follows `SpeechStopped` (the stage streams the
/// audio during the turn all the same, so only the transcription is left after it).
#[actix_rt::test]
async fn openai_commit_time_models_send_partials_only_after_the_turn() {
    let server = server(None).await;
    let stt = OpenAiRealtimeStt::new("gpt-4o-mini-transcribe")
        .base_url(format!("{}/v1", server.http_url()))
        .api_key("local-key");
    let run = Run::start(
        LiveAgent::builder("cascade")
            .prompt("Repeat what you hear.")
            .config(cascade(&server, stt)),
    );
    run.speak(question()).await;
    run.wait_count(
        "a completed response",
        1,
        |e| matches!(e, LiveEvent::ResponseDone(d) if d.status == ResponseStatus::Completed),
    )
    .await;
    let events = run.events();
    let stopped = position(&events, |e| matches!(e, LiveEvent::SpeechStopped(_)))
        .unwrap_or_else(|| panic!("{}", run.summary()));
    let partial_at: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, LiveEvent::InputTranscriptChunk(t) if !t.is_final))
        .map(|(i, _)| i)
        .collect();
    assert!(!partial_at.is_empty(), "{}", run.summary());
    assert!(partial_at.iter().all(|&i| i > stopped), "{}", run.summary());
    assert_eq!(partials(&run).concat(), finals(&run).concat());
    // The audio was appended during the turn: appends come before the one commit.
    let kinds: Vec<String> = ws_received(&server)
        .iter()
        .filter_map(|v| v["type"].as_str().map(str::to_owned))
        .collect();
    assert!(
        kinds
            .iter()
            .filter(|k| *k == "input_audio_buffer.append")
            .count()
            > 3
    );
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("input_audio_buffer.commit")
    );
    server.stop().await;
}

/// Clearing the input mid-turn closes the streaming session with a typed error on the
/// event stream (`cancelled`), and the next turn is transcribed normally.
#[actix_rt::test]
async fn clearing_the_input_cancels_the_live_session() {
    let server = server(None).await;
    let stt = ElevenLabsRealtimeStt::new("scribe_v2_realtime")
        .base_url(server.http_url())
        .api_key("local-key");
    let run = Run::start(
        LiveAgent::builder("cascade")
            .prompt("Repeat what you hear.")
            .config(cascade(&server, stt)),
    );
    mic(&run, question()).await;
    run.wait_count(
        "a partial transcript while speaking",
        1,
        |e| matches!(e, LiveEvent::InputTranscriptChunk(t) if !t.is_final),
    )
    .await;
    run.conversation.publish(SessionControl {
        command: ControlCommand::ClearInput,
    });
    run.wait_count("the cancelled error", 1, |e| {
        matches!(e, LiveEvent::ErrorEvent(err) if err.error.code.as_deref() == Some("cancelled"))
    })
    .await;
    run.speak(question()).await;
    run.wait_count(
        "a completed response",
        1,
        |e| matches!(e, LiveEvent::ResponseDone(d) if d.status == ResponseStatus::Completed),
    )
    .await;
    let finals = run.count(|e| matches!(e, LiveEvent::InputTranscriptChunk(t) if t.is_final));
    assert_eq!(finals, 1, "{}", run.summary());
    server.stop().await;
}
