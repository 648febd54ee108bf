//! A tool-call flood from a hostile Gemini Live peer, over a real socket (issue 13, item 5).
//!
//! One `toolCall` message carrying 60,000 function calls (from a flooding peer, the shared
//! `ScriptedPeer` of `tests/support/peer.rs` on 127.0.0.1): every call is answered exactly
//! once in the `toolResponse` (the executor's cap answers the excess with error outputs),
//! the tool runs at most the cap's number of times, a call repeated inside the message is
//! ignored, a cancellation of 60,000 ids (most unknown) is survived, and the conversation
//! goes on.
//! The protocol finds each call by a hash lookup and keeps a count of open calls per batch
//! (no scan per call or result); this test checks the outcome, never a duration.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use liveagent::{LiveAgent, LiveEvent, Tool, ToolError};
use liveagent_e2e::peer::ScriptedPeer;
use liveagent_e2e::*;
use serde_json::{json, Value};

const CALLS: usize = 60_000;

/// What the flooding peer saw.
#[derive(Default)]
struct FloodRecord {
    /// The `id` of every function response, in order.
    responses: Vec<String>,
    /// `toolResponse` messages received.
    tool_responses: u32,
    /// Text turns (`clientContent` with `turnComplete`) received.
    turns: u32,
}

/// The server's answer to a user turn: one text part and `turnComplete`.
fn answer(text: &str) -> Vec<String> {
    vec![
        json!({"serverContent": {"modelTurn": {"parts": [{"text": text}]}}}).to_string(),
        json!({"serverContent": {"turnComplete": true}}).to_string(),
    ]
}

/// A small misbehaving Gemini Live peer (the shared [`ScriptedPeer`] on 127.0.0.1): it
/// completes the setup, answers the first user turn with one `toolCall` of [`CALLS`] calls
/// (plus a repeat of the first id), then a `toolCallCancellation` naming every call again
/// plus 60,000 unknown ids, records every function response, answers the `toolResponse` and
/// later turns with text.
async fn flooding_peer() -> (ScriptedPeer, Arc<Mutex<FloodRecord>>) {
    let record = Arc::new(Mutex::new(FloodRecord::default()));
    let seen = record.clone();
    let peer = ScriptedPeer::gemini(move |_, v: &Value| {
        if v["clientContent"]["turnComplete"] == true {
            let n = {
                let mut r = seen.lock().unwrap();
                r.turns += 1;
                r.turns
            };
            if n == 1 {
                let mut calls: Vec<Value> = (0..CALLS)
                    .map(|i| json!({"id": format!("call_{i}"), "name": "noop", "args": {}}))
                    .collect();
                calls.push(json!({"id": "call_0", "name": "noop", "args": {}}));
                vec![json!({"toolCall": {"functionCalls": calls}}).to_string()]
            } else {
                answer(&format!("answer {n}"))
            }
        } else if let Some(responses) = v["toolResponse"]["functionResponses"].as_array() {
            let all = {
                let mut r = seen.lock().unwrap();
                r.tool_responses += 1;
                r.responses.extend(
                    responses
                        .iter()
                        .map(|f| f["id"].as_str().unwrap_or_default().to_owned()),
                );
                r.responses.len() >= CALLS
            };
            if !all {
                return Vec::new();
            }
            // Too late to cancel anything: every id is answered or unknown.
            let ids: Vec<String> = (0..2 * CALLS).map(|i| format!("call_{i}")).collect();
            let mut frames = vec![json!({"toolCallCancellation": {"ids": ids}}).to_string()];
            frames.extend(answer("done with the tools"));
            frames
        } else {
            Vec::new()
        }
    })
    // The toolResponse is one frame of 60,000 results: counted here rather than kept.
    .record_received(false)
    .start()
    .await;
    (peer, record)
}

#[actix_rt::test]
async fn sixty_thousand_calls_in_one_tool_call_are_each_answered_once() {
    init_tracing();
    let (peer, record) = flooding_peer().await;
    let runs = Arc::new(AtomicU32::new(0));
    let counter = runs.clone();
    let run = Run::start(
        LiveAgent::builder("assistant")
            .prompt("Test.")
            .config(
                liveagent::gemini::RealtimeConfig::new("gemini-live")
                    .base_url(peer.url())
                    .api_key("local-key"),
            )
            .tool(Tool::new("noop", "Does nothing.", move |_: Value| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, ToolError>("ok")
                }
            })),
    );
    run.wait_count("the session", 1, |e| {
        matches!(e, LiveEvent::SessionUpdated(_))
    })
    .await;
    run.conversation.context().send_text("flood me");
    run.wait_count(
        "the tool requests",
        1,
        |e| matches!(e, LiveEvent::ToolCallRequested(r) if r.calls.len() == CALLS),
    )
    .await;
    run.wait_count("a result for every call", CALLS, |e| {
        matches!(e, LiveEvent::ToolResult(_))
    })
    .await;
    run.wait_count("the model's answer after the tools", 1, |e| {
        matches!(e, LiveEvent::ResponseDone(d) if d.text.as_deref().unwrap_or_default().contains("done with the tools"))
    })
    .await;
    // The conversation is still alive and answering.
    run.conversation.context().send_text("and now?");
    run.wait_count("a response after the flood", 1, |e| {
        matches!(e, LiveEvent::ResponseDone(d) if d.text.as_deref().unwrap_or_default().contains("answer 2"))
    })
    .await;

    let ran = runs.load(Ordering::SeqCst) as usize;
    assert!(ran > 0 && ran <= 64, "the tool ran {ran} times");
    let results = run.collect(|e| match e {
        LiveEvent::ToolResult(r) => Some((r.call_id.to_string(), r.output.is_ok())),
        _ => None,
    });
    let ids: HashSet<&str> = results.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), CALLS, "one result per call");
    assert_eq!(results.len(), CALLS, "no result twice");
    assert_eq!(results.iter().filter(|(_, ok)| *ok).count(), ran);
    // On the wire: one function response per call, none twice, all in one toolResponse.
    let (responses, tool_responses) = {
        let r = record.lock().unwrap();
        (r.responses.clone(), r.tool_responses)
    };
    assert_eq!(responses.len(), CALLS);
    assert_eq!(responses.iter().collect::<HashSet<_>>().len(), CALLS);
    assert_eq!(tool_responses, 1, "one toolResponse for the batch");
    assert_eq!(
        run.count(|e| matches!(e, LiveEvent::SessionReconnecting(_))),
        0
    );
    run.conversation.stop().await;
    peer.stop().await;
}
