//! A tool-call flood from a hostile Gemini Live peer, over a real socket (issue 13, item 5).
//!
//! One `toolCall` message carrying 60,000 function calls (from a small flooding peer in this
//! file, actix-web + actix-ws on 127.0.0.1): every call is answered exactly once in the
//! `toolResponse` (the executor's cap answers the excess with error outputs), the tool runs
//! at most the cap's number of times, a call repeated inside the message is ignored, a
//! cancellation of 60,000 ids (most unknown) is survived, and the conversation goes on.
//! The protocol finds each call by a hash lookup and keeps a count of open calls per batch
//! (no scan per call or result); this test checks the outcome, never a duration.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use liveagent::{LiveAgent, LiveEvent, Tool, ToolError};
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
fn answer(session: &mut actix_ws::Session, text: &str) -> impl std::future::Future<Output = ()> {
    let mut session = session.clone();
    let text = text.to_owned();
    async move {
        let _ = session
            .text(json!({"serverContent": {"modelTurn": {"parts": [{"text": text}]}}}).to_string())
            .await;
        let _ = session
            .text(json!({"serverContent": {"turnComplete": true}}).to_string())
            .await;
    }
}

/// A small misbehaving Gemini Live peer: it completes the setup, answers the first user
/// turn with one `toolCall` of [`CALLS`] calls (plus a repeat of the first id), then a
/// `toolCallCancellation` naming every call again plus 60,000 unknown ids, records every
/// function response, answers the `toolResponse` and later turns with text.
async fn flooding_peer() -> (String, Arc<Mutex<FloodRecord>>) {
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    use futures_util::StreamExt;

    async fn ws(
        req: HttpRequest,
        body: web::Payload,
        record: web::Data<Arc<Mutex<FloodRecord>>>,
    ) -> actix_web::Result<HttpResponse> {
        let (response, mut session, stream) = actix_ws::handle(&req, body)?;
        let record = record.get_ref().clone();
        actix_web::rt::spawn(async move {
            let mut stream = stream.max_frame_size(64 * 1024 * 1024);
            while let Some(Ok(msg)) = stream.next().await {
                let text = match msg {
                    actix_ws::Message::Text(text) => text.to_string(),
                    actix_ws::Message::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
                    actix_ws::Message::Ping(b) => {
                        let _ = session.pong(&b).await;
                        continue;
                    }
                    actix_ws::Message::Close(_) => {
                        let _ = session.close(None).await;
                        return;
                    }
                    _ => continue,
                };
                let v: Value = serde_json::from_str(&text).unwrap_or_default();
                if v.get("setup").is_some() {
                    let _ = session.text(json!({"setupComplete": {}}).to_string()).await;
                } else if v["clientContent"]["turnComplete"] == true {
                    let n = {
                        let mut r = record.lock().unwrap();
                        r.turns += 1;
                        r.turns
                    };
                    if n == 1 {
                        let mut calls: Vec<Value> = (0..CALLS)
                            .map(|i| json!({"id": format!("call_{i}"), "name": "noop", "args": {}}))
                            .collect();
                        calls.push(json!({"id": "call_0", "name": "noop", "args": {}}));
                        let _ = session
                            .text(json!({"toolCall": {"functionCalls": calls}}).to_string())
                            .await;
                    } else {
                        answer(&mut session, &format!("answer {n}")).await;
                    }
                } else if let Some(responses) = v["toolResponse"]["functionResponses"].as_array() {
                    let all = {
                        let mut r = record.lock().unwrap();
                        r.tool_responses += 1;
                        r.responses.extend(
                            responses
                                .iter()
                                .map(|f| f["id"].as_str().unwrap_or_default().to_owned()),
                        );
                        r.responses.len() >= CALLS
                    };
                    if all {
                        // Too late to cancel anything: every id is answered or unknown.
                        let ids: Vec<String> =
                            (0..2 * CALLS).map(|i| format!("call_{i}")).collect();
                        let _ = session
                            .text(json!({"toolCallCancellation": {"ids": ids}}).to_string())
                            .await;
                        answer(&mut session, "done with the tools").await;
                    }
                }
            }
        });
        Ok(response)
    }

    let record = Arc::new(Mutex::new(FloodRecord::default()));
    let data = web::Data::new(record.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::get().to(ws))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let addr = server.addrs()[0];
    actix_web::rt::spawn(server.run());
    (format!("ws://{addr}"), record)
}

#[actix_rt::test]
async fn sixty_thousand_calls_in_one_tool_call_are_each_answered_once() {
    init_tracing();
    let (url, record) = flooding_peer().await;
    let runs = Arc::new(AtomicU32::new(0));
    let counter = runs.clone();
    let run = Run::start(
        LiveAgent::builder("assistant")
            .prompt("Test.")
            .config(
                liveagent::gemini::RealtimeConfig::new("gemini-live")
                    .base_url(url)
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
}
