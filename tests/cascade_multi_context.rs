//! Cascade mode with ElevenLabs' multi-context TTS socket, end to end: a real `LiveAgent`
//! (OpenAI-shaped STT and chat, `ElevenLabsMultiTts`) against the local server's fakes over
//! real sockets. One socket serves the whole conversation (a context per answer, its
//! sentences streamed in), it is kept alive between turns, barge-in closes just the
//! answer's context and none of that context's late audio is published, and a socket cut
//! mid-answer is a clear error after which the next turn opens a new socket and works.

use std::time::Duration;

use liveagent::cascade::elevenlabs::ElevenLabsMultiTts;
use liveagent::cascade::openai::OpenAiStt;
use liveagent::cascade::{CascadeConfig, ChatLlm};
use liveagent::tools::{tool, ToolError};
use liveagent::{LiveAgent, LiveEvent, ResponseStatus, Stage};
use liveagent_e2e::*;
use liveagent_server::{LocalServer, Pacing, Scenario, ServerConfig};
use serde_json::Value;

const TWO_TURNS: &str = r#"
[[turn]]
say = "It is sunny in Paris. Take a hat with you. Have a nice day."

[[turn]]
say = "It is raining in London. Take an umbrella."
"#;

/// The first answer's context stays open while a slow tool runs (the LLM is not done).
const SLOW_TOOL: &str = r#"
[[turn]]
say = "Let me look that up for you. This may take a moment."
call = "slow_lookup"
args = { city = "Paris" }
then_say = "It is {output}."

[[turn]]
say = "Sure."
"#;

/// Looks the weather up, slowly.
///
/// # Arguments
/// * `city` - The city.
#[tool(crate = liveagent::tools)]
async fn slow_lookup(city: String) -> Result<String, ToolError> {
    tokio::time::sleep(Duration::from_secs(3)).await;
    Ok(format!("sunny in {city}"))
}

fn cascade(server: &LocalServer, tts: ElevenLabsMultiTts) -> CascadeConfig {
    let base = format!("{}/v1", server.http_url());
    CascadeConfig::new(
        OpenAiStt::new("gpt-4o-mini-transcribe")
            .base_url(&base)
            .api_key("local-key"),
        ChatLlm::new("gpt-4o-mini")
            .base_url(&base)
            .api_key("local-key"),
        tts.base_url(server.http_url()).api_key("local-key"),
    )
    .min_chars(5)
}

/// A server for `scenario`, pacing audio at the rate it plays when `paced`.
async fn server_with(scenario: &str, paced: bool) -> LocalServer {
    init_tracing();
    let mut config = ServerConfig::scripted(Scenario::from_toml(scenario).expect("scenario"));
    config.pacing = if paced {
        Pacing::RealTime
    } else {
        Pacing::AsFastAsPossible
    };
    LocalServer::start(config.recording_in_memory())
        .await
        .expect("local server")
}

/// The messages the fake sockets received, parsed, in order.
fn received(server: &LocalServer) -> Vec<Value> {
    server
        .recording()
        .iter()
        .filter_map(|l| l.split_once("cascade ws <- ").map(|(_, j)| j.to_owned()))
        .filter_map(|j| serde_json::from_str(&j).ok())
        .collect()
}

/// How many multi-stream-input sockets the server accepted.
fn sockets(server: &LocalServer) -> usize {
    server
        .recording()
        .iter()
        .filter(|l| l.contains("elevenlabs multi-stream-input: voice="))
        .count()
}

/// The context ids the client opened (their first message: one space), in order.
fn contexts(sent: &[Value]) -> Vec<String> {
    sent.iter()
        .filter(|m| m["text"] == " ")
        .filter_map(|m| m["context_id"].as_str().map(str::to_owned))
        .collect()
}

fn completed(run: &Run) -> usize {
    run.count(|e| matches!(e, LiveEvent::ResponseDone(d) if d.status == ResponseStatus::Completed))
}

/// Two spoken turns, each answered in several sentences: one socket, one context per
/// answer with every sentence streamed into it, then flush and close; the audio of both
/// answers is published; the socket is kept alive while nobody speaks (keep-alives within
/// the server's 1 s inactivity timeout).
#[actix_rt::test]
async fn one_socket_for_the_conversation_and_a_context_per_answer() {
    let server = server_with(TWO_TURNS, false).await;
    let tts = ElevenLabsMultiTts::new("eleven_flash_v2_5", "JBFqnCBsd6RMkjVDRZzb")
        .inactivity_timeout(1)
        .keepalive(Duration::from_millis(300));
    let run = Run::start(LiveAgent::builder("cascade").config(cascade(&server, tts)));
    run.speak(question()).await;
    run.wait_count(
        "the first answer",
        1,
        |e| matches!(e, LiveEvent::ResponseDone(d) if d.status == ResponseStatus::Completed),
    )
    .await;
    // Longer than the server's inactivity timeout: only keep-alives hold the socket.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    run.speak(question()).await;
    run.wait_count(
        "the second answer",
        2,
        |e| matches!(e, LiveEvent::ResponseDone(d) if d.status == ResponseStatus::Completed),
    )
    .await;
    assert_eq!(completed(&run), 2, "{}", run.summary());

    assert_eq!(sockets(&server), 1, "one socket for the conversation");
    let sent = received(&server);
    let ids = contexts(&sent);
    assert_eq!(ids.len(), 2, "a context per answer: {sent:?}");
    assert_ne!(ids[0], ids[1]);
    for (id, sentences) in ids.iter().zip([3, 2]) {
        let texts: Vec<&str> = sent
            .iter()
            .filter(|m| m["context_id"] == id.as_str() && m["text"] != " ")
            .filter_map(|m| m["text"].as_str())
            .filter(|t| !t.trim().is_empty())
            .collect();
        assert_eq!(texts.len(), sentences, "{id}: {texts:?}");
        assert!(texts.iter().all(|t| t.ends_with(' ')), "{texts:?}");
        let init = sent
            .iter()
            .find(|m| m["context_id"] == id.as_str())
            .unwrap();
        assert!(init["voice_settings"].is_object(), "{init}");
        let flush = sent
            .iter()
            .position(|m| m["context_id"] == id.as_str() && m["flush"] == true);
        let close = sent
            .iter()
            .position(|m| m["context_id"] == id.as_str() && m["close_context"] == true);
        assert!(flush.is_some() && flush < close, "{id}: flush, then close");
    }
    assert!(
        sent.iter()
            .any(|m| m.as_object().is_some_and(|o| o.len() == 1) && m["text"] == ""),
        "keep-alives between the answers: {sent:?}"
    );

    // Both answers were heard, whole: about as long as the fake's speech for their text.
    let audio_ms: u64 = run
        .collect(|e| match e {
            LiveEvent::SynthesizedAudio(a) => Some(a.audio.duration_ms()),
            _ => None,
        })
        .iter()
        .sum();
    assert!(audio_ms > 4000, "{audio_ms} ms");
    let done = run.collect(|e| match e {
        LiveEvent::ResponseDone(d) => Some((**d).clone()),
        _ => None,
    });
    let usage = done[0].usage.as_ref().expect("usage");
    let tts = usage
        .stages
        .iter()
        .find(|u| u.stage == Stage::Tts)
        .expect("tts usage");
    assert_eq!(&*tts.provider, "elevenlabs");
    assert_eq!(tts.requests, 1, "one context");
    assert!(tts.audio_ms > 1000 && tts.characters > 40, "{tts:?}");
    run.conversation.stop().await;
    server.stop().await;
}

/// The user speaks over an answer while its audio still streams (and a slow tool keeps it
/// going): the answer's context is closed (without a flush), the audio of that context
/// that was already on the way (the fake's `late-audio` voice sends one more message after
/// the close) is never published, and the next answer is spoken in a new context of the
/// same socket.
#[actix_rt::test]
async fn barge_in_closes_the_context_and_drops_its_late_audio() {
    let server = server_with(SLOW_TOOL, true).await;
    let tts = ElevenLabsMultiTts::new("eleven_flash_v2_5", "voice-late-audio");
    let run = Run::start(
        LiveAgent::builder("cascade")
            .config(cascade(&server, tts))
            .tool(slow_lookup()),
    );
    run.speak(question()).await;
    run.wait_count("audio", 5, |e| matches!(e, LiveEvent::SynthesizedAudio(_)))
        .await;
    run.speak(question()).await;
    run.wait_count("interruption", 1, |e| {
        matches!(e, LiveEvent::Interrupted(_))
    })
    .await;
    run.wait_count(
        "the second answer",
        1,
        |e| matches!(e, LiveEvent::ResponseDone(d) if d.status == ResponseStatus::Completed),
    )
    .await;

    let events = run.events();
    let cut = events
        .iter()
        .position(|e| matches!(e, LiveEvent::Interrupted(_)))
        .unwrap();
    let LiveEvent::Interrupted(i) = &events[cut] else {
        unreachable!()
    };
    let first_item = i.item_id.clone().expect("the interrupted item");
    let late = events[cut..]
        .iter()
        .filter(|e| matches!(e, LiveEvent::SynthesizedAudio(a) if a.item_id == first_item))
        .count();
    assert_eq!(late, 0, "audio of the cancelled answer after the barge-in");
    assert!(
        events[cut..].iter().any(
            |e| matches!(e, LiveEvent::ResponseDone(d) if d.status == ResponseStatus::Cancelled)
        ),
        "{}",
        run.summary()
    );

    assert_eq!(sockets(&server), 1, "barge-in keeps the socket");
    let sent = received(&server);
    let ids = contexts(&sent);
    assert_eq!(ids.len(), 2, "{sent:?}");
    let close = sent
        .iter()
        .position(|m| m["context_id"] == ids[0].as_str() && m["close_context"] == true)
        .expect("close_context for the interrupted answer");
    assert!(
        !sent[..close]
            .iter()
            .any(|m| m["context_id"] == ids[0].as_str() && m["flush"] == true),
        "barge-in does not flush"
    );
    // The server did send audio of the closed context after the close (late audio).
    let lines = server.recording();
    let closed_at = lines
        .iter()
        .position(|l| l.contains("cascade ws <- ") && l.contains("close_context"))
        .unwrap();
    let late_sent = lines[closed_at..]
        .iter()
        .filter(|l| {
            l.contains("cascade ws -> ")
                && l.contains("\"audio\"")
                && l.contains(&format!("\"contextId\":\"{}\"", ids[0]))
        })
        .count();
    assert!(late_sent >= 1, "the fake sent late audio");
    run.conversation.stop().await;
    server.stop().await;
}

/// The socket is cut mid-answer: one non-fatal error from the TTS stage, the answer ends
/// failed, and the next turn opens a new socket and is spoken whole.
#[actix_rt::test]
async fn a_socket_cut_mid_answer_is_an_error_and_the_next_turn_works() {
    let server = server_with(TWO_TURNS, false).await;
    let tts = ElevenLabsMultiTts::new("eleven_flash_v2_5", "voice-fail-once-multi-e2e");
    let run = Run::start(LiveAgent::builder("cascade").config(cascade(&server, tts)));
    run.speak(question()).await;
    run.wait_count(
        "a failed answer",
        1,
        |e| matches!(e, LiveEvent::ResponseDone(d) if d.status == ResponseStatus::Failed),
    )
    .await;
    let errors = run.collect(|e| match e {
        LiveEvent::ErrorEvent(x) if &*x.source == "cascade-tts" && !x.fatal => {
            Some(x.error.to_string())
        }
        _ => None,
    });
    assert_eq!(errors.len(), 1, "{}", run.summary());
    assert!(errors[0].contains("elevenlabs-multi-tts"), "{errors:?}");

    run.speak(question()).await;
    run.wait_count(
        "a completed answer",
        1,
        |e| matches!(e, LiveEvent::ResponseDone(d) if d.status == ResponseStatus::Completed),
    )
    .await;
    assert_eq!(sockets(&server), 2, "a new socket after the cut");
    assert_eq!(
        run.count(|e| matches!(e, LiveEvent::ErrorEvent(_))),
        1,
        "{}",
        run.summary()
    );
    run.conversation.stop().await;
    server.stop().await;
}
