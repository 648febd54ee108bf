//! Cascade mode end to end: a real `LiveAgent` with a `CascadeConfig` (OpenAI-shaped STT,
//! streaming Chat Completions, OpenAI-shaped TTS) against the local server's fake
//! endpoints over real HTTP, with real speech in. Covers a spoken turn through all three
//! stages with a tool call mid-answer, barge-in during TTS (the next request's history
//! holds only what was heard), and an STT or TTS failure mid-turn (a clear error event, and
//! the conversation goes on).

use liveagent::audio::WavSink;
use liveagent::cascade::openai::{OpenAiStt, OpenAiTts};
use liveagent::cascade::{CascadeConfig, ChatLlm};
use liveagent::{LiveAgent, LiveEvent, ResponseStatus, Stage};
use liveagent_e2e::cascade::*;
use liveagent_e2e::*;
use liveagent_server::LocalServer;

const LONG: &str = r#"
[[turn]]
say = "Paris is the capital of France. It lies on the Seine river in the north of the country. It has more than two million inhabitants. Its museums are famous all over the world."

[[turn]]
say = "Sure."
"#;

fn cascade(server: &LocalServer, stt_model: &str, voice: &str) -> CascadeConfig {
    let base = format!("{}/v1", server.http_url());
    CascadeConfig::new(
        OpenAiStt::new(stt_model)
            .base_url(&base)
            .api_key("local-key"),
        ChatLlm::new("gpt-4o-mini")
            .base_url(&base)
            .api_key("local-key"),
        OpenAiTts::new("gpt-4o-mini-tts", voice)
            .base_url(&base)
            .api_key("local-key"),
    )
}

/// One spoken question: transcript, streamed answer, a tool call between two sentences,
/// audio of both parts, usage per stage.
#[actix_rt::test]
async fn spoken_turn_through_all_three_stages_with_a_tool_call() {
    let server = server(Some(WEATHER)).await;
    let run = Run::start(
        LiveAgent::builder("cascade")
            .prompt("You are a weather assistant.")
            .config(cascade(&server, "gpt-4o-mini-transcribe", "marin"))
            .tool(get_weather()),
    );
    run.speak(question()).await;
    // One response spans the call: the text before it is spoken while the tool runs, then
    // the LLM goes on with the result (as Gemini Live's model turn spans its `toolCall`).
    run.wait_count(
        "the response",
        1,
        |e| matches!(e, LiveEvent::ResponseDone(d) if d.status == ResponseStatus::Completed),
    )
    .await;

    let events = run.events();
    let kinds: Vec<_> = events.iter().map(|e| e.kind()).collect();
    let pos = |k| kinds.iter().position(|x| *x == k).unwrap_or(usize::MAX);
    use liveagent::EventKind::*;
    assert!(pos(SpeechStarted) < pos(SpeechStopped), "{}", run.summary());
    assert!(pos(SpeechStopped) < pos(InputTranscriptChunk));
    assert!(pos(InputTranscriptChunk) < pos(ResponseStarted));
    assert!(pos(ModelMessageChunk) < pos(SynthesizedAudio));
    assert!(pos(ModelMessageChunk) < pos(ToolCallRequested));
    assert!(
        pos(ToolCallRequested) < pos(ResponseDone),
        "{}",
        run.summary()
    );
    assert_eq!(run.count(|e| matches!(e, LiveEvent::ResponseStarted(_))), 1);
    let final_transcript = run.collect(|e| match e {
        LiveEvent::InputTranscriptChunk(t) if t.is_final => Some(t.text.to_string()),
        _ => None,
    });
    assert_eq!(final_transcript.len(), 1);
    assert!(
        final_transcript[0].starts_with("[speech "),
        "{final_transcript:?}"
    );
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
    let results = run.count(|e| matches!(e, LiveEvent::ToolResult(r) if r.output.is_ok()));
    assert_eq!(results, 1);
    let audio_items: std::collections::BTreeSet<String> = run
        .collect(|e| match e {
            LiveEvent::SynthesizedAudio(a) => Some(a.item_id.to_string()),
            _ => None,
        })
        .into_iter()
        .collect();
    assert_eq!(audio_items.len(), 1, "one audio item for the response");
    let said = run.collect(|e| match e {
        LiveEvent::OutputTranscriptChunk(t) if t.is_final => Some(t.text.to_string()),
        _ => None,
    });
    assert_eq!(
        said,
        ["Let me look that up for you. It is sunny and 21 degrees in Paris. Anything else?"]
    );

    let dones = responses_done(&run);
    let usage = dones[0].usage.as_ref().expect("usage");
    let stage = |s: Stage| usage.stages.iter().find(|u| u.stage == s).expect("stage");
    assert_eq!(stage(Stage::Stt).requests, 1);
    assert_eq!(
        stage(Stage::Llm).requests,
        2,
        "the call, then the answer with its result"
    );
    assert!(stage(Stage::Stt).audio_ms > 1000);
    assert!(stage(Stage::Llm).input_tokens > 0);
    assert!(stage(Stage::Tts).audio_ms > 0);
    assert!(stage(Stage::Tts).characters >= "Let me look that up for you.".len() as u64);

    // The follow-up request carries the tool call and its result, in order.
    let requests = chat_requests(&server);
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0]["stream"], true);
    assert_eq!(requests[0]["tools"][0]["function"]["name"], "get_weather");
    let msgs = requests[1]["messages"].as_array().unwrap();
    let roles: Vec<&str> = msgs.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "tool"]);
    assert_eq!(
        msgs[2]["tool_calls"][0]["function"]["arguments"],
        r#"{"city":"Paris"}"#
    );
    assert!(msgs[3]["content"].as_str().unwrap().contains("sunny"));
    run.conversation.stop().await;
    server.stop().await;
}

/// The user speaks over a long answer: the LLM and TTS stop, the player flushes, and the
/// next request's assistant message holds only the words that were played.
#[actix_rt::test]
async fn barge_in_cuts_the_history_to_what_was_heard() {
    let server = server(Some(LONG)).await;
    let run = Run::start(
        LiveAgent::builder("cascade")
            .config(cascade(&server, "gpt-4o-mini-transcribe", "marin").min_chars(5)),
    );
    let dir = std::env::temp_dir().join(format!("cascade-bargein-{}.wav", std::process::id()));
    let _sink = WavSink::new(run.conversation.context().clone(), &dir)
        .start()
        .expect("sink");
    run.speak(question()).await;
    run.wait_count("audio", 5, |e| matches!(e, LiveEvent::SynthesizedAudio(_)))
        .await;
    // Let about half a second play, then talk over it.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    run.speak(question()).await;
    run.wait_count("interruption", 1, |e| {
        matches!(e, LiveEvent::Interrupted(_))
    })
    .await;
    run.wait_count(
        "playback stop",
        1,
        |e| matches!(e, LiveEvent::PlaybackStopped(p) if p.interrupted),
    )
    .await;
    // The first answer may have completed (synthesized, only playing) before the user
    // spoke: wait for the second response's own end.
    run.wait_count("second response", 2, |e| {
        matches!(e, LiveEvent::ResponseStarted(_))
    })
    .await;
    let second = run.collect(|e| match e {
        LiveEvent::ResponseStarted(s) => Some(s.response_id.clone()),
        _ => None,
    })[1]
        .clone();
    run.wait_count("second answer", 1, |e| {
        matches!(e, LiveEvent::ResponseDone(d)
            if d.response_id == second && d.status == ResponseStatus::Completed)
    })
    .await;
    let requests = chat_requests(&server);
    assert_eq!(requests.len(), 2, "{}", run.summary());
    let msgs = requests[1]["messages"].as_array().unwrap();
    let assistant = msgs
        .iter()
        .find(|m| m["role"] == "assistant")
        .expect("assistant message");
    let heard = assistant["content"].as_str().unwrap_or("");
    let full = "Paris is the capital of France. It lies on the Seine river in the north of the country. It has more than two million inhabitants. Its museums are famous all over the world.";
    assert!(
        !heard.is_empty() && full.starts_with(heard),
        "heard {heard:?}"
    );
    assert!(heard.len() < full.len() / 2, "heard {heard:?}");
    // The local TTS is faster than real time, so the answer was fully synthesized (its
    // response done) and only playing when the user spoke: the player was told to stop.
    let interrupted = run.collect(|e| match e {
        LiveEvent::Interrupted(i) => i.item_id.clone(),
        _ => None,
    });
    let first_item = run.collect(|e| match e {
        LiveEvent::SynthesizedAudio(a) => Some(a.item_id.clone()),
        _ => None,
    })[0]
        .clone();
    assert_eq!(interrupted, vec![first_item]);
    run.conversation.stop().await;
    server.stop().await;
    let _ = std::fs::remove_file(dir);
}

/// STT fails on the first turn: an error event from the STT stage, no response; the next
/// turn works.
#[actix_rt::test]
async fn stt_failure_is_reported_and_the_conversation_goes_on() {
    let server = server(None).await;
    let run = Run::start(LiveAgent::builder("cascade").config(cascade(
        &server,
        "gpt-4o-mini-transcribe-fail-once-stt-e2e",
        "marin",
    )));
    run.speak(question()).await;
    run.wait_count(
        "stt error",
        1,
        |e| matches!(e, LiveEvent::ErrorEvent(x) if &*x.source == "cascade-stt" && !x.fatal),
    )
    .await;
    assert_eq!(run.count(|e| matches!(e, LiveEvent::ResponseStarted(_))), 0);
    run.speak(question()).await;
    run.wait_count(
        "answer",
        1,
        |e| matches!(e, LiveEvent::ResponseDone(d) if d.status == ResponseStatus::Completed),
    )
    .await;
    assert!(run.count(|e| matches!(e, LiveEvent::SynthesizedAudio(_))) > 0);
    run.conversation.stop().await;
    server.stop().await;
}

/// TTS breaks mid-stream: an error event from the TTS stage, the response ends as failed
/// with the history cut to what was synthesized; the next turn is spoken normally.
#[actix_rt::test]
async fn tts_failure_mid_answer_is_reported_and_the_conversation_goes_on() {
    let server = server(Some(LONG)).await;
    let run = Run::start(LiveAgent::builder("cascade").config(
        cascade(&server, "gpt-4o-mini-transcribe", "marin-fail-once-tts-e2e").min_chars(5),
    ));
    run.speak(question()).await;
    run.wait_count(
        "failed response",
        1,
        |e| matches!(e, LiveEvent::ResponseDone(d) if d.status == ResponseStatus::Failed),
    )
    .await;
    let errors = run.count(
        |e| matches!(e, LiveEvent::ErrorEvent(x) if &*x.source == "cascade-tts" && !x.fatal),
    );
    assert_eq!(errors, 1, "{}", run.summary());
    run.speak(question()).await;
    run.wait_count(
        "answer",
        1,
        |e| matches!(e, LiveEvent::ResponseDone(d) if d.status == ResponseStatus::Completed),
    )
    .await;
    let requests = chat_requests(&server);
    let msgs = requests[1]["messages"].as_array().unwrap();
    let assistant = msgs.iter().find(|m| m["role"] == "assistant").unwrap();
    let kept = assistant["content"].as_str().unwrap_or("");
    assert!(kept.len() < LONG.len() / 2, "kept {kept:?}");
    run.conversation.stop().await;
    server.stop().await;
}

/// A key the provider refuses cannot work on the next turn either: the first 401 ends the
/// session with one fatal auth error (no retry every turn), and the key never shows.
#[actix_rt::test]
async fn a_refused_key_is_one_fatal_error_that_closes_the_session() {
    init_tracing();
    let mut config = liveagent_server::ServerConfig::default().recording_in_memory();
    config.api_key = Some("the-right-key".into());
    let server = LocalServer::start(config).await.expect("server");
    let base = format!("{}/v1", server.http_url());
    let key = "sk-wrong-key-0123";
    let run = Run::start(
        LiveAgent::builder("cascade").config(CascadeConfig::new(
            OpenAiStt::new("gpt-4o-mini-transcribe")
                .base_url(&base)
                .api_key(key),
            ChatLlm::new("gpt-4o-mini").base_url(&base).api_key(key),
            OpenAiTts::new("gpt-4o-mini-tts", "marin")
                .base_url(&base)
                .api_key(key),
        )),
    );
    run.speak(question()).await;
    run.wait_count("session closed", 1, |e| {
        matches!(e, LiveEvent::SessionClosed(_))
    })
    .await;
    let fatal = run.collect(|e| match e {
        LiveEvent::ErrorEvent(x) if x.fatal => Some(x.error.clone()),
        _ => None,
    });
    assert_eq!(fatal.len(), 1, "{}", run.summary());
    assert_eq!(fatal[0].kind, liveagent::ErrorKind::Auth);
    assert!(!format!("{:?}", run.events()).contains(key));
    run.conversation.stop().await;
    server.stop().await;
}
