//! `Conversation::messages` is bounded by its own byte bound, through the public API against
//! the local server (issue 13, item 4: the soak benchmark showed the messages, kept apart
//! from `Conversation::history`, among what a long conversation grows until its bound; the
//! bound is now configurable with `LiveAgentBuilder::messages_limit`, default
//! `MESSAGES_MAX_BYTES`).
//!
//! Answers of about 3 KB each under an 8 KiB bound leave at most 8 KiB of message text, the
//! newest answer kept and the first gone; the same conversation under the default bound keeps
//! every message.

use liveagent::{LiveAgent, LiveEvent, MESSAGES_MAX_BYTES};
use liveagent_e2e::*;

/// A scenario whose every turn says `text` over 100 ms of audio.
fn scenario(turns: usize, text: &str) -> String {
    let mut toml = String::new();
    for i in 0..turns {
        toml.push_str(&format!(
            "[[turn]]\nsteps = [ {{ say = \"answer {i}: {text}\", audio_ms = 100 }} ]\n"
        ));
    }
    toml
}

/// Runs `turns` text turns (each answered with about 3 KB) and returns the messages once
/// the last answer is among them.
async fn messages_after(limit: Option<usize>, turns: usize) -> Vec<(&'static str, String)> {
    let text = "many words of a long answer ".repeat(110);
    let server = server(Some(&scenario(turns, &text))).await;
    let mut builder = LiveAgent::builder("assistant")
        .prompt("Test.")
        .config(openai_config(&server));
    if let Some(bytes) = limit {
        builder = builder.messages_limit(bytes);
    }
    let run = Run::start(builder);
    run.wait_count("session updated", 1, |e| {
        matches!(e, LiveEvent::SessionUpdated(_))
    })
    .await;
    for i in 0..turns {
        run.conversation.send_text(format!("turn {i}"));
        run.wait_count("an answer", i + 1, |e| {
            matches!(e, LiveEvent::ResponseDone(_))
        })
        .await;
    }
    // The messages are kept by their own subscriber: wait until the last answer is in.
    let last = format!("answer {}:", turns - 1);
    let deadline = std::time::Instant::now() + FAILSAFE;
    let messages = loop {
        let messages = run.conversation.messages();
        if messages
            .iter()
            .any(|(role, t)| *role == "assistant" && t.starts_with(&last))
        {
            break messages;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the newest answer never reached the messages"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    run.conversation.stop().await;
    drop(server);
    messages
}

#[actix_rt::test]
async fn messages_are_bounded_by_bytes() {
    const BOUND: usize = 8 * 1024;
    let messages = messages_after(Some(BOUND), 8).await;
    let bytes: usize = messages.iter().map(|(_, t)| t.len()).sum();
    assert!(
        bytes <= BOUND,
        "{bytes} bytes of messages kept, bound {BOUND}"
    );
    assert!(
        !messages.iter().any(|(_, t)| t.starts_with("answer 0:")),
        "the first answer is still kept"
    );
    assert!(messages.len() >= 2, "{messages:?}");
}

#[actix_rt::test]
async fn the_default_bound_keeps_a_short_conversation() {
    let messages = messages_after(None, 4).await;
    let answers = messages.iter().filter(|(r, _)| *r == "assistant").count();
    let users = messages.iter().filter(|(r, _)| *r == "user").count();
    assert_eq!((users, answers), (4, 4), "{messages:?}");
    assert_eq!(MESSAGES_MAX_BYTES, 128 * 1024);
}
