//! Floods from a hostile provider, over a real socket (issue 13, items 4 and 5): the local
//! server's scripted model injects raw OpenAI events.
//!
//! - One `response.done` with 60,000 function calls (from a flooding peer, the shared
//!   `ScriptedPeer` of `tests/support/peer.rs`): every call is answered exactly once (the
//!   executor's cap answers the excess with error outputs, paced so the bus never
//!   unsubscribes the session), the tool runs at most the cap's number of times, and the
//!   conversation goes on. The protocol finds each call by a hash lookup (no scan per
//!   call); this test checks the outcome, never a duration.
//! - Transcript deltas of 256 KB: each item's text is capped (64 KiB by default), one
//!   `TextDropped` event says so, and the history kept to restore the session is bounded by
//!   bytes: after a dropped connection the replay carries at most that many bytes, and a
//!   `TextDropped` event said its oldest items were dropped.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use liveagent::{LiveAgent, LiveEvent, Tool, ToolError};
use liveagent_e2e::peer::ScriptedPeer;
use liveagent_e2e::*;
use liveagent_server::Scenario;
use serde_json::{json, Value};

async fn scripted_server(scenario: Value) -> liveagent_server::LocalServer {
    init_tracing();
    let mut config = liveagent_server::ServerConfig::scripted(
        Scenario::from_json(&scenario.to_string()).expect("scenario"),
    );
    config.pacing = liveagent_server::Pacing::AsFastAsPossible;
    liveagent_server::LocalServer::start(config.recording_in_memory())
        .await
        .expect("local server")
}

fn send(v: Value) -> Value {
    json!({ "send": v })
}

async fn ready(run: &Run) {
    run.wait_count("session updated", 1, |e| {
        matches!(e, LiveEvent::SessionUpdated(_))
    })
    .await;
}

const CALLS: usize = 60_000;

/// What the flooding peer saw.
#[derive(Default)]
struct FloodRecord {
    /// `call_id` of every `function_call_output` item, in order.
    outputs: Vec<String>,
    /// `response.create` frames received.
    response_creates: u32,
}

/// The fields of a client event the flooding peer reads.
#[derive(serde::Deserialize)]
struct ClientFrame<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(borrow)]
    item: Option<ItemRef<'a>>,
}

#[derive(serde::Deserialize)]
struct ItemRef<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(borrow)]
    call_id: Option<&'a str>,
}

/// A small misbehaving OpenAI peer (the shared [`ScriptedPeer`] on 127.0.0.1): it answers
/// the handshake, answers the first `response.create` with a `response.done` carrying
/// [`CALLS`] function calls, records every `function_call_output`, and answers later
/// `response.create`s with an empty completed response. (The bundled local server keeps
/// its items in a list and is far slower than the client at ingesting 60,000 of them.)
async fn flooding_peer() -> (ScriptedPeer, Arc<std::sync::Mutex<FloodRecord>>) {
    let record = Arc::new(std::sync::Mutex::new(FloodRecord::default()));
    let seen = record.clone();
    let peer = ScriptedPeer::builder()
        // 60,000 output frames: counted here rather than kept.
        .record_received(false)
        .on_open(|_| {
            vec![json!({"type": "session.created", "event_id": "e0",
                        "session": {"type": "realtime", "id": "sess_flood"}})
            .to_string()]
        })
        .on_text(move |_, text| {
            // Typed and borrowed: 60,000 output frames are read here, and a `Value` per
            // frame made the peer the test's largest CPU cost.
            let Ok(v) = serde_json::from_str::<ClientFrame<'_>>(text) else {
                return Vec::new();
            };
            match v.kind {
                "session.update" => vec![json!({"type": "session.updated", "event_id": "e1",
                                                "session": {"type": "realtime"}})
                .to_string()],
                "conversation.item.create" => {
                    if let Some(ItemRef {
                        kind: "function_call_output",
                        call_id: Some(id),
                    }) = v.item
                    {
                        seen.lock().unwrap().outputs.push(id.to_owned());
                    }
                    Vec::new()
                }
                "response.create" => {
                    let n = {
                        let mut r = seen.lock().unwrap();
                        r.response_creates += 1;
                        r.response_creates
                    };
                    let id = format!("resp_{n}");
                    let output: Vec<Value> = if n == 1 {
                        (0..CALLS)
                            .map(|i| {
                                json!({"type": "function_call", "object": "realtime.item",
                                       "id": format!("fc_{i}"), "status": "completed",
                                       "name": "noop", "call_id": format!("call_{i}"),
                                       "arguments": "{}"})
                            })
                            .collect()
                    } else {
                        Vec::new()
                    };
                    vec![
                        json!({"type": "response.created", "event_id": "e",
                               "response": {"object": "realtime.response", "id": id,
                                            "status": "in_progress", "output": []}})
                        .to_string(),
                        json!({"type": "response.done", "event_id": "e",
                               "response": {"object": "realtime.response", "id": id,
                                            "status": "completed", "output": output}})
                        .to_string(),
                    ]
                }
                _ => Vec::new(),
            }
        })
        .start()
        .await;
    (peer, record)
}

#[actix_rt::test]
async fn sixty_thousand_calls_in_one_response_are_each_answered_once() {
    init_tracing();
    let (peer, record) = flooding_peer().await;
    let runs = Arc::new(AtomicU32::new(0));
    let counter = runs.clone();
    let run = Run::start(
        LiveAgent::builder("assistant")
            .prompt("Test.")
            .config(
                liveagent::openai::RealtimeConfig::new("gpt-realtime")
                    .base_url(format!("{}/v1", peer.url()))
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
    ready(&run).await;
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
    // Every output reaches the peer, and the model is asked to go on.
    let deadline = std::time::Instant::now() + FAILSAFE;
    while record.lock().unwrap().outputs.len() < CALLS
        || record.lock().unwrap().response_creates < 2
    {
        if std::time::Instant::now() >= deadline {
            let got: HashSet<String> = record.lock().unwrap().outputs.iter().cloned().collect();
            let missing: Vec<String> = (0..CALLS)
                .map(|i| format!("call_{i}"))
                .filter(|c| !got.contains(c))
                .take(10)
                .collect();
            let errors = run.collect(|e| match e {
                LiveEvent::ErrorEvent(e) => Some(e.error.to_string()),
                _ => None,
            });
            panic!(
                "the peer got {} outputs; missing {missing:?}; errors {errors:?}",
                got.len()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The conversation is still alive and answering.
    let done_before = run.count(|e| matches!(e, LiveEvent::ResponseDone(_)));
    run.conversation.context().send_text("and now?");
    run.wait_count("a response after the flood", done_before + 1, |e| {
        matches!(e, LiveEvent::ResponseDone(_))
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
    // On the wire: one function_call_output per call, none twice, one connection.
    let outputs = record.lock().unwrap().outputs.clone();
    assert_eq!(outputs.len(), CALLS);
    assert_eq!(outputs.iter().collect::<HashSet<_>>().len(), CALLS);
    assert_eq!(
        run.count(|e| matches!(e, LiveEvent::SessionReconnecting(_))),
        0
    );
    run.conversation.stop().await;
    peer.stop().await;
}

/// The raw events of one assistant item whose transcript arrives as `deltas` deltas of
/// `delta_bytes` each, with a final transcript of `done_bytes`.
fn item_events(n: usize, deltas: usize, delta_bytes: usize, done_bytes: usize) -> Vec<Value> {
    let resp = format!("resp_{n}");
    let item = format!("item_{n}");
    let delta: String = "word ".repeat(delta_bytes / 5);
    let done: String = "said ".repeat(done_bytes / 5);
    let mut steps = vec![
        send(json!({"type": "response.created", "event_id": "e",
                    "response": {"object": "realtime.response", "id": resp, "status": "in_progress", "output": []}})),
        send(
            json!({"type": "response.output_item.added", "event_id": "e", "response_id": resp, "output_index": 0,
                    "item": {"id": item, "object": "realtime.item", "type": "message", "status": "in_progress",
                             "role": "assistant", "content": []}}),
        ),
    ];
    for _ in 0..deltas {
        steps.push(send(
            json!({"type": "response.output_audio_transcript.delta", "event_id": "e",
                               "response_id": resp, "item_id": item, "output_index": 0,
                               "content_index": 0, "delta": delta}),
        ));
    }
    steps.push(send(
        json!({"type": "response.output_audio_transcript.done", "event_id": "e",
               "response_id": resp, "item_id": item, "output_index": 0, "content_index": 0,
               "transcript": done}),
    ));
    steps.push(send(json!({"type": "response.done", "event_id": "e",
                           "response": {"object": "realtime.response", "id": resp, "status": "completed", "output": []}})));
    steps
}

#[actix_rt::test]
async fn transcript_floods_are_capped_per_item_and_the_restore_history_by_bytes() {
    const CAP: usize = 64 * 1024;
    const HISTORY: usize = 100_000;
    let scenario = json!({
        "turn": [
            // 40 deltas of 256 KB (10 MB) and a 1 MB final transcript for one item.
            { "steps": item_events(1, 40, 256 * 1024, 1024 * 1024) },
            // Two items of 60 KB each: under the item cap, over the history bound together.
            { "steps": item_events(2, 1, 60_000, 60_000) },
            { "steps": item_events(3, 1, 60_000, 60_000) },
            { "steps": [ { "drop": true } ] },
            { "say": "back again" }
        ]
    });
    let server = scripted_server(scenario).await;
    let run = Run::start(
        LiveAgent::builder("assistant")
            .prompt("Test.")
            .config(openai_config(&server).history_max_bytes(HISTORY)),
    );
    ready(&run).await;
    for (turn, item) in [(1, "item_1"), (2, "item_2"), (3, "item_3")] {
        run.conversation.context().send_text(format!("turn {turn}"));
        run.wait_count("the item's final transcript", 1, move |e| {
            matches!(e, LiveEvent::OutputTranscriptChunk(c) if c.is_final && c.item_id.as_deref() == Some(item))
        })
        .await;
    }
    // Per item: what was published (and so what any subscriber can accumulate) is capped.
    let chunks = run.collect(|e| match e {
        LiveEvent::OutputTranscriptChunk(c) if c.item_id.as_deref() == Some("item_1") => {
            Some((c.is_final, c.text.len()))
        }
        _ => None,
    });
    let streamed: usize = chunks.iter().filter(|c| !c.0).map(|c| c.1).sum();
    let final_len = chunks.iter().find(|c| c.0).map(|c| c.1).unwrap();
    assert!(streamed <= CAP, "{streamed} bytes of deltas published");
    assert!(streamed >= CAP - 8, "the cap keeps what fits: {streamed}");
    assert!(final_len <= CAP, "final transcript of {final_len} bytes");
    let words: usize = run
        .collect(|e| match e {
            LiveEvent::ModelMessageChunk(c) if &*c.item_id == "item_1" => Some(c.text.len()),
            _ => None,
        })
        .iter()
        .sum();
    assert!(words <= 2 * CAP, "{words} bytes of model words");
    let drops = run.collect(|e| match e {
        LiveEvent::TextDropped(d) => Some(d.clone()),
        _ => None,
    });
    let item_drops: Vec<_> = drops
        .iter()
        .filter(|d| d.item_id.as_deref() == Some("item_1"))
        .collect();
    assert_eq!(item_drops.len(), 1, "one report per item: {drops:?}");
    assert!(item_drops[0].reason.contains("cap"), "{:?}", item_drops[0]);
    assert!(
        drops.iter().any(|d| d.item_id.is_none() && d.items > 0),
        "the history bound dropped items and said so: {drops:?}"
    );

    // A dropped connection: the history replayed into the new one fits the byte bound.
    run.conversation.context().send_text("turn 4");
    run.wait_count("the reconnect", 1, |e| {
        matches!(e, LiveEvent::SessionReconnected(_))
    })
    .await;
    run.conversation.context().send_text("turn 5");
    run.wait_count("the answer after the reconnect", 1, |e| {
        matches!(e, LiveEvent::OutputTranscriptChunk(c) if c.is_final && c.text.contains("back again"))
    })
    .await;
    let replayed: usize = client_frames(&server)
        .iter()
        .filter(|f| f["type"] == "conversation.item.create")
        .filter_map(|f| f["item"]["content"][0]["text"].as_str().map(str::len))
        .sum();
    let typed: usize = (1..=5).map(|t| format!("turn {t}").len()).sum();
    // Client frames: the typed turns once each, and the replay after the reconnect.
    assert!(replayed > typed, "nothing was replayed");
    assert!(
        replayed <= HISTORY + typed,
        "{replayed} bytes of text sent, over the {HISTORY} byte bound"
    );
    run.conversation.stop().await;
    server.stop().await;
}
