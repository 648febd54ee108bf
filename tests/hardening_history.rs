//! `Conversation::history` is bounded by bytes as well as by events, through the public API
//! against the local server (issue 13, item 4: the soak benchmark found the history bounded by
//! count only, 100,000 events whatever their size; the scale work bounded it by bytes at the
//! same time, with a unit test in `conversation.rs`; this checks it end to end).
//!
//! Answers with about 3 KB of transcript each, under a 16 KiB bound, leave at most 16 KiB of
//! events plus a quarter of that for the text chunks (`LiveEvent::approx_bytes`, which the
//! bound counts plus each event's in-memory size), the newest answer still in it and the
//! first gone; an event bound holds the same way for the events besides the text chunks; a
//! short conversation under the default bounds keeps every answer.

use liveagent::{LiveAgent, LiveEvent};
use liveagent_e2e::*;

/// A scenario whose every turn says `text` over 100 ms of audio (the transcript's length
/// does not make the audio long, so the test stays fast).
fn scenario(turns: usize, text: &str) -> String {
    let mut toml = String::new();
    for _ in 0..turns {
        toml.push_str(&format!(
            "[[turn]]\nsteps = [ {{ say = \"{text}\", audio_ms = 100 }} ]\n"
        ));
    }
    toml
}

fn is_done(e: &LiveEvent) -> bool {
    matches!(e, LiveEvent::ResponseDone(_))
}

/// Runs `turns` text turns and returns the run once every answer is done.
async fn converse(
    limits: Option<(usize, usize)>,
    turns: usize,
    text: &str,
) -> (Run, LocalServerGuard) {
    let server = server(Some(&scenario(turns, text))).await;
    let mut builder = LiveAgent::builder("assistant")
        .prompt("Test.")
        .config(openai_config(&server));
    if let Some((events, bytes)) = limits {
        builder = builder.history_limit(events, bytes);
    }
    let run = Run::start(builder);
    run.wait_count("session updated", 1, |e| {
        matches!(e, LiveEvent::SessionUpdated(_))
    })
    .await;
    for i in 0..turns {
        run.conversation.send_text(format!("turn {i}"));
        run.wait_count("an answer", i + 1, is_done).await;
    }
    // The history is kept by its own subscriber: wait until it has the newest answer too.
    let last = last_response_id(&run);
    let deadline = std::time::Instant::now() + FAILSAFE;
    while !run
        .conversation
        .history()
        .iter()
        .any(|e| matches!(e, LiveEvent::ResponseDone(d) if *d.response_id == *last))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the newest answer never reached the history"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    (run, LocalServerGuard(server))
}

/// Keeps the server alive as long as the run.
struct LocalServerGuard(#[allow(dead_code)] liveagent_server::LocalServer);

fn is_text_chunk(e: &LiveEvent) -> bool {
    matches!(
        e,
        LiveEvent::ModelMessageChunk(_)
            | LiveEvent::OutputTranscriptChunk(_)
            | LiveEvent::InputTranscriptChunk(_)
    )
}

fn last_response_id(run: &Run) -> String {
    run.collect(|e| match e {
        LiveEvent::ResponseDone(d) => Some(d.response_id.to_string()),
        _ => None,
    })
    .pop()
    .expect("an answer")
}

#[actix_rt::test]
async fn history_is_bounded_by_bytes() {
    const BOUND: usize = 16 * 1024;
    let text = "many words of a long answer ".repeat(110); // about 3 KB
    let (run, _server) = converse(Some((100_000, BOUND)), 12, &text).await;
    let history = run.conversation.history();
    let bytes: usize = history.iter().map(LiveEvent::approx_bytes).sum();
    // `bytes` for the other events plus a quarter of it for the text chunks.
    let limit = BOUND + BOUND / 4;
    assert!(bytes <= limit, "{bytes} bytes kept, bound {limit}");
    // The newest answer is kept (`converse` waited for it); the first one is gone.
    let first = run
        .collect(|e| match e {
            LiveEvent::ResponseDone(d) => Some(d.response_id.to_string()),
            _ => None,
        })
        .remove(0);
    assert!(!history
        .iter()
        .any(|e| matches!(e, LiveEvent::ResponseDone(d) if *d.response_id == *first)));
    run.conversation.stop().await;
}

#[actix_rt::test]
async fn history_is_bounded_by_events() {
    let (run, _server) = converse(Some((8, 1 << 30)), 5, "A short answer.").await;
    // The event bound counts the events besides the text chunks (bounded by bytes).
    let history = run.conversation.history();
    let kept = history.iter().filter(|e| !is_text_chunk(e)).count();
    assert!(kept <= 8, "{kept} events kept besides the text chunks");
    let seen = run.count(|e| {
        !is_text_chunk(e)
            && !matches!(
                e,
                LiveEvent::SynthesizedAudio(_) | LiveEvent::RecordedAudio(_)
            )
    });
    assert!(
        seen > 8,
        "only {seen} control events: the bound was not reached"
    );
    run.conversation.stop().await;
}

#[actix_rt::test]
async fn a_short_conversation_keeps_everything_by_default() {
    let (run, _server) = converse(None, 3, "A short answer.").await;
    let answers = run
        .conversation
        .history()
        .iter()
        .filter(|e| is_done(e))
        .count();
    assert_eq!(answers, 3);
    run.conversation.stop().await;
}
